"""Evaluate an ONNX detector through the station's own Detector (one pre/post-processing everywhere).

Box metrics: mAP50 and mAP50-95 per class (faster-coco-eval, detections down to ``map_conf``). Item metrics at
the station's operating threshold: a stream confusion matrix (ground-truth items matched one-to-one to
predictions at IoU ≥ 0.5, unmatched ground truth → "missed", unmatched predictions → "spurious"), battery-hazard
recall and precision, and calibration (expected calibration error, reliability bins).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import yaml

from station.detections import Detections
from station.taxonomy import Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from station.config import StationConfig
    from station.detect import Detector

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
STATION_CONFIG = ROOT / "configs" / "station.yaml"
HAZARD = "battery"
MATCH_IOU = 0.5
MISSED, SPURIOUS = "missed", "spurious"
CALIBRATION_BINS = 10


class EvalError(ValueError):
    """The model or data cannot be evaluated; the message names the path and the fix."""


@dataclass(frozen=True)
class HazardRule:
    """How the station flags a battery hazard from a box (``model.hazard_confidence``, ``decision.hazard_doubt``):
    it keeps a box whose score for a battery-hazard class exceeds ``floor`` even under the operating threshold,
    and flags it when a battery-hazard class wins or holds at least ``doubt`` of the box's class scores (the
    decision's hazard doubt, on one look). Without a rule a box is a hazard flag only when a battery-hazard
    class wins above the operating threshold."""

    floor: float | None
    doubt: float

    @classmethod
    def of_station(cls, path: Path = STATION_CONFIG) -> HazardRule:
        """The rule of configs/station.yaml (its defaults when the file is absent)."""
        cfg = station_config(path)
        return cls(cfg.model.hazard_floor, cfg.decision.hazard_doubt)


@dataclass(frozen=True)
class ClassAP:
    name: str
    gt: int
    """Ground-truth boxes of the class."""
    map50: float | None
    map50_95: float | None


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    count: int
    confidence: float
    """Mean confidence of the predictions in the bin."""
    accuracy: float
    """Share of them that are correct (matched item, right class)."""


@dataclass
class EvalReport:
    """Everything ``evaluate`` measured; JSON round-trips through to_dict/from_dict."""

    model: str
    model_version: str
    data: str
    data_digest: str
    """Hash of the evaluated images and labels: the gate compares models only on equal digests."""
    split: str
    taxonomy_digest: str
    images: int
    items: int
    conf: float
    iou: float
    map50: float
    map50_95: float
    per_class: list[ClassAP]
    stream_rows: list[str]
    stream_cols: list[str]
    stream_confusion: list[list[int]]
    hazard_items: int
    hazard_predictions: int
    hazard_recall: float | None
    hazard_precision: float | None
    ece: float
    reliability: list[ReliabilityBin]
    images_per_s: float
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    hazard_floor: float | None = None
    hazard_doubt: float | None = None
    """The station's hazard rule the hazard figures were counted with (None: a winning hazard class only)."""

    @property
    def operating_point(self) -> tuple[float, float, float | None, float | None]:
        """What makes two reports' item figures comparable besides the data: thresholds and hazard rule."""
        return self.conf, self.iou, self.hazard_floor, self.hazard_doubt

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> EvalReport:
        raw = dict(data)
        raw["per_class"] = [ClassAP(**c) for c in raw["per_class"]]  # type: ignore[attr-defined]
        raw["reliability"] = [ReliabilityBin(**b) for b in raw["reliability"]]  # type: ignore[attr-defined]
        return cls(**raw)  # type: ignore[arg-type]

    def save(self, path: Path) -> Path:
        Path(path).write_text(self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> EvalReport:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError, KeyError) as exc:
            raise EvalError(f"evaluation report {path} cannot be read ({exc}); evaluate the model again") from exc

    def to_markdown(self) -> str:
        return _markdown(self)


# ------------------------------------------------------------------------------------------------ data


@dataclass
class _Image:
    path: Path
    gt_xyxy: npt.NDArray[np.float32]
    gt_cls: npt.NDArray[np.int64]
    """Taxonomy indices."""
    dets: Detections = field(default_factory=Detections.empty)
    """Predictions with class_id as taxonomy indices."""


