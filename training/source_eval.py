"""Cross-source report: what the station would decide on each real source's held-out photos.

For every real evaluation list of a build (``lists/test_<source>.txt``: the test split of each box source,
the held-out crop photos per class, the test split of each crop source), each photo goes through the station's
own still-photo path (``station.still``: detector, decision rule, crop classifier's second look). Item figures
come first, at the station's thresholds:

- **found**: labelled items matched one-to-one by a decided box at IoU ≥ 0.5;
- **right stream**: items whose matched decision sends them where they belong: a battery-hazard item flagged as
  a hazard (it goes to the hazard bin), any other item to its class's stream with its class's own hazard flag
  (none, or biohazard for medical waste) and no other (a missed item is not right);
- **hazard recall**: photos holding a battery-hazard item on which any box is flagged as a hazard;
- **false hazard**: photos holding no hazard item on which any box is flagged (battery or biohazard);
- **textile found**: photos holding a textile item on which any box is decided textile.

Synthetic lists (scenes, simulator renders) are left out: this report is about real photos.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from station.taxonomy import Taxonomy
from training.evaluate import MATCH_IOU, EvalError, label_path, match_items

if TYPE_CHECKING:
    from station.detect import Detector
    from station.still import StillDecider, StillDecision

SYNTHETIC_LISTS = ("synth-", "sim", "crop-photos")
HAZARD = "battery"


@dataclass
class SourceFigures:
    """One evaluation list's figures (None where the list holds nothing to measure it on)."""

    source: str
    photos: int = 0
    items: int = 0
    found: int = 0
    right: int = 0
    hazard_photos: int = 0
    hazard_flagged: int = 0
    clean_photos: int = 0
    clean_flagged: int = 0
    textile_photos: int = 0
    textile_found: int = 0

    def rate(self, num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    def summary(self) -> dict[str, object]:
        return {"source": self.source, "photos": self.photos, "items": self.items,
                "found": self.rate(self.found, self.items), "right_stream": self.rate(self.right, self.items),
                "hazard_recall": self.rate(self.hazard_flagged, self.hazard_photos),
                "hazard_photos": self.hazard_photos,
                "false_hazard": self.rate(self.clean_flagged, self.clean_photos), "clean_photos": self.clean_photos,
                "textile_found": self.rate(self.textile_found, self.textile_photos),
                "textile_photos": self.textile_photos}


@dataclass
class SourceReport:
    model: str
    classifier: str | None
    build: str
    rows: list[SourceFigures] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "classifier": self.classifier, "build": self.build,
                "seconds": round(self.seconds, 1), "sources": [r.summary() for r in self.rows],
                "raw": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        def cell(v: object) -> str:
            return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

        head = ["source", "photos", "items", "found", "right stream", "hazard recall (photos)",
                "false hazard (photos)", "textile found (photos)"]
        lines = [f"model {self.model}, second look {self.classifier or 'none'}, build {self.build}", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            s = r.summary()
            lines.append("| " + " | ".join([
                str(s["source"]), str(r.photos), str(r.items), cell(s["found"]), cell(s["right_stream"]),
                f"{cell(s['hazard_recall'])} of {r.hazard_photos}" if r.hazard_photos else "–",
                f"{cell(s['false_hazard'])} of {r.clean_photos}" if r.clean_photos else "–",
                f"{cell(s['textile_found'])} of {r.textile_photos}" if r.textile_photos else "–"]) + " |")
        return "\n".join(lines)


def real_lists(build: Path) -> list[Path]:
    """The build's real evaluation lists (``lists/test_*.txt`` less the synthetic ones and the all-crops list)."""
    folder = build / "lists"
    if not folder.is_dir():
        raise EvalError(f"{build} has no lists/ folder; pass a folder made by `sortloop data build`")
    out = []
    for p in sorted(folder.glob("test_*.txt")):
        name = p.stem.removeprefix("test_")
        if name == "crops" or name.startswith(SYNTHETIC_LISTS):
            continue
        out.append(p)
    return out


def _gt(image: Path, names: Sequence[str]) -> tuple[npt.NDArray[np.float32], list[str]]:
    from training.formats import read_yolo_image

    sample = read_yolo_image(image, label_path(image), names)
    xyxy = np.array([b.xyxy for b in sample.boxes], np.float32).reshape(-1, 4)
    return xyxy, [b.class_name for b in sample.boxes]


def _right(gt_class: str, d: StillDecision, taxonomy: Taxonomy) -> bool:
    hazard = taxonomy.hazard_of(gt_class)
    if hazard == HAZARD:
        return d.hazard == HAZARD
    return d.hazard == hazard and d.stream == taxonomy.stream_of(gt_class).value


def tally(row: SourceFigures, gt_xyxy: npt.NDArray[np.float32], gt_cls: list[str], boxes: npt.NDArray[np.float32],
          decisions: Sequence[StillDecision], taxonomy: Taxonomy) -> None:
    """Add one photo's figures to ``row``."""
    row.photos += 1
    row.items += len(gt_cls)
    pairs = match_items(gt_xyxy, boxes, MATCH_IOU)
    row.found += len(pairs)
    row.right += sum(_right(gt_cls[g], decisions[p], taxonomy) for g, p in pairs)
    flagged = any(d.hazard is not None for d in decisions)
    if any(taxonomy.hazard_of(c) == HAZARD for c in gt_cls):
        row.hazard_photos += 1
        row.hazard_flagged += any(d.hazard == HAZARD for d in decisions)
    elif not any(taxonomy.hazard_of(c) is not None for c in gt_cls):
        row.clean_photos += 1
        row.clean_flagged += flagged
    if "textile" in gt_cls:
        row.textile_photos += 1
        row.textile_found += any(d.class_name == "textile" and d.stream == "textile" for d in decisions)


def evaluate_sources(build: Path, detector: Detector, decider: StillDecider, taxonomy: Taxonomy,
                     lists: Sequence[Path] | None = None) -> SourceReport:
    """The report over ``lists`` (default: every real list of ``build``)."""
    start = time.perf_counter()
    report = SourceReport(detector.version, decider.classifier_version, str(build))
    names = list(taxonomy.names)
    for lst in lists or real_lists(build):
        row = SourceFigures(lst.stem.removeprefix("test_"))
        for line in lst.read_text().split():
            image = Path(line)
            frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
            if frame is None:
                raise EvalError(f"{image} (listed in {lst}) cannot be read; rebuild the dataset")
            gt_xyxy, gt_cls = _gt(image, names)
            dets = detector(frame)  # type: ignore[arg-type]
            tally(row, gt_xyxy, gt_cls, dets.xyxy, decider(frame, dets), taxonomy)  # type: ignore[arg-type]
        report.rows.append(row)
    report.seconds = time.perf_counter() - start
    return report
