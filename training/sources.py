"""Data sources and their class maps (``datasets/sources/*.yaml``): source label → taxonomy class or ``drop``.

A box source (YOLO) is read into ``Sample`` s with taxonomy class names; a crop source (class folders of
single-object photos) is listed as ``Crop`` s for cut-outs. Coarse labels (trashnetpp "E-waste") are refined
on purpose by a COCO-pretrained teacher (``refine_coarse``); its outputs are cached in the work folder.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from station.taxonomy import Taxonomy
from training.formats import Box, Sample, iou, list_images, read_yolo

log = logging.getLogger(__name__)

SOURCES_DIR = Path(__file__).resolve().parent.parent / "datasets" / "sources"
DROP = "drop"
T = TypeVar("T")
Pool = Literal["train", "heldout", "split"]
"""Where a crop folder's images may go: train scenes only, val/test only (evaluation), or either by group."""


class SourceError(ValueError):
    """A source map or a source folder is missing or malformed; the message names the path and the fix."""


class RefineRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: str = Field(description="Teacher ONNX detector, relative to the shared root.")
    min_iou: float = Field(0.5, gt=0, le=1, description="IoU a teacher box needs with the coarse box.")
    min_score: float = Field(0.3, gt=0, le=1, description="Teacher score needed to give the fine class.")
    fallback: str = Field(description="Taxonomy class when no teacher box qualifies.")
    teacher_classes: dict[str, str] = Field(description="Teacher class name → taxonomy class.")


