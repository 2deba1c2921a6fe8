"""Pack a YOLO dataset small enough to ship to a remote trainer (a GPU lease, a cloud box).

A training run at ``imgsz`` never sees more than ``imgsz`` pixels on an image's long side (Ultralytics resizes
on load), so ``pack`` resizes each image to that long side and re-encodes it as WebP: a build that reads
``../shared`` through links and spans several folders becomes one self-contained folder with a relative
``data.yaml`` (the default model's training set: 251 MiB → 64 MiB at 320 px). Labels are YOLO-normalised and
so stay valid; an image without a label file stays a background image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import yaml

from station.taxonomy import load_taxonomy
from training.evaluate import EvalError, label_path, resolve_data
from training.sources import spread

SPLITS = ("train", "val", "test")


class PackError(ValueError):
    """The dataset cannot be packed (message names the input and the fix)."""


@dataclass
class PackResult:
    out_dir: Path
    data_yaml: Path
    images: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0


def _packed_name(image: Path) -> str:
    """Unique within the pack: folders of one data.yaml may hold images of the same name."""
    return f"{hashlib.sha256(str(image.parent.absolute()).encode()).hexdigest()[:8]}_{image.stem}"


def _pack_one(job: tuple[Path, Path, Path, int, int]) -> tuple[int, int]:
    image, out_image, out_label, long_side, quality = job
    img = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if img is None:
        raise PackError(f"image {image} cannot be read; remove it from the dataset or replace the file")
    h, w = img.shape[:2]
    r = long_side / max(h, w)
    if r < 1:
        img = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(out_image), img, [cv2.IMWRITE_WEBP_QUALITY, quality]):
        raise PackError(f"cannot write {out_image}; check the output folder is writable")
    label = label_path(image)
    if label.is_file():
        out_label.write_text(label.read_text())
    return image.stat().st_size, out_image.stat().st_size


def pack(data: Path, out_dir: Path, *, long_side: int, quality: int = 80, splits: Sequence[str] = ("train", "val"),
         max_images: dict[str, int] | None = None, workers: int = 0) -> PackResult:
    """Write ``out_dir/{images,labels}/<split>/`` and ``out_dir/data.yaml`` (``path: .``) from ``data``.

    ``max_images`` caps a split to an evenly spread subset (e.g. a smaller validation split).
    """
    if long_side < 32:
        raise PackError(f"long side {long_side} px is too small; use the training imgsz (e.g. 320)")
    if not 1 <= quality <= 100:
        raise PackError(f"WebP quality {quality} is out of range; use 1..100 (80 keeps fine detail)")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PackError(f"output folder {out_dir} is not empty; pass a new folder")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise PackError(f"unknown split(s) {unknown}; use {', '.join(SPLITS)}")
    jobs: list[tuple[Path, Path, Path, int, int]] = []
    names: list[str] = []
    result = PackResult(out_dir, out_dir / "data.yaml")
    for split in splits:
        try:
            names, images = resolve_data(data, split, load_taxonomy())
        except EvalError as exc:
            raise PackError(str(exc)) from None
        images = spread(sorted(images), (max_images or {}).get(split))
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for image in images:
            name = _packed_name(image)
            if name in taken:
                raise PackError(f"two images pack to {name!r} ({image}); rename one of them")
            taken.add(name)
            jobs.append((image, out_dir / "images" / split / f"{name}.webp",
                         out_dir / "labels" / split / f"{name}.txt", long_side, quality))
        result.images[split] = len(images)
    n = workers or min(8, os.cpu_count() or 1)
    if n > 1:
        with ProcessPoolExecutor(n) as ex:
            sizes = list(ex.map(_pack_one, jobs, chunksize=32))
    else:
        sizes = [_pack_one(j) for j in jobs]
    result.bytes_in = sum(a for a, _ in sizes)
    result.bytes_out = sum(b for _, b in sizes)
    spec = {"path": ".", **{s: f"images/{s}" for s in splits}, "nc": len(names), "names": dict(enumerate(names))}
    result.data_yaml.write_text(f"# Packed by `sortloop data pack` from {data} (long side {long_side} px, WebP "
                                f"q{quality}).\n" + yaml.safe_dump(spec, sort_keys=False))
    return result