def _names(spec: dict[str, object], where: Path) -> list[str]:
    names = spec.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise EvalError(f"{where}: no 'names' list; add names: [class0, class1, ...]")


def _expand(entry: Path) -> list[Path]:
    from training.formats import list_images

    if entry.is_dir():
        return sorted(p for d in [entry, *sorted(q for q in entry.rglob("*") if q.is_dir())] for p in list_images(d))
    if entry.suffix == ".txt" and entry.is_file():
        lines = [ln.strip() for ln in entry.read_text().splitlines() if ln.strip()]
        return [p if p.is_absolute() else entry.parent / p for p in map(Path, lines)]
    raise EvalError(f"image source {entry} is neither a folder nor a .txt list of images")


def _from_yaml(path: Path, split: str) -> tuple[list[str], list[Path]]:
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict):
        raise EvalError(f"{path}: not a YOLO data.yaml (expected a mapping)")
    if not spec.get(split):
        present = [k for k in ("train", "val", "test") if spec.get(k)]
        raise EvalError(f"{path} has no {split!r} split (it has {present}); pass --split with one of them")
    base = Path(str(spec.get("path") or "."))
    base = base if base.is_absolute() else path.parent / base
    entries = spec[split] if isinstance(spec[split], list) else [spec[split]]
    return _names(spec, path), [img for e in entries for img in _expand(base / str(e))]


def resolve_data(data: Path, split: str, taxonomy: Taxonomy) -> tuple[list[str], list[Path]]:
    """(class names of the labels, image paths) of a data.yaml, a YOLO folder or a .txt list of images.

    A folder or list without a data.yaml uses the taxonomy's class order for label indices.
    """
    data = Path(data)
    if data.is_file() and data.suffix in {".yaml", ".yml"}:
        return _from_yaml(data, split)
    if data.is_dir() and (data / "data.yaml").is_file():
        return _from_yaml(data / "data.yaml", split)
    if data.is_dir() and (data / "images" / split).is_dir():
        return taxonomy.names, _expand(data / "images" / split)
    if data.is_dir() or (data.is_file() and data.suffix == ".txt"):
        return taxonomy.names, _expand(data / "images" if (data / "images").is_dir() else data)
    raise EvalError(f"evaluation data {data} not found; pass a data.yaml, a YOLO folder or a .txt image list")


def label_path(image: Path) -> Path:
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def _load_gt(image: Path, names: Sequence[str], taxonomy: Taxonomy, digest: hashlib._Hash) -> _Image:
    from training.formats import read_yolo_image

    label = label_path(image)
    sample = read_yolo_image(image, label, names)
    unknown = sorted({b.class_name for b in sample.boxes if b.class_name not in taxonomy})
    if unknown:
        raise EvalError(f"{label}: classes {unknown} are not in the taxonomy; evaluate on data built with "
                        f"`sortloop data build` (taxonomy class names)")
    digest.update(image.name.encode() + hashlib.sha256(image.read_bytes()).digest())
    digest.update(label.read_bytes() if label.is_file() else b"-")
    xyxy = np.array([b.xyxy for b in sample.boxes], np.float32).reshape(-1, 4)
    cls = np.array([taxonomy.index(b.class_name) for b in sample.boxes], np.int64)
    return _Image(image, xyxy, cls)


# --------------------------------------------------------------------------------------------- metrics


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def match_items(gt: npt.NDArray[np.float32], pred: npt.NDArray[np.float32],
                iou: float) -> list[tuple[int, int]]:
    """One-to-one (gt index, pred index) pairs, greedy by IoU, each with IoU ≥ ``iou``."""
    if len(gt) == 0 or len(pred) == 0:
        return []
    m = box_iou(gt, pred)
    gi, pi = np.nonzero(m >= iou)
    pairs, used_g, used_p = [], set(), set()
    for k in np.argsort(-m[gi, pi], kind="stable"):
        g, p = int(gi[k]), int(pi[k])
        if g not in used_g and p not in used_p:
            pairs.append((g, p))
            used_g.add(g)
            used_p.add(p)
    return pairs


