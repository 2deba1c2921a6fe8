"""Cross-source report: what the station would decide on each real source's held-out photos.

For every real evaluation list of a build (``lists/test_<source>.txt``: the test split of each box source,
the held-out crop photos per class, the test split of each crop source), each photo goes through the station's
own still-photo path (``station.still``: detector, decision rule, crop classifier's second look). Item figures
come first, at the station's thresholds:

- **found**: labelled items matched one-to-one by a decided box at IoU ≥ 0.5. A held-out single-item photo whose
  item could not be cut out carries the whole photo as its box (``whole photo`` items): no detector's box of the
  item itself reaches IoU 0.5 with that, so such an item is matched to the photo's largest decided box instead;
- **right stream**: items whose matched decision sends them where they belong: a battery-hazard item flagged as
  a hazard (it goes to the hazard bin), any other item to its class's stream with its class's own hazard flag
  (none, or biohazard for medical waste) and no other (a missed item is not right);
- **hazard recall**: photos holding a battery-hazard item on which any box is flagged as a hazard;
- **false hazard**: photos holding no hazard item on which any box is flagged (battery or biohazard);
- **textile found**: photos holding a textile item on which any box is decided textile.

Synthetic lists (scenes, simulator renders) are left out: this report is about real photos.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from station.taxonomy import Taxonomy
from training.evaluate import MATCH_IOU, EvalError, label_path, match_items

if TYPE_CHECKING:
    from station.config import StationConfig
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
    whole_photo_items: int = 0
    """Items labelled by the whole photo (their cut-out failed), matched to the largest decided box."""

    def rate(self, num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    def summary(self) -> dict[str, object]:
        return {"source": self.source, "photos": self.photos, "items": self.items,
                "found": self.rate(self.found, self.items), "right_stream": self.rate(self.right, self.items),
                "hazard_recall": self.rate(self.hazard_flagged, self.hazard_photos),
                "hazard_photos": self.hazard_photos,
                "false_hazard": self.rate(self.clean_flagged, self.clean_photos), "clean_photos": self.clean_photos,
                "textile_found": self.rate(self.textile_found, self.textile_photos),
                "textile_photos": self.textile_photos, "whole_photo_items": self.whole_photo_items}


@dataclass
class SourceReport:
    """The cross-source report of one detector + classifier pair; the classifier registry's evaluation."""

    model: str
    """The detector's version."""
    classifier: str | None
    """The crop classifier's version (None: the track vote alone)."""
    build: str
    rows: list[SourceFigures] = field(default_factory=list)
    seconds: float = 0.0
    data_digest: str = ""
    """Hash of the evaluated lists and their labels: two reports compare only on equal digests."""
    operating_point: str = ""
    """Hash of the station's thresholds and decision rule the figures were counted with."""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def totals(self) -> SourceFigures:
        """Every list's figures summed (one row named ``all``)."""
        out = SourceFigures("all")
        for r in self.rows:
            for name in ("photos", "items", "found", "right", "hazard_photos", "hazard_flagged", "clean_photos",
                         "clean_flagged", "textile_photos", "textile_found", "whole_photo_items"):
                setattr(out, name, getattr(out, name) + getattr(r, name))
        return out

    def row(self, source: str) -> SourceFigures | None:
        return next((r for r in self.rows if r.source == source), None)

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "classifier": self.classifier, "build": self.build,
                "seconds": round(self.seconds, 1), "data_digest": self.data_digest,
                "operating_point": self.operating_point, "created": self.created,
                "sources": [r.summary() for r in self.rows], "raw": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SourceReport:
        raw = data.get("raw")
        if not isinstance(raw, list):
            raise KeyError("raw")
        return cls(model=str(data["model"]), classifier=None if data.get("classifier") is None
                   else str(data["classifier"]), build=str(data["build"]),
                   rows=[SourceFigures(**r) for r in raw], seconds=float(data.get("seconds", 0.0)),  # type: ignore[arg-type]
                   data_digest=str(data.get("data_digest", "")),
                   operating_point=str(data.get("operating_point", "")), created=str(data.get("created", "")))

    def save(self, path: Path) -> Path:
        Path(path).write_text(self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> SourceReport:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            raise EvalError(f"cross-source report {path} cannot be read ({exc}); run `sortloop eval --by-source` "
                            f"again") from exc

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
                str(s["source"]), str(r.photos),
                f"{r.items} ({r.whole_photo_items} whole photo)" if r.whole_photo_items else str(r.items),
                cell(s["found"]), cell(s["right_stream"]),
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


WHOLE_PHOTO = 0.98
"""A label box covering at least this share of the photo's width and height is the whole-photo fallback."""
METRIC_VERSION = "2"
"""Bumped when the tally changes, so that reports counted the old way are not compared with new ones."""


def whole_photo(gt_xyxy: npt.NDArray[np.float32], shape: tuple[int, ...]) -> bool:
    """One label, and its box is the whole photo (a single-item photo whose item could not be cut out)."""
    if len(gt_xyxy) != 1:
        return False
    x1, y1, x2, y2 = (float(v) for v in gt_xyxy[0])
    return (x2 - x1) >= WHOLE_PHOTO * shape[1] and (y2 - y1) >= WHOLE_PHOTO * shape[0]


def tally(row: SourceFigures, gt_xyxy: npt.NDArray[np.float32], gt_cls: list[str], boxes: npt.NDArray[np.float32],
          decisions: Sequence[StillDecision], taxonomy: Taxonomy, *, whole: bool = False) -> None:
    """Add one photo's figures to ``row``. ``whole``: the photo's one label is the whole-photo fallback; it is
    matched to the largest decided box, without IoU."""
    row.photos += 1
    row.items += len(gt_cls)
    if whole:
        row.whole_photo_items += 1
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        pairs = [(0, int(np.argmax(areas)))] if len(boxes) else []
    else:
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


def judge_photo(row: SourceFigures, image: Path, listed_in: Path, detector: Detector, decider: StillDecider,
                taxonomy: Taxonomy, names: Sequence[str]) -> None:
    """Decide one labelled photo as the station would and add its figures to ``row``."""
    frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if frame is None:
        raise EvalError(f"{image} (listed in {listed_in}) cannot be read; rebuild the dataset")
    gt_xyxy, gt_cls = _gt(image, names)
    dets = detector(frame)  # type: ignore[arg-type]
    tally(row, gt_xyxy, gt_cls, dets.xyxy, decider(frame, dets), taxonomy,  # type: ignore[arg-type]
          whole=whole_photo(gt_xyxy, frame.shape))


def lists_digest(lists: Sequence[Path]) -> str:
    """Hash of the lists' names, the photos they name and those photos' label files."""
    h = hashlib.sha256(f"tally {METRIC_VERSION}".encode())
    for lst in lists:
        h.update(lst.stem.encode() + b"\0")
        for line in lst.read_text().split():
            h.update(Path(line).name.encode() + b"\0")
            label = label_path(Path(line))
            h.update(label.read_bytes() if label.is_file() else b"-")
    return h.hexdigest()[:16]


def operating_digest(cfg: StationConfig) -> str:
    """Hash of what makes two reports' figures comparable besides the data: the detector's thresholds and the
    decision rule (not file paths)."""
    m = cfg.model
    knobs = {"confidence": m.confidence, "hazard_confidence": m.hazard_confidence, "iou": m.iou,
             "hazard_floor": m.hazard_floor, "class_map": m.class_map, "decision": cfg.decision.model_dump()}
    return hashlib.sha256(json.dumps(knobs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def station_pair(model: Path, classifier: str | None) -> tuple[Taxonomy, Detector, StillDecider]:
    """The station's detector and still-photo decider from ``configs/station.yaml``, with ``model`` as the
    detector and ``classifier`` as the crop classifier (None: the config's; ``"none"``: no second look)."""
    from station.runtime import load_classifier, load_detector
    from station.still import StillDecider
    from station.taxonomy import load_taxonomy
    from training.evaluate import STATION_CONFIG, station_config

    cfg = station_config(STATION_CONFIG)
    if classifier is not None:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
            update={"classifier": None if classifier == "none" else str(Path(classifier).resolve())})})
    taxonomy = load_taxonomy(cfg.taxonomy_file())
    det = load_detector(cfg, taxonomy, model)
    return taxonomy, det, StillDecider(cfg, taxonomy, load_classifier(cfg, taxonomy))


def evaluate_sources(build: Path, detector: Detector, decider: StillDecider, taxonomy: Taxonomy,
                     lists: Sequence[Path] | None = None) -> SourceReport:
    """The report over ``lists`` (default: every real list of ``build``)."""
    start = time.perf_counter()
    lists = list(lists or real_lists(build))
    report = SourceReport(detector.version, decider.classifier_version, str(build),
                          data_digest=lists_digest(lists), operating_point=operating_digest(decider.cfg))
    names = list(taxonomy.names)
    for lst in lists:
        row = SourceFigures(lst.stem.removeprefix("test_"))
        for line in lst.read_text().split():
            judge_photo(row, Path(line), lst, detector, decider, taxonomy, names)
        report.rows.append(row)
    report.seconds = time.perf_counter() - start
    return report