class SourceMap(BaseModel):
    """One ``datasets/sources/<name>.yaml`` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Source name used in file names, manifests and test lists.")
    path: str = Field(description="Folder of the source, relative to the shared root.")
    kind: Literal["boxes", "crops"] = Field(description="boxes: a detection dataset; crops: class folders.")
    format: Literal["yolo"] = Field("yolo", description="Label format of a box source.")
    licence: str = Field(description="Licence of the data.")
    attribution: str = Field(description="Attribution text for model cards.")
    changes: str = Field("", description="What was changed (CC BY asks for a note of changes).")
    classes: dict[str, str] = Field(description="Source label → taxonomy class, or 'drop'.")
    refine: dict[str, RefineRule] = Field(default_factory=dict,
                                          description="Coarse source labels refined by a teacher detector.")
    folders: dict[str, Pool] = Field(
        default_factory=dict, description="Crop sources: sub-folder → train (train scenes only), heldout "
        "(val/test scenes only) or split (by near-duplicate group).")
    overrides: dict[str, str] = Field(default_factory=dict,
                                      description="Per-file class (path relative to the source) or 'drop'.")
    labels_csv: str | None = Field(
        None, description="Crop sources whose images lie in one flat folder: a CSV file (relative to the source) "
        "with columns 'image' (file name in each folder of 'folders') and 'label' (the source label); without it "
        "each folder holds one sub-folder per label.")
    min_box_area: float = Field(
        0.0, ge=0, lt=1, description="Crop sources whose item fills most of each photo: a cut-out whose box covers "
        "less than this share of its photo is taken for a part of the item (a sleeve, one of a pair of shoes, a "
        "hem) and is used neither as a box nor pasted into scenes; the photo is then boxed whole in evaluation "
        "lists and left out of the training photos.")
    heldout_per_class: dict[str, int] = Field(
        default_factory=dict, description="Crop sources: per taxonomy class, this many crops of its 'train' "
        "folders held out as well (evaluation and val/test scenes only), evenly spread over the sorted file "
        "names, so every build holds out the same files: a larger real test set than the source's own held-out "
        "folder, at the cost of as many training crops.")

    @model_validator(mode="after")
    def _consistent(self) -> SourceMap:
        unknown = sorted(set(self.refine) - set(self.classes))
        if unknown:
            raise ValueError(f"refine: labels {unknown} are not in classes; add them to classes first")
        if self.kind == "crops" and not self.folders:
            raise ValueError("crops source needs folders: {sub-folder: train|heldout|split}")
        if self.labels_csv is not None and self.kind != "crops":
            raise ValueError("labels_csv is for crop sources only; a box source reads its YOLO labels")
        if self.heldout_per_class and self.kind != "crops":
            raise ValueError("heldout_per_class is for crop sources only; a box source is split by group")
        bad = sorted(c for c, n in self.heldout_per_class.items() if n < 1)
        if bad:
            raise ValueError(f"heldout_per_class: {bad} need a count of at least 1; remove a class to hold none out")
        unmapped = sorted(set(self.heldout_per_class) - set(self.classes.values()))
        if unmapped:
            raise ValueError(f"heldout_per_class: {unmapped} are no class this source maps to; use one of "
                             f"{sorted(set(self.classes.values()) - {DROP})}")
        return self

    def check(self, taxonomy: Taxonomy, origin: Path) -> None:
        """Every target class must be in the taxonomy (or be 'drop')."""
        targets = set(self.classes.values()) | set(self.overrides.values())
        for rule in self.refine.values():
            targets |= {rule.fallback, *rule.teacher_classes.values()}
        bad = sorted(t for t in targets if t != DROP and t not in taxonomy)
        if bad:
            raise SourceError(f"{origin}: classes {bad} are not in the taxonomy; use one of "
                              f"{', '.join(taxonomy.names)} or 'drop'")

    def target(self, label: str) -> str:
        return self.classes.get(label, label)


def load_source_map(path: Path, taxonomy: Taxonomy | None = None) -> SourceMap:
    if not path.is_file():
        raise SourceError(f"source map {path} not found; see datasets/sources/*.yaml for examples")
    try:
        smap = SourceMap.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise SourceError(f"source map {path} is invalid: {exc}") from exc
    if taxonomy is not None:
        smap.check(taxonomy, path)
    return smap


def load_source_maps(folder: Path = SOURCES_DIR, taxonomy: Taxonomy | None = None) -> list[SourceMap]:
    return [load_source_map(p, taxonomy) for p in sorted(folder.glob("*.yaml"))]


def source_root(smap: SourceMap, shared_root: Path) -> Path:
    root = shared_root / smap.path
    if not root.is_dir():
        raise SourceError(f"source {smap.name}: folder {root} not found; pass --shared-root pointing at the "
                          "folder that holds datasets/ and weights/")
    return root


# ------------------------------------------------------------------------------------------ box sources

_RF_SUFFIX = re.compile(r"\.rf\.[0-9a-f]{16,}$")


def parent_key(stem: str) -> str:
    """Roboflow augmented copies share the name before ``.rf.<hash>``: one group per original photo."""
    return _RF_SUFFIX.sub("", stem)


@dataclass
class MapStats:
    """Boxes per source label → target class, and boxes dropped by the map."""

    mapped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)


def map_sample(s: Sample, smap: SourceMap, root: Path, stats: MapStats, *, coarse_fallback: bool = False) -> Sample:
    """Source labels → taxonomy classes. Coarse labels stay as they are for ``refine_coarse`` (or become the
    rule's fallback class with ``coarse_fallback``)."""
    rel = str(s.image_path.relative_to(root)) if s.image_path.is_relative_to(root) else s.image_path.name
    override = smap.overrides.get(rel)
    boxes = []
    for b in s.boxes:
        target = override or smap.target(b.class_name)
        if target == DROP:
            stats.dropped[b.class_name] += 1
            continue
        stats.mapped[f"{b.class_name} → {target}"] += 1
        rule = smap.refine.get(b.class_name)
        if rule is None:
            boxes.append(Box(b.xyxy, target))
        else:
            boxes.append(Box(b.xyxy, rule.fallback) if coarse_fallback else b)
    return replace(s, boxes=boxes, group=f"{smap.name}:{parent_key(s.image_path.stem)}")


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """At most ``limit`` items, evenly spaced over the (sorted) list: every split and name range is sampled."""
    return spread_split(items, limit)[0]


def spread_split(items: Sequence[T], limit: int | None) -> tuple[list[T], list[T]]:
    """``spread(items, limit)`` and the items it leaves out, both in list order."""
    if limit is None or len(items) <= limit:
        return list(items), []
    keep = {i * len(items) // limit for i in range(limit)}
    return [x for i, x in enumerate(items) if i in keep], [x for i, x in enumerate(items) if i not in keep]


def read_box_source(smap: SourceMap, shared_root: Path, limit: int | None = None,
                    left_out: list[Sample] | None = None) -> tuple[list[Sample], MapStats]:
    """Samples of a box source with taxonomy classes (coarse labels kept as-is for ``refine_coarse``);
    ``limit`` keeps an evenly spread subset, and the samples it leaves out go to ``left_out`` (mapped alike)."""
    root = source_root(smap, shared_root)
    samples, rest = spread_split(read_yolo(root, source=smap.name), limit)
    if left_out is not None:
        left_out += [map_sample(s, smap, root, MapStats()) for s in rest]
    stats = MapStats()
    return [map_sample(s, smap, root, stats) for s in samples], stats


# ----------------------------------------------------------------------------------------- crop sources


@dataclass(frozen=True)
class Crop:
    """One single-object photo of a crop source."""

    image_path: Path
    class_name: str
    source: str
    pool: Pool
    group: str


def read_crop_source(smap: SourceMap, shared_root: Path, limit: int | None = None,
                     left_out: list[Crop] | None = None) -> tuple[list[Crop], MapStats]:
    """Crops of the mapped classes; ``limit`` caps the crops per class folder, and the crops it leaves out go
    to ``left_out``."""
    root = source_root(smap, shared_root)
    stats = MapStats()
    crops: list[Crop] = []
    for sub, pool in smap.folders.items():
        base = root / sub
        if not base.is_dir():
            raise SourceError(f"source {smap.name}: folder {base} not found; fix 'folders' in its map")
        for label, images in _labelled_images(smap, root, base):
            held: list[Path] = []
            if pool == "train":  # chosen before the limit, so a limited build holds out the same files
                held, images = spread_split(images, smap.heldout_per_class.get(smap.target(label), 0))
            images, rest = spread_split(images, limit)
            chosen: list[tuple[Pool, list[Path]]] = [(pool, images), ("heldout", held)]
            for crop_pool, paths in chosen:
                for img, target in _crop_targets(paths, label, smap, root):
                    if target == DROP:
                        stats.dropped[label] += 1
                        continue
                    stats.mapped[f"{label} → {target}"] += 1
                    crops.append(Crop(img, target, smap.name, crop_pool, _crop_group(img, smap, root)))
            if left_out is not None:
                left_out += [Crop(img, target, smap.name, pool, _crop_group(img, smap, root))
                             for img, target in _crop_targets(rest, label, smap, root) if target != DROP]
    return crops, stats


def _labelled_images(smap: SourceMap, root: Path, base: Path) -> list[tuple[str, list[Path]]]:
    """(source label, sorted images) of one crop folder: its label sub-folders, or its files by ``labels_csv``."""
    if smap.labels_csv is None:
        return [(d.name, list_images(d)) for d in sorted(p for p in base.iterdir() if p.is_dir())]
    csv_path = root / smap.labels_csv
    if not csv_path.is_file():
        raise SourceError(f"source {smap.name}: labels file {csv_path} not found; fix 'labels_csv' in its map")
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"image", "label"} <= set(rows[0]):
        raise SourceError(f"source {smap.name}: {csv_path} needs the columns 'image' and 'label' (has "
                          f"{', '.join(rows[0])})")
    by_label: dict[str, list[Path]] = defaultdict(list)
    for row in rows:
        img = base / row["image"]
        if img.is_file():
            by_label[row["label"]].append(img)
    return [(label, sorted(paths)) for label, paths in sorted(by_label.items())]


def _crop_targets(images: Sequence[Path], label: str, smap: SourceMap, root: Path) -> list[tuple[Path, str]]:
    return [(img, smap.overrides.get(str(img.relative_to(root))) or smap.target(label)) for img in images]


def _crop_group(img: Path, smap: SourceMap, root: Path) -> str:
    return f"{smap.name}:{img.relative_to(root).with_suffix('').as_posix()}"


# --------------------------------------------------------------------------------------- coarse labels


@dataclass(frozen=True)
class TeacherBox:
    xyxy: tuple[float, float, float, float]
    class_name: str
    score: float


def _teacher_boxes(paths: Sequence[Path], rule: RefineRule, shared_root: Path,
                   cache_path: Path) -> dict[str, list[TeacherBox]]:
    """Teacher detections per image path, from the JSON cache or by running the teacher on the missing ones."""
    cache: dict[str, list[list[object]]] = {}
    if cache_path.is_file():
        cache = json.loads(cache_path.read_text())
    todo = [p for p in paths if str(p) not in cache]
    if todo:
        import cv2

        from station.detect import Detector

        teacher = Detector(shared_root / rule.teacher, confidence=min(0.1, rule.min_score), taxonomy=None)
        names = teacher.names
        for p in todo:
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)
            cache[str(p)] = [] if image is None else [
                [*(round(float(v), 2) for v in d.xyxy[0]), names[int(d.class_id[0])], round(float(d.confidence[0]), 4)]
                for d in teacher(np.asarray(image, dtype=np.uint8))]
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, sort_keys=True))
        log.info("teacher %s ran on %d images (cache %s)", rule.teacher, len(todo), cache_path)
    out: dict[str, list[TeacherBox]] = {}
    for p in paths:
        out[str(p)] = [TeacherBox((float(r[0]), float(r[1]), float(r[2]), float(r[3])),  # type: ignore[arg-type]
                                  str(r[4]), float(r[5])) for r in cache[str(p)]]  # type: ignore[arg-type]
    return out