def _coco_map(images: list[_Image], taxonomy: Taxonomy) -> tuple[float, float, list[ClassAP]]:
    from faster_coco_eval import COCO, COCOeval_faster

    anns: list[dict[str, object]] = []
    dets: list[dict[str, object]] = []
    for i, im in enumerate(images):
        for (x1, y1, x2, y2), c in zip(im.gt_xyxy.tolist(), im.gt_cls.tolist(), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), c, s in zip(im.dets.xyxy.tolist(), im.dets.class_id.tolist(),
                                           im.dets.confidence.tolist(), strict=True):
            dets.append({"image_id": i, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    counts = np.bincount(np.concatenate([im.gt_cls for im in images] or [np.zeros(0, np.int64)]),
                         minlength=len(taxonomy.names))
    if not anns or not dets:
        return 0.0, 0.0, [ClassAP(n, int(counts[k]), 0.0 if counts[k] else None, 0.0 if counts[k] else None)
                          for k, n in enumerate(taxonomy.names)]
    gt = COCO({"images": [{"id": i} for i in range(len(images))], "annotations": anns,
               "categories": [{"id": k, "name": n} for k, n in enumerate(taxonomy.names)]})
    ev = COCOeval_faster(gt, gt.loadRes(dets), iouType="bbox", print_function=log.debug)
    ev.params.maxDets = [1, 10, 300]
    ev.evaluate()
    ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (iou thresholds, recall points, classes)
    per_class = []
    for k, name in enumerate(taxonomy.names):
        p = precision[:, :, k]
        ok = bool((p > -1).any())
        per_class.append(ClassAP(name, int(counts[k]), float(p[0][p[0] > -1].mean()) if ok else None,
                                 float(p[p > -1].mean()) if ok else None))
    scored = [c for c in per_class if c.map50 is not None]
    return (float(np.mean([c.map50 for c in scored])) if scored else 0.0,
            float(np.mean([c.map50_95 for c in scored])) if scored else 0.0, per_class)


@dataclass
class _Items:
    """Item-level tallies at the operating threshold."""

    rows: list[str]
    cols: list[str]
    confusion: npt.NDArray[np.int64]
    hazard_items: int = 0
    hazard_found: int = 0
    hazard_predictions: int = 0
    conf: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)


def hazard_flags(dets: Detections, conf: float, rule: HazardRule | None,
                 hazard: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Which boxes flag a battery hazard (``hazard``: a mask over the taxonomy's classes), see ``HazardRule``."""
    wins = hazard[dets.class_id]
    if rule is None:
        return (dets.confidence > conf) & wins
    scores = dets.class_scores
    if scores is None:  # only the winning class's score is known
        scores = np.zeros((len(dets), len(hazard)), np.float32)
        scores[np.arange(len(dets)), dets.class_id] = dets.confidence
    h = scores[:, hazard]
    kept = dets.confidence > conf
    if rule.floor is not None:
        kept |= h.max(axis=1, initial=0.0) > rule.floor
    share = h.sum(axis=1) / np.maximum(scores.sum(axis=1), 1e-9)
    return kept & (wins | (share >= rule.doubt))


def _tally(items: _Items, im: _Image, dets: Detections, flagged: Detections, taxonomy: Taxonomy,
           iou: float) -> None:
    names = taxonomy.names
    gt_stream = [items.rows.index(taxonomy.stream_of(names[c]).value) for c in im.gt_cls]
    pr_stream = [items.cols.index(taxonomy.stream_of(names[c]).value) for c in dets.class_id]
    pairs = match_items(im.gt_xyxy, dets.xyxy, iou)
    for g, p in pairs:
        items.confusion[gt_stream[g], pr_stream[p]] += 1
    for g in set(range(len(im.gt_cls))) - {g for g, _ in pairs}:
        items.confusion[gt_stream[g], items.cols.index(MISSED)] += 1
    for p in set(range(len(dets))) - {p for _, p in pairs}:
        items.confusion[items.rows.index(SPURIOUS), pr_stream[p]] += 1
    right = {p: im.gt_cls[g] == dets.class_id[p] for g, p in pairs}
    items.conf.extend(dets.confidence.tolist())
    items.correct.extend(bool(right.get(p, False)) for p in range(len(dets)))
    gt_h = np.array([taxonomy.hazard_of(names[c]) == HAZARD for c in im.gt_cls], bool)
    found = len(match_items(im.gt_xyxy[gt_h], flagged.xyxy, iou))
    items.hazard_items += int(gt_h.sum())
    items.hazard_predictions += len(flagged)
    items.hazard_found += found


def reliability(conf: Sequence[float], correct: Sequence[bool],
                bins: int = CALIBRATION_BINS) -> tuple[float, list[ReliabilityBin]]:
    """Expected calibration error and equal-width reliability bins over [0, 1]."""
    c, ok = np.asarray(conf, np.float64), np.asarray(correct, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(c, edges[1:-1], right=True), 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        mc, acc = (float(c[sel].mean()), float(ok[sel].mean())) if n else (0.0, 0.0)
        ece += n / max(len(c), 1) * abs(acc - mc)
        out.append(ReliabilityBin(round(float(edges[b]), 3), round(float(edges[b + 1]), 3), n, mc, acc))
    return float(ece), out


# ------------------------------------------------------------------------------------------ evaluation


def station_config(path: Path) -> StationConfig:
    """configs/station.yaml, or the station's defaults when the file is absent."""
    from station.config import load_config

    return load_config(path if path.is_file() else None)


def operating_conf(path: Path = STATION_CONFIG) -> float:
    """The station's detection threshold (configs/station.yaml model.confidence, else its default)."""
    return station_config(path).model.confidence


def _run(detector: Detector, images: list[_Image], taxonomy: Taxonomy) -> float:
    """Detect every image (class ids → taxonomy indices); returns images/s of the detector calls."""
    import cv2

    to_tax = np.array([taxonomy.index(n) for n in detector.names], np.int64)
    seconds = 0.0
    for im in images:
        bgr: npt.NDArray[np.uint8] | None = cv2.imread(str(im.path), cv2.IMREAD_COLOR)  # type: ignore[assignment]
        if bgr is None:
            raise EvalError(f"image {im.path} cannot be read; remove it or rebuild the dataset")
        t0 = time.perf_counter()
        dets = detector(bgr)
        seconds += time.perf_counter() - t0
        im.dets = Detections(dets.xyxy, dets.confidence, to_tax[dets.class_id], class_scores=dets.class_scores)
    return len(images) / seconds if seconds > 0 else 0.0


def evaluate(model: Path, data: Path, *, split: str = "test", conf: float | None = None, iou: float = 0.5,
             map_conf: float = 0.001, taxonomy: Taxonomy | None = None, threads: int = 0,
             hazard_rule: HazardRule | None = None) -> EvalReport:
    """Evaluate ``model`` (ONNX) on a split of ``data`` with the station's Detector (see module doc).
    ``hazard_rule``: count hazard recall and precision as the station flags batteries (``HazardRule``)."""
    from station.detect import Detector

    tax = taxonomy or load_taxonomy()
    conf = operating_conf() if conf is None else conf
    names, paths = resolve_data(Path(data), split, tax)
    if not paths:
        raise EvalError(f"evaluation data {data} ({split}) holds no images; check the split's folder")
    digest = hashlib.sha256()
    images = [_load_gt(p, names, tax, digest) for p in paths]
    detector = Detector(model, confidence=min(map_conf, conf), iou=iou, threads=threads, taxonomy=tax)
    speed = _run(detector, images, tax)
    map50, map50_95, per_class = _coco_map(images, tax)
    rows = [s.value for s in tax.streams]
    items = _Items([*rows, SPURIOUS], [*rows, MISSED], np.zeros((len(rows) + 1, len(rows) + 1), np.int64))
    hazard = np.array([tax.hazard_of(n) == HAZARD for n in tax.names], bool)
    for im in images:
        flagged = hazard_flags(im.dets, conf, hazard_rule, hazard)
        _tally(items, im, im.dets[im.dets.confidence > conf], im.dets[flagged], tax, MATCH_IOU)
    ece, bins = reliability(items.conf, items.correct)
    return EvalReport(
        str(model), detector.version, str(data), digest.hexdigest()[:16], split, tax.digest, len(images),
        int(sum(len(im.gt_cls) for im in images)), conf, iou, map50, map50_95, per_class, items.rows, items.cols,
        items.confusion.tolist(), items.hazard_items, items.hazard_predictions,
        items.hazard_found / items.hazard_items if items.hazard_items else None,
        items.hazard_found / items.hazard_predictions if items.hazard_predictions else None,
        ece, bins, round(speed, 2), hazard_floor=hazard_rule.floor if hazard_rule else None,
        hazard_doubt=hazard_rule.doubt if hazard_rule else None)


# --------------------------------------------------------------------------------------------- output


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _rule_text(r: EvalReport) -> str:
    if r.hazard_doubt is None:
        return "Hazard flags: a winning battery-hazard class above the threshold."
    floor = "the threshold" if r.hazard_floor is None else f"{r.hazard_floor:.2f}"
    return (f"Hazard flags as the station's: battery-hazard boxes kept from {floor}, flagged when a battery-hazard "
            f"class wins or holds ≥ {r.hazard_doubt:.2f} of the box's scores.")


def _markdown(r: EvalReport) -> str:
    lines = [f"# Evaluation of {Path(r.model).name} ({r.model_version})", "",
             f"Data `{r.data}` split `{r.split}` (digest `{r.data_digest}`): {r.images} images, {r.items} items. "
             f"Operating threshold {r.conf:.2f}, NMS IoU {r.iou:.2f}, {r.images_per_s:.1f} images/s. "
             f"{_rule_text(r)}", "",
             "| metric | value |", "|---|---|", f"| mAP50 | {r.map50:.4f} |", f"| mAP50-95 | {r.map50_95:.4f} |",
             f"| hazard recall ({HAZARD}, {r.hazard_items} items) | {_pct(r.hazard_recall)} |",
             f"| hazard precision ({r.hazard_predictions} predictions) | {_pct(r.hazard_precision)} |",
             f"| expected calibration error | {r.ece:.4f} |", "",
             "## Per class", "", "| class | boxes | AP50 | AP50-95 |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.gt} | {_pct(c.map50)} | {_pct(c.map50_95)} |" for c in r.per_class if c.gt]
    lines += ["", "## Streams (rows: truth, columns: prediction)", "",
              "| | " + " | ".join(r.stream_cols) + " |", "|---" * (len(r.stream_cols) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(map(str, counts)) + " |"
              for row, counts in zip(r.stream_rows, r.stream_confusion, strict=True)]
    lines += ["", "## Calibration", "", "| confidence | predictions | mean confidence | accuracy |",
              "|---|---|---|---|"]
    lines += [f"| {b.lo:.1f}–{b.hi:.1f} | {b.count} | {b.confidence:.3f} | {b.accuracy:.3f} |"
              for b in r.reliability if b.count]
    return "\n".join(lines) + "\n"


def _plot_confusion(r: EvalReport, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5.5))
    ax = fig.add_subplot()
    m = np.array(r.stream_confusion)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(r.stream_cols)), r.stream_cols, rotation=45, ha="right")
    ax.set_yticks(range(len(r.stream_rows)), r.stream_rows)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xlabel("predicted stream")
    ax.set_ylabel("true stream")
    ax.set_title(f"Items by stream at confidence > {r.conf:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot_reliability(r: EvalReport, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    used = [b for b in r.reliability if b.count]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar([(b.lo + b.hi) / 2 for b in used], [b.accuracy for b in used], width=0.09, alpha=0.7, label="accuracy")
    ax.plot([b.confidence for b in used], [b.accuracy for b in used], "o-", color="C1",
            label="accuracy at mean confidence")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"Reliability (ECE {r.ece:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot_ap(r: EvalReport, path: Path) -> None:
    from matplotlib.figure import Figure

    scored = [c for c in r.per_class if c.map50 is not None]
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    x = np.arange(len(scored))
    ax.bar(x - 0.2, [c.map50 or 0.0 for c in scored], 0.4, label="AP50")
    ax.bar(x + 0.2, [c.map50_95 or 0.0 for c in scored], 0.4, label="AP50-95")
    ax.set_xticks(x, [c.name for c in scored], rotation=45, ha="right")
    ax.set(ylim=(0, 1), ylabel="average precision", title="Per-class AP")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_report(report: EvalReport, out_dir: Path) -> Path:
    """Write report.json, report.md and the plots (confusion, reliability, per-class AP) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.save(out / "report.json")
    (out / "report.md").write_text(report.to_markdown())
    _plot_confusion(report, out / "confusion_streams.png")
    _plot_reliability(report, out / "reliability.png")
    _plot_ap(report, out / "per_class_ap.png")
    return out
