"""Labelled images in memory (``Sample`` with ``Box`` es) and their readers/writers.

Formats: YOLO (folder + data.yaml), COCO JSON, Pascal VOC XML, Label Studio JSON (rectanglelabels, percent
coordinates). Boxes are pixel ``x1 y1 x2 y2`` with edges on pixel borders (0 … width); every writer/reader
pair round-trips a box to within 0.5 px. Readers never stop at a bad line: they record it in ``Sample.notes``
for ``training.validate`` to count.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

import yaml

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FormatName = Literal["yolo", "coco", "voc", "labelstudio"]
FORMATS: tuple[FormatName, ...] = ("yolo", "coco", "voc", "labelstudio")


class FormatError(ValueError):
    """A dataset file or folder cannot be read as the format asked for; the message names path and fix."""


@dataclass(frozen=True)
class Box:
    """One labelled box in pixels (x1, y1, x2, y2) with its class name."""

    xyxy: tuple[float, float, float, float]
    class_name: str

    def __post_init__(self) -> None:
        if len(self.xyxy) != 4:
            raise ValueError(f"Box.xyxy: expected 4 numbers (x1, y1, x2, y2), got {self.xyxy!r}")
        object.__setattr__(self, "xyxy", tuple(float(v) for v in self.xyxy))

    @property
    def width(self) -> float:
        return self.xyxy[2] - self.xyxy[0]

    @property
    def height(self) -> float:
        return self.xyxy[3] - self.xyxy[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def with_class(self, class_name: str) -> Box:
        return Box(self.xyxy, class_name)


@dataclass
class Sample:
    """One image with its boxes. ``group`` ties copies (augmented, synthetic) to their parent photo."""

    image_path: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    source: str = ""
    group: str = ""
    label_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    """Problems the reader found (malformed label lines, unknown class indices)."""


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two pixel boxes ``x1 y1 x2 y2`` (0 when both are empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; (0, 0) when the file cannot be opened as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError, ValueError):
        return 0, 0


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


# ---------------------------------------------------------------------------------------------- YOLO


def _yolo_names(data: dict[str, Any], path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise FormatError(f"{path}: no 'names' list; add names: [class0, class1, ...]")


def _labels_dir(images_dir: Path) -> Path:
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir.parent / "labels"


def _parse_yolo_line(line: str, names: Sequence[str], w: int, h: int) -> Box | str:
    """A box from a YOLO line (box or polygon), or a note saying why the line was not used."""
    parts = line.split()
    try:
        idx = int(parts[0])
        vals = [float(v) for v in parts[1:]]
    except ValueError:
        return f"malformed line {line!r}"
    if len(vals) == 4:
        cx, cy, bw, bh = vals
        xyxy = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
    elif len(vals) >= 6 and len(vals) % 2 == 0:
        xs, ys = vals[0::2], vals[1::2]
        xyxy = (min(xs) * w, min(ys) * h, max(xs) * w, max(ys) * h)
    else:
        return f"malformed line {line!r} (expected 'class cx cy w h' or a polygon)"
    if not all(math.isfinite(v) for v in xyxy):
        return f"malformed line {line!r} (non-finite number)"
    name = names[idx] if 0 <= idx < len(names) else f"<class index {idx}>"
    return Box(xyxy, name)


def read_yolo_image(image: Path, label: Path, names: Sequence[str], source: str = "") -> Sample:
    w, h = image_size(image)
    sample = Sample(image, w, h, source=source, label_path=label if label.exists() else None)
    if not label.exists():
        return sample
    for line in label.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        parsed = _parse_yolo_line(line, names, w, h)
        if isinstance(parsed, Box):
            sample.boxes.append(parsed)
        else:
            sample.notes.append(f"{label}: {parsed}")
    return sample


def yolo_split_dirs(root: Path, split: str | None = None) -> tuple[list[str], dict[str, Path]]:
    """(names, {split: images dir}) from ``root/data.yaml``; identical dirs (train == val) appear once."""
    yml = root / "data.yaml"
    if not yml.is_file():
        raise FormatError(f"{root}: no data.yaml; a YOLO dataset needs data.yaml with names and train/val dirs")
    data = yaml.safe_load(yml.read_text()) or {}
    names = _yolo_names(data, yml)
    base = root / str(data.get("path") or ".")
    dirs: dict[str, Path] = {}
    for key in ("train", "val", "test"):
        if data.get(key) and (split is None or split == key):
            d = (base / str(data[key])).resolve()
            if d.is_dir() and d not in dirs.values():
                dirs[key] = d
    if not dirs:
        raise FormatError(f"{yml}: no existing image folder for split {split or 'train/val/test'}; "
                          "check its path/train/val entries")
    return names, dirs


def read_yolo(root: Path, *, split: str | None = None, source: str = "") -> list[Sample]:
    """All images of a YOLO dataset (``root/data.yaml``), or of one split."""
    names, dirs = yolo_split_dirs(root, split)
    samples: list[Sample] = []
    for images_dir in dirs.values():
        labels_dir = _labels_dir(images_dir)
        for image in list_images(images_dir):
            samples.append(read_yolo_image(image, labels_dir / f"{image.stem}.txt", names, source))
    return samples


def yolo_line(box: Box, class_index: int, w: int, h: int) -> str:
    x1, y1, x2, y2 = box.xyxy
    return f"{class_index} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"


def unique_stem(sample: Sample, taken: set[str]) -> str:
    base = f"{sample.source}__{sample.image_path.stem}" if sample.source else sample.image_path.stem
    base = base.replace(" ", "_").replace(os.sep, "_")
    stem, n = base, 1
    while stem in taken:
        stem, n = f"{base}_{n}", n + 1
    taken.add(stem)
    return stem


def place_image(src: Path, dst: Path, *, copy: bool) -> None:
    """Put ``src`` at ``dst`` as an absolute symlink (or a copy); an existing ``dst`` is replaced."""
    dst.unlink(missing_ok=True)
    if copy:
        dst.write_bytes(src.read_bytes())
    else:
        dst.symlink_to(src.resolve())


def write_yolo_split(samples: Iterable[Sample], out_dir: Path, names: Sequence[str], split: str, *,
                     copy_images: bool = False) -> list[Path]:
    """Write images (symlinks unless ``copy_images``) and labels of one split; returns the image paths."""
    img_dir, lbl_dir = out_dir / "images" / split, out_dir / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    index = {n: i for i, n in enumerate(names)}
    taken = {p.stem for p in img_dir.iterdir()}
    written = []
    for s in samples:
        missing = sorted({b.class_name for b in s.boxes} - index.keys())
        if missing:
            raise FormatError(f"{s.image_path}: classes {missing} are not in the names list; map or drop them")
        stem = unique_stem(s, taken)
        dst = img_dir / f"{stem}{s.image_path.suffix.lower()}"
        place_image(s.image_path, dst, copy=copy_images)
        lines = [yolo_line(b, index[b.class_name], s.width, s.height) for b in s.boxes]
        (lbl_dir / f"{stem}.txt").write_text("".join(f"{ln}\n" for ln in lines))
        written.append(dst)
    return written


def write_data_yaml(out_dir: Path, names: Sequence[str], splits: dict[str, str]) -> Path:
    """``data.yaml`` with an absolute ``path`` and ``names`` as an index → name mapping."""
    data: dict[str, Any] = {"path": str(out_dir.resolve()), **splits, "nc": len(names),
                            "names": dict(enumerate(names))}
    path = out_dir / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_yolo(samples: Sequence[Sample], out_dir: Path, names: Sequence[str], *, split: str = "train",
               copy_images: bool = False) -> Path:
    """A one-split YOLO dataset; returns the data.yaml path."""
    write_yolo_split(samples, out_dir, names, split, copy_images=copy_images)
    return write_data_yaml(out_dir, names, {"train": f"images/{split}", "val": f"images/{split}"})


# ---------------------------------------------------------------------------------------------- COCO


def _image_ref(path: Path, image_root: Path | None) -> str:
    if image_root is not None:
        try:
            return str(path.resolve().relative_to(image_root.resolve()))
        except ValueError:
            pass
    return str(path.resolve())


def write_coco(samples: Sequence[Sample], json_path: Path, names: Sequence[str], *,
               image_root: Path | None = None) -> Path:
    """COCO detection JSON; category ids start at 1 in ``names`` order, ``bbox`` is [x, y, w, h]."""
    cat = {n: i + 1 for i, n in enumerate(names)}
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for img_id, s in enumerate(samples, start=1):
        images.append({"id": img_id, "file_name": _image_ref(s.image_path, image_root),
                       "width": s.width, "height": s.height})
        for b in s.boxes:
            if b.class_name not in cat:
                raise FormatError(f"{s.image_path}: class {b.class_name!r} is not in the names list")
            x1, y1 = b.xyxy[0], b.xyxy[1]
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat[b.class_name],
                         "bbox": [round(x1, 3), round(y1, 3), round(b.width, 3), round(b.height, 3)],
                         "area": round(b.area, 3), "iscrowd": 0})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": i, "name": n, "supercategory": "item"} for n, i in cat.items()]}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1))
    return json_path


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: cannot read as JSON ({exc}); pass the exported .json file") from exc


def read_coco(json_path: Path, *, image_root: Path | None = None, source: str = "") -> list[Sample]:
    doc = _load_json(json_path)
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise FormatError(f"{json_path}: not a COCO detection file (needs 'images' and 'annotations')")
    root = image_root or json_path.parent
    cats = {c["id"]: str(c["name"]) for c in doc.get("categories", [])}
    samples: dict[Any, Sample] = {}
    for im in doc["images"]:
        path = root / str(im["file_name"])
        samples[im["id"]] = Sample(path, int(im.get("width", 0)), int(im.get("height", 0)), source=source)
    for a in doc["annotations"]:
        s = samples.get(a.get("image_id"))
        if s is None:
            log.warning("%s: annotation %s names unknown image %s", json_path, a.get("id"), a.get("image_id"))
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        name = cats.get(a.get("category_id"), f"<category {a.get('category_id')}>")
        s.boxes.append(Box((x, y, x + w, y + h), name))
    return list(samples.values())


# ------------------------------------------------------------------------------------------ Pascal VOC


_VOC = """<annotation>
  <folder>{folder}</folder>
  <filename>{filename}</filename>
  <path>{path}</path>
  <source><database>sortloop</database></source>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  <segmented>0</segmented>
{objects}</annotation>
"""
_VOC_OBJ = """  <object>
    <name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>{x1:.2f}</xmin><ymin>{y1:.2f}</ymin><xmax>{x2:.2f}</xmax><ymax>{y2:.2f}</ymax></bndbox>
  </object>
