"""Render a labelled training set of belt scenes: ``images/*.jpg``, ``labels/*.txt`` (YOLO), ``data.yaml``.

Scenes are denser than the live simulator: touching and partly hidden items, varied belts, scale, lighting,
blur and camera roll. Boxes come from the alpha masks of what is visible in the final image; an item less
than ``MIN_VISIBLE`` visible gets no box.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from station.detections import overlap_of_smaller
from station.simulator._paint import U8, resize
from station.simulator.items import ItemMaker, Sprite
from station.simulator.scene import Light, Patch, belt_texture, clip_window, make_patch, paste
from station.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

MIN_VISIBLE = 0.4
"""Fraction of an item's own pixels that must be visible for it to get a label."""


class RenderError(ValueError):
    """The render request cannot be met (bad class names, sizes or counts)."""


@dataclass
class RenderSummary:
    """What :func:`render_dataset` wrote."""

    out_dir: Path
    n_images: int
    n_boxes: int
    per_class: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass(frozen=True)
class LabelBox:
    """One visible item in a rendered scene: class and pixel box (x0, y0, x1, y1; x1/y1 exclusive)."""

    class_name: str
    box: tuple[int, int, int, int]
    visible: float


@dataclass(frozen=True)
class Scene:
    """A rendered scene: the image, its labels, and which item owns each pixel (-1: belt)."""

    image: U8
    labels: list[LabelBox]
    owner: npt.NDArray[np.int16]


@dataclass
class _Placed:
    class_name: str
    patch: Patch
    x: int
    y: int
    area: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        x0, y0 = self.x + self.patch.ox, self.y + self.patch.oy
        h, w = self.patch.mask.shape
        return x0, y0, x0 + w - 2 * self.patch.ox, y0 + h - 2 * self.patch.oy


def _beside(rng: np.random.Generator, box: tuple[int, int, int, int], sw: int, sh: int) -> tuple[int, int]:
    """Top-left that puts a ``sw × sh`` item against one side of ``box`` (touching, a few px overlap)."""
    bx0, by0, bx1, by1 = box
    gap = int(rng.integers(-6, 3))
    ax = int(rng.uniform(bx0 - sw / 2, bx1 - sw / 2))
    ay = int(rng.uniform(by0 - sh / 2, by1 - sh / 2))
    sides = [(bx1 + gap, ay), (bx0 - sw - gap, ay), (ax, by1 + gap), (ax, by0 - sh - gap)]
    return sides[int(rng.integers(4))]


def _position(rng: np.random.Generator, sw: int, sh: int, width: int, height: int,
              placed: list[_Placed]) -> tuple[int, int]:
    """Top-left for a ``sw × sh`` item: beside an earlier item (touching) or somewhere not too covered."""
    best, best_ov = (0, 0), 2.0
    for attempt in range(30):
        if placed and attempt < 3 and rng.random() < 0.35:
            cand = _beside(rng, placed[int(rng.integers(len(placed)))].box, sw, sh)
        else:
            cand = (int(rng.uniform(-0.2 * sw, width - 0.8 * sw)), int(rng.uniform(-0.2 * sh, height - 0.8 * sh)))
        box = (cand[0], cand[1], cand[0] + sw, cand[1] + sh)
        ov = max((overlap_of_smaller(box, p.box) for p in placed), default=0.0)
        if ov < 0.15:
            return cand
        if ov < best_ov:
            best, best_ov = cand, ov
    return best


def _fit(sprite: Sprite, width: int, height: int) -> Sprite:
    f = min(1.0, 0.85 * width / sprite.width, 0.85 * height / sprite.height)
    if f >= 1.0:
        return sprite
    img, alpha = resize(sprite.image, sprite.alpha, round(sprite.width * f), round(sprite.height * f))
    return Sprite(image=img, alpha=alpha, class_name=sprite.class_name)


def _debris(frame: U8, rng: np.random.Generator) -> None:
    """Unlabelled crumbs and scraps: the detector must learn to ignore them."""
    h, w = frame.shape[:2]
    for _ in range(int(rng.integers(0, 12))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(1, 6))
        colour = tuple(int(v) for v in rng.integers(20, 230, 3))
        cv2.ellipse(frame, (x, y), (r, int(rng.integers(1, r + 1))), float(rng.uniform(0, 180)), 0, 360, colour, -1)


def _finish(img: U8, owner: npt.NDArray[np.int16], rng: np.random.Generator) -> tuple[U8, npt.NDArray[np.int16]]:
    """Camera effects on the whole scene: roll, uneven light, colour cast, motion/focus blur, noise."""
    h, w = img.shape[:2]
    if rng.random() < 0.3:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-8, 8)), 1.0)
        img = np.asarray(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
                         dtype=np.uint8)
        owner = np.asarray(cv2.warpAffine(owner, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=-1),
                           dtype=np.int16)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.35) * ((xx / w - 0.5) * np.cos(a) + (yy / h - 0.5) * np.sin(a))
    light -= rng.uniform(0, 0.35) * ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)
    cast = rng.uniform(0.92, 1.08, 3).astype(np.float32) * rng.uniform(0.7, 1.25)
    out = img.astype(np.float32) * light[..., None] * cast
    out += rng.normal(0, rng.uniform(0, 6), (h, w, 1)).astype(np.float32)
    img = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        img = np.asarray(cv2.blur(img, (int(rng.integers(2, 10)), 1)), dtype=np.uint8)
    if rng.random() < 0.2:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.5))), dtype=np.uint8)
    return img, owner