def _fine_class(box: Box, teacher: list[TeacherBox], rule: RefineRule) -> str:
    best, best_iou = rule.fallback, 0.0
    for t in teacher:
        if t.class_name not in rule.teacher_classes or t.score < rule.min_score:
            continue
        overlap = iou(box.xyxy, t.xyxy)
        if overlap >= rule.min_iou and overlap > best_iou:
            best, best_iou = rule.teacher_classes[t.class_name], overlap
    return best


def refine_coarse(samples: list[Sample], smap: SourceMap, shared_root: Path,
                  cache_dir: Path) -> tuple[list[Sample], dict[str, Counter[str]]]:
    """Give coarse boxes their fine class from the teacher (IoU and score rule); counts per coarse label."""
    counts: dict[str, Counter[str]] = {}
    for label, rule in smap.refine.items():
        todo = [s.image_path for s in samples if any(b.class_name == label for b in s.boxes)]
        teacher = _teacher_boxes(todo, rule, shared_root, cache_dir / f"teacher_{smap.name}.json")
        counts[label] = Counter()
        for i, s in enumerate(samples):
            if str(s.image_path) not in teacher:
                continue
            boxes = []
            for b in s.boxes:
                if b.class_name == label:
                    b = b.with_class(_fine_class(b, teacher[str(s.image_path)], rule))
                    counts[label][b.class_name] += 1
                boxes.append(b)
            samples[i] = replace(s, boxes=boxes)
    return samples, counts