"""


def write_voc(samples: Sequence[Sample], out_dir: Path) -> list[Path]:
    """One XML per image. VOC pixel indices are 1-based and inclusive: xmin = x1 + 1, xmax = x2."""
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    written = []
    for s in samples:
        objs = "".join(_VOC_OBJ.format(name=escape(b.class_name), x1=b.xyxy[0] + 1, y1=b.xyxy[1] + 1,
                                       x2=b.xyxy[2], y2=b.xyxy[3]) for b in s.boxes)
        xml = _VOC.format(folder=escape(s.image_path.parent.name), filename=escape(s.image_path.name),
                          path=escape(str(s.image_path.resolve())), w=s.width, h=s.height, objects=objs)
        path = out_dir / f"{unique_stem(Sample(s.image_path, 0, 0), taken)}.xml"
        path.write_text(xml)
        written.append(path)
    return written


def _voc_text(node: Any, tag: str, default: str = "") -> str:
    child = node.find(tag)
    return default if child is None or child.text is None else child.text.strip()


def read_voc_file(xml_path: Path, *, image_root: Path | None = None, source: str = "") -> Sample:
    from defusedxml import ElementTree as SafeET

    try:
        root = SafeET.parse(xml_path).getroot()
    except Exception as exc:  # defusedxml raises ParseError or its own DefusedXmlException
        raise FormatError(f"{xml_path}: not readable as Pascal VOC XML ({exc})") from exc
    filename = _voc_text(root, "filename")
    path = Path(_voc_text(root, "path"))
    if not path.is_file():
        path = (image_root or xml_path.parent) / filename
    size = root.find("size")
    w = int(float(_voc_text(size, "width", "0"))) if size is not None else 0
    h = int(float(_voc_text(size, "height", "0"))) if size is not None else 0
    sample = Sample(path, w, h, source=source, label_path=xml_path)
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        try:
            assert bb is not None
            vals = [float(_voc_text(bb, t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        except (AssertionError, ValueError):
            sample.notes.append(f"{xml_path}: object without a numeric bndbox")
            continue
        sample.boxes.append(Box((vals[0] - 1, vals[1] - 1, vals[2], vals[3]), _voc_text(obj, "name")))
    return sample


def read_voc(folder: Path, *, image_root: Path | None = None, source: str = "") -> list[Sample]:
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise FormatError(f"{folder}: no .xml files; pass the folder of Pascal VOC annotations")
    return [read_voc_file(f, image_root=image_root, source=source) for f in files]


# ---------------------------------------------------------------------------------------- Label Studio


def write_labelstudio(samples: Sequence[Sample], json_path: Path, *, image_root: Path | None = None) -> Path:
    """Label Studio tasks with one annotation of ``rectanglelabels`` (percent of the image size)."""
    tasks = []
    for i, s in enumerate(samples, start=1):
        results = []
        for j, b in enumerate(s.boxes):
            x1, y1 = b.xyxy[0], b.xyxy[1]
            results.append({
                "id": f"{i}_{j}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                "original_width": s.width, "original_height": s.height, "image_rotation": 0,
                "value": {"x": 100 * x1 / s.width, "y": 100 * y1 / s.height, "width": 100 * b.width / s.width,
                          "height": 100 * b.height / s.height, "rotation": 0, "rectanglelabels": [b.class_name]},
            })
        tasks.append({"id": i, "data": {"image": _image_ref(s.image_path, image_root)},
                      "annotations": [{"id": i, "result": results}]})
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(tasks, indent=1))
    return json_path


def _ls_image_path(ref: str, root: Path) -> Path:
    marker = "/data/local-files/?d="
    if ref.startswith(marker):
        return Path("/" + ref[len(marker):].lstrip("/"))
    p = Path(ref)
    return p if p.is_absolute() else root / p


def _ls_box(value: dict[str, Any], w: int, h: int) -> tuple[float, float, float, float]:
    x, y = value["x"] * w / 100, value["y"] * h / 100
    bw, bh = value["width"] * w / 100, value["height"] * h / 100
    rot = math.radians(float(value.get("rotation", 0) or 0))
    if not rot:
        return x, y, x + bw, y + bh
    c, s_ = math.cos(rot), math.sin(rot)  # rotated about the top-left corner, as Label Studio does
    pts = [(x + dx * c - dy * s_, y + dx * s_ + dy * c) for dx, dy in ((0, 0), (bw, 0), (bw, bh), (0, bh))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def _ls_sample(task: dict[str, Any], root: Path, source: str) -> Sample:
    data = task.get("data", {})
    ref = next((str(v) for v in data.values() if isinstance(v, str)), "")
    path = _ls_image_path(ref, root)
    anns = [a for a in task.get("annotations", []) if not a.get("was_cancelled")] or task.get("predictions", [])
    results = anns[-1].get("result", []) if anns else []
    w = next((int(r["original_width"]) for r in results if "original_width" in r), 0)
    h = next((int(r["original_height"]) for r in results if "original_height" in r), 0)
    if not (w and h):
        w, h = image_size(path)
    sample = Sample(path, w, h, source=source)
    for r in results:
        if r.get("type") != "rectanglelabels":
            continue
        labels = r.get("value", {}).get("rectanglelabels") or []
        if not labels or not (w and h):
            sample.notes.append(f"task {task.get('id')}: rectangle without a label or image size")
            continue
        sample.boxes.append(Box(_ls_box(r["value"], w, h), str(labels[0])))
    return sample


def read_labelstudio(json_path: Path, *, image_root: Path | None = None, source: str = "") -> list[Sample]:
    doc = _load_json(json_path)
    if not isinstance(doc, list):
        raise FormatError(f"{json_path}: expected a Label Studio export (a JSON list of tasks)")
    root = image_root or json_path.parent
    return [_ls_sample(t, root, source) for t in doc]


# ------------------------------------------------------------------------------------------- dispatch


def read_any(fmt: FormatName, path: Path, *, image_root: Path | None = None, source: str = "") -> list[Sample]:
    """Read a dataset in one of ``FORMATS``: YOLO root folder, COCO .json, VOC folder, Label Studio .json."""
    if not path.exists():
        raise FormatError(f"{path}: does not exist; pass the dataset folder or export file")
    if fmt == "yolo":
        return read_yolo(path, source=source)
    if fmt == "coco":
        return read_coco(path, image_root=image_root, source=source)
    if fmt == "voc":
        return read_voc(path, image_root=image_root, source=source)
    if fmt == "labelstudio":
        return read_labelstudio(path, image_root=image_root, source=source)
    raise FormatError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_any(fmt: FormatName, samples: Sequence[Sample], path: Path, names: Sequence[str]) -> Path:
    """Write ``samples`` in one of ``FORMATS``: YOLO/VOC into folder ``path``, COCO/Label Studio to file."""
    if fmt == "yolo":
        return write_yolo(samples, path, names)
    if fmt == "coco":
        return write_coco(samples, path, names)
    if fmt == "voc":
        write_voc(samples, path)
        return path
    if fmt == "labelstudio":
        return write_labelstudio(samples, path)
    raise FormatError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def class_names(samples: Iterable[Sample]) -> list[str]:
    """Sorted class names found in ``samples`` (for writers when no taxonomy is given)."""
    return sorted({b.class_name for s in samples for b in s.boxes})