def render_scene(rng: np.random.Generator, maker: ItemMaker, width: int, height: int,
                 items: tuple[int, int]) -> Scene:
    """One labelled belt scene."""
    px_per_m = float(np.exp(rng.uniform(np.log(420), np.log(1000)))) * width / 640
    rails = int(rng.integers(8, max(9, height // 12))) if rng.random() < 0.4 else 0
    frame = belt_texture(width, height, rng, rails=rails)
    _debris(frame, rng)
    light = Light.random(rng)
    owner = np.full((height, width), -1, np.int16)
    placed: list[_Placed] = []
    for i in range(int(rng.integers(items[0], items[1] + 1))):
        name = maker.classes[int(rng.integers(len(maker.classes)))]
        sprite = _fit(maker.draw(name, rng, px_per_m), width, height)
        gain = tuple(float(g) for g in rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.2))
        patch = make_patch(sprite, gain=(gain[0], gain[1], gain[2]), light=light, px_per_m=px_per_m)
        x, y = _position(rng, sprite.width, sprite.height, width, height, placed)
        x, y = x - patch.ox, y - patch.oy
        paste(frame, patch, x, y)
        win = clip_window(owner.shape, x, y, patch.width, patch.height)
        if win is not None:
            fy, fx, py, px = win
            owner[fy, fx][patch.mask[py, px]] = i
        placed.append(_Placed(name, patch, x, y, int(patch.mask.sum())))
    frame, owner = _finish(frame, owner, rng)
    labels = visible_boxes(owner, [p.class_name for p in placed], [p.area for p in placed])
    return Scene(image=frame, labels=labels, owner=owner)


def visible_boxes(owner: npt.NDArray[np.int16], names: list[str], areas: list[int]) -> list[LabelBox]:
    """Boxes of the pixels each item owns; items with less than MIN_VISIBLE of their ``area`` visible get none."""
    out: list[LabelBox] = []
    for i, (name, area) in enumerate(zip(names, areas, strict=True)):
        ys, xs = np.nonzero(owner == i)
        visible = len(xs) / max(area, 1)
        if visible < MIN_VISIBLE:
            continue
        out.append(LabelBox(name, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                            round(visible, 3)))
    return out


def yolo_lines(labels: list[LabelBox], taxonomy: Taxonomy, width: int, height: int) -> list[str]:
    """YOLO label lines: ``class cx cy w h`` normalised to the image size."""
    lines = []
    for lab in labels:
        x0, y0, x1, y1 = lab.box
        lines.append(f"{taxonomy.index(lab.class_name)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return lines


def render_dataset(out_dir: Path, n: int, *, seed: int = 0, width: int = 640, height: int = 640,
                   taxonomy: Taxonomy | None = None, classes: list[str] | None = None, sprites: Path | None = None,
                   items_per_image: tuple[int, int] = (2, 6)) -> RenderSummary:
    """Write ``n`` labelled belt scenes under ``out_dir`` (the same seed writes the same files)."""
    tax = taxonomy or load_taxonomy()
    wanted = list(classes) if classes else list(tax.names)
    unknown = [c for c in wanted if c not in tax]
    if unknown:
        raise RenderError(f"classes {unknown} are not in the taxonomy; choose from {tax.names}")
    if n < 0 or width < 64 or height < 64:
        raise RenderError(f"render_dataset: need n ≥ 0 and an image of at least 64×64, got n={n}, {width}×{height}")
    lo, hi = items_per_image
    if not 1 <= lo <= hi:
        raise RenderError(f"items_per_image must be (low, high) with 1 ≤ low ≤ high, got {items_per_image}")
    maker = ItemMaker(wanted, sprites)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    per_class = dict.fromkeys(tax.names, 0)
    n_boxes = 0
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = render_scene(rng, maker, width, height, (lo, hi))
        stem = f"sim_{seed}_{i:06d}"
        quality = int(rng.integers(75, 96))
        cv2.imwrite(str(out / "images" / f"{stem}.jpg"), scene.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        lines = yolo_lines(scene.labels, tax, width, height)
        (out / "labels" / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        for lab in scene.labels:
            per_class[lab.class_name] += 1
        n_boxes += len(scene.labels)
    data = {"path": str(out.resolve()), "train": "images", "val": "images", "nc": len(tax.names),
            "names": list(tax.names)}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    log.info("rendered %d images, %d boxes into %s", n, n_boxes, out)
    return RenderSummary(out_dir=out, n_images=n, n_boxes=n_boxes, per_class=per_class)
