"""What the station would decide for the items of a still photo (``sortloop detect``).

The detector, then for each box the decision line's own rule (``DecisionLine.verdict``): the box's class
scores as the vote, fused with the crop classifier's second look on the box's evidence crop (cut as the station
cuts it, ``padded_crop``), the hazard doubt and the vote-share threshold. A photo is one look, so it is judged as
an item seen whole for ``decision.min_track_frames`` looks (the short-track rule, which guards against slivers of
items entering the camera's view, has nothing to say about a photo). No copy of the rule lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from station.config import StationConfig
from station.decide import DecisionLine, SecondLook, Verdict, class_votes, padded_crop
from station.detections import Detections
from station.taxonomy import Taxonomy


@dataclass(frozen=True)
class StillDecision:
    """The decision for one box of a photo, as the station's rule makes it."""

    class_name: str | None
    stream: str
    hazard: str | None
    reason: str
    share: float
    detail: str
    crop_scores: dict[str, float]

    @classmethod
    def of(cls, v: Verdict, scores: dict[str, float]) -> StillDecision:
        return cls(v.class_name, v.stream.value, v.hazard, v.reason.value, round(v.share, 4), v.detail, scores)

    def to_dict(self) -> dict[str, object]:
        return {"class": self.class_name, "stream": self.stream, "hazard": self.hazard, "reason": self.reason,
                "share": self.share, "detail": self.detail, "crop_scores": self.crop_scores}


class StillDecider:
    """``decider(image, dets)`` → one ``StillDecision`` per detection, in order."""

    def __init__(self, cfg: StationConfig, taxonomy: Taxonomy, second_look: SecondLook | None) -> None:
        self.cfg = cfg
        self._line = DecisionLine(cfg.decision, taxonomy, station_id=cfg.station_id)
        self._line.set_second_look(second_look)
        self._pad = cfg.decision.crop_padding
        self._looks = cfg.decision.min_track_frames
        self._n = len(taxonomy.names)

    @property
    def classifier_version(self) -> str | None:
        look = self._line.second_look
        return look.version if look is not None else None

    def __call__(self, image: npt.NDArray[np.uint8], dets: Detections) -> list[StillDecision]:
        votes = class_votes(dets, self._n)
        out = []
        for i, xyxy in enumerate(dets.xyxy):
            box = (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))
            crop = padded_crop(image, box, self._pad)
            verdict, scores = self._line.verdict(votes[i], self._looks, crop, what=f"box {i}")
            out.append(StillDecision.of(verdict, scores))
        return out
