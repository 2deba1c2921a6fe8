"""Synthetic scenes: RGBA cut-outs pasted onto belt backgrounds or real photos, with exact boxes.

Each pasted object is scaled, rotated and flipped as RGBA; its box is the bounding box of its *visible*
alpha (alpha ≥ 128, minus whatever later pastes cover), so boxes are exact by construction. On a real photo
the photo's own boxes are kept and no paste may cover more than ``max_cover_existing`` of any of them. Then
the whole scene gets albumentations photometric augmentation (brightness/contrast, hue, blur, noise, JPEG)
and box-exact geometric augmentation (flips). Each scene records its parent's group so splits stay clean.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from training.cutouts import Cutout, parallel_map
from training.formats import Box, Sample, iou

log = logging.getLogger(__name__)

Image = npt.NDArray[Any]
"""uint8 BGR (h, w, 3) or BGRA (h, w, 4)."""
SceneKind = Literal["belt", "real", "plain"]
ALPHA_ON = 128

# Object long side as a share of the scene's long side, per class (default for the others).
SIZE_RANGE: dict[str, tuple[float, float]] = {
    "battery": (0.08, 0.22), "phone": (0.12, 0.24), "mouse": (0.1, 0.2), "can": (0.1, 0.22),
    "pcb": (0.12, 0.3), "keyboard": (0.3, 0.55), "laptop": (0.3, 0.5), "monitor": (0.3, 0.5),
}
DEFAULT_SIZE = (0.12, 0.32)
# "plain" scenes (one to four items on a table, floor, carpet, cloth or paper, as someone photographs an item):
# a much wider scale range, down to an AA cell at the size it has on the belt and up to an item filling the photo.
PLAIN_SIZE: dict[str, tuple[float, float]] = {"battery": (0.05, 0.7), "textile": (0.35, 0.9)}
PLAIN_DEFAULT_SIZE = (0.12, 0.7)
PLAIN_HAZARD_WEIGHT = 4.0
"""Weight of the battery class among a plain scene's items (the hard negatives are every other class)."""


@dataclass(frozen=True)
class SynthParams:
    items_min: int = 2
    items_max: int = 6
    max_cover_existing: float = 0.2
    """Largest share of an existing (real) box a paste may cover."""
    max_iou_pasted: float = 0.1
    """Largest IoU between the boxes of two pasted objects."""
    min_visible_px: int = 40
    tries: int = 25
    battery_weight: float = 2.0
    """Extra weight of the battery class when picking cut-outs (no real battery boxes exist)."""
    jpeg_quality: int = 92
    shadow: float = 0.35


@dataclass
class Pasted:
    class_name: str
    mask: npt.NDArray[np.bool_]
    origin: str = ""


@dataclass
class Scene:
    image: Image
    boxes: list[Box] = field(default_factory=list)
    masks: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    """Visible mask of each pasted object, parallel to the pasted boxes (after the existing ones)."""


# ---------------------------------------------------------------------------------------- backgrounds


def belt_background(width: int, height: int, rng: np.random.Generator) -> Image:
    """A procedural conveyor belt: dark rubber with grain, streaks along the travel direction, side rails."""
    tone = rng.uniform(35, 95)
    tint = rng.uniform(-6, 6, size=3)
    low = cv2.resize(rng.normal(0, 6, (max(2, height // 64), max(2, width // 64))).astype(np.float32),
                     (width, height), interpolation=cv2.INTER_CUBIC)
    streaks = np.repeat(rng.normal(0, rng.uniform(1, 5), (height, 1)).astype(np.float32), width, axis=1)
    grain = rng.normal(0, rng.uniform(2, 6), (height, width)).astype(np.float32)
    light = np.linspace(rng.uniform(-12, 0), rng.uniform(0, 12), width, dtype=np.float32)[None, :]
    base = tone + low + streaks + grain + light
    img = np.clip(base[:, :, None] + tint[None, None, :], 0, 255)
    rail = int(height * rng.uniform(0.0, 0.07))
    if rail:
        metal = rng.uniform(120, 190)
        img[:rail] = metal + rng.normal(0, 4, (rail, width, 1))
        img[-rail:] = metal + rng.normal(0, 4, (rail, width, 1))
    return img.astype(np.uint8)


def _simulator_belt(width: int, height: int, rng: np.random.Generator) -> Image | None:
    """The conveyor simulator's belt texture (``station.simulator.scene.belt_texture``) when it is there."""
    try:
        from station.simulator.scene import belt_texture
    except ImportError:
        return None
    rails = int(rng.integers(8, max(9, height // 12))) if rng.random() < 0.4 else 0
    return np.asarray(belt_texture(width, height, rng, rails=rails), dtype=np.uint8)


def _surface_colour(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """BGR of a surface: mostly whites, greys, beiges and wood browns; now and then a saturated colour."""
    if rng.random() < 0.2:
        return rng.uniform(20, 245, size=3)
    grey = rng.uniform(25, 250)
    warm = rng.uniform(-5, 35) * (1 if rng.random() < 0.6 else 0.2)
    return np.clip(np.array([grey - warm, grey - warm * 0.4, grey + warm * 0.5]) + rng.normal(0, 6, 3), 0, 255)


def _surface_texture(style: int, height: int, width: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Brightness offsets of a surface: 0 plain, 1 wood grain, 2 carpet or felt, 3 fabric weave, 4 tiles."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tex: npt.NDArray[np.float32] = np.zeros((height, width), np.float32)
    if style == 1:
        freq = rng.uniform(0.02, 0.12)
        warp = cv2.resize(rng.normal(0, 8, (4, 4)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        tex[:] = 18 * np.sin((yy + warp) * freq) + rng.normal(0, 3, (height, width))
    elif style == 2:
        tex[:] = cv2.GaussianBlur(rng.normal(0, rng.uniform(10, 30), (height, width)).astype(np.float32), (0, 0), 1.2)
    elif style == 3:
        p = rng.uniform(2.0, 6.0)
        tex[:] = 10 * np.sin(xx * np.pi / p) * np.sin(yy * np.pi / p) + rng.normal(0, 4, (height, width))
    elif style == 4:
        step = int(rng.integers(24, max(25, min(width, height) // 2)))
        grout = (xx.astype(np.int64) % step < 2) | (yy.astype(np.int64) % step < 2)
        tex[:] = np.where(grout, -40.0, 0.0) + rng.normal(0, 3, (height, width))
    return tex


def plain_background(width: int, height: int, rng: np.random.Generator) -> Image:
    """A surface an item is photographed on: a plain or graded colour, wood grain, carpet or fabric weave,
    tiles or paper, under uneven light. Domain randomisation: no single surface to learn."""
    colour = _surface_colour(rng)
    tex = _surface_texture(int(rng.integers(5)), height, width, rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gx, gy = rng.uniform(-40, 40, size=2)
    light = (gx * (xx / width - 0.5) + gy * (yy / height - 0.5)).astype(np.float32)
    second = _surface_colour(rng) if rng.random() < 0.3 else colour
    mix = (xx / width)[:, :, None] if rng.random() < 0.5 else (yy / height)[:, :, None]
    base = colour[None, None, :] * (1 - mix) + second[None, None, :] * mix
    return np.clip(base + (tex + light)[:, :, None], 0, 255).astype(np.uint8)


def background_for(kind: SceneKind, size: tuple[int, int], rng: np.random.Generator) -> Image:
    """A belt background: mostly the simulator's textures, some of our own for variety."""
    w, h = size
    if kind == "plain":
        return plain_background(w, h, rng)
    if kind == "belt" and rng.random() < 0.7:
        sim = _simulator_belt(w, h, rng)
        if sim is not None and sim.shape[:2] == (h, w):
            return sim
    return belt_background(w, h, rng)


# ------------------------------------------------------------------------------------------- pasting


@lru_cache(maxsize=4096)
def _load_rgba(path: str) -> Image:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"cut-out {path} is not an RGBA PNG; re-make the cut-outs (sortloop data cutouts)")
    return img


def transform_cutout(rgba: Image, long_side: int, rng: np.random.Generator) -> Image:
    """Scale to ``long_side``, flip, rotate (canvas expanded so nothing is cut), small brightness change."""
    h, w = rgba.shape[:2]
    s = long_side / max(h, w)
    out = cv2.resize(rgba, (max(2, round(w * s)), max(2, round(h * s))), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.3:
        out = out[::-1]
    angle = float(rng.uniform(-180, 180))
    h, w = out.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos) + 2, int(h * cos + w * sin) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    out = cv2.warpAffine(np.ascontiguousarray(out), m, (nw, nh), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    gain = rng.uniform(0.8, 1.15)
    out[:, :, :3] = np.clip(out[:, :, :3].astype(np.float32) * gain, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(out[:, :, 3] >= ALPHA_ON)
    if len(ys) == 0:
        return out
    return np.ascontiguousarray(out[ys.min():ys.max() + 1, xs.min():xs.max() + 1])


def paste(scene: Image, rgba: Image, x: int, y: int, shadow: float = 0.0) -> npt.NDArray[np.bool_]:
    """Alpha-blend ``rgba`` at (x, y) (top-left, fully inside); returns its full-scene mask (alpha ≥ 128)."""
    h, w = rgba.shape[:2]
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255
    if shadow > 0:
        d = max(2, min(h, w) // 20)
        sy, sx = min(scene.shape[0], y + d + h), min(scene.shape[1], x + d + w)
        sh = cv2.GaussianBlur(alpha[:, :, 0], (0, 0), d)[: sy - y - d, : sx - x - d, None]
        region = scene[y + d:sy, x + d:sx].astype(np.float32)
        scene[y + d:sy, x + d:sx] = (region * (1 - shadow * sh)).astype(np.uint8)
    region = scene[y:y + h, x:x + w].astype(np.float32)
    scene[y:y + h, x:x + w] = (rgba[:, :, :3] * alpha + region * (1 - alpha)).astype(np.uint8)
    mask = np.zeros(scene.shape[:2], bool)
    mask[y:y + h, x:x + w] = rgba[:, :, 3] >= ALPHA_ON
    return mask


def mask_box(mask: npt.NDArray[np.bool_]) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _fits(obj: Image, x: int, y: int, existing: Sequence[Box], pasted: Sequence[tuple[float, ...]],
          params: SynthParams) -> bool:
    h, w = obj.shape[:2]
    box = (float(x), float(y), float(x + w), float(y + h))
    if any(iou(box, p) > params.max_iou_pasted for p in pasted):
        return False
    alpha = obj[:, :, 3] >= ALPHA_ON
    for e in existing:
        ex1, ey1 = max(int(e.xyxy[0]), x), max(int(e.xyxy[1]), y)
        ex2, ey2 = min(int(np.ceil(e.xyxy[2])), x + w), min(int(np.ceil(e.xyxy[3])), y + h)
        if ex2 <= ex1 or ey2 <= ey1:
            continue
        covered = int(alpha[ey1 - y:ey2 - y, ex1 - x:ex2 - x].sum())
        if covered > params.max_cover_existing * max(e.area, 1.0):
            return False
    return True


def compose(background: Image, existing: Sequence[Box], items: Sequence[tuple[Image, str]],
            rng: np.random.Generator, params: SynthParams = SynthParams()) -> Scene:
    """Paste ``items`` (transformed RGBA, class) where they fit; boxes from the visible masks."""
    scene = background.copy()
    H, W = scene.shape[:2]
    placed: list[Pasted] = []
    boxes_so_far: list[tuple[float, ...]] = []
    for obj, name in items:
        h, w = obj.shape[:2]
        if h >= H or w >= W:
            continue
        for _ in range(params.tries):
            x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            if _fits(obj, x, y, existing, boxes_so_far, params):
                mask = paste(scene, obj, x, y, params.shadow if not existing else 0.0)
                for p in placed:  # the new object hides what it covers of earlier ones
                    p.mask &= ~mask
                placed.append(Pasted(name, mask))
                boxes_so_far.append((x, y, x + w, y + h))
                break
    out = Scene(scene, list(existing))
    for p in placed:
        box = mask_box(p.mask)
        if box is not None and int(p.mask.sum()) >= params.min_visible_px:
            out.boxes.append(Box(box, p.class_name))
            out.masks.append(p.mask)
    return out


# -------------------------------------------------------------------------------------- augmentation


def scene_augmentation(seed: int) -> Any:
    """albumentations pipeline: photometric changes and box-exact flips (Pascal VOC pixel boxes), seeded."""
    aug = _augmentation()
    aug.set_random_seed(seed)
    return aug


@lru_cache(maxsize=1)
def _augmentation() -> Any:
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.2),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.8),
            A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=10, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 9))], p=0.35),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
            A.ImageCompression(quality_range=(45, 95), p=0.4),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True),
    )


def augment(scene: Scene, aug: Any) -> Scene:
    if not scene.boxes:
        return Scene(aug(image=scene.image, bboxes=np.zeros((0, 4)), labels=[])["image"])
    out = aug(image=scene.image, bboxes=[b.xyxy for b in scene.boxes], labels=[b.class_name for b in scene.boxes])
    boxes = [Box((float(bb[0]), float(bb[1]), float(bb[2]), float(bb[3])), str(lbl))
             for bb, lbl in zip(out["bboxes"], out["labels"], strict=True)]
    return Scene(out["image"], boxes)


# ---------------------------------------------------------------------------------------------- scenes


def _pick_items(cutouts: Sequence[Cutout], n: int, long_side: int, rng: np.random.Generator,
                params: SynthParams, plain: bool = False) -> list[tuple[Image, str]]:
    by_class: dict[str, list[Cutout]] = {}
    for c in cutouts:
        by_class.setdefault(c.class_name, []).append(c)
    classes = sorted(by_class)
    hazard = PLAIN_HAZARD_WEIGHT if plain else params.battery_weight
    weights = np.array([hazard if c == "battery" else 1.0 for c in classes])
    items = []
    for _ in range(n):
        name = classes[int(rng.choice(len(classes), p=weights / weights.sum()))]
        pool = by_class[name]
        cut = pool[int(rng.integers(len(pool)))]
        lo, hi = PLAIN_SIZE.get(name, PLAIN_DEFAULT_SIZE) if plain else SIZE_RANGE.get(name, DEFAULT_SIZE)
        side = max(12, int(long_side * rng.uniform(lo, hi)))
        items.append((transform_cutout(_load_rgba(str(cut.path)), side, rng), name))
    return items


def _fit_background(sample: Sample, imgsz: int) -> tuple[Image, list[Box]] | None:
    img = cv2.imread(str(sample.image_path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    s = imgsz / max(h, w)
    img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    sx, sy = img.shape[1] / w, img.shape[0] / h
    boxes = [Box((b.xyxy[0] * sx, b.xyxy[1] * sy, b.xyxy[2] * sx, b.xyxy[3] * sy), b.class_name)
             for b in sample.boxes]
    return img, boxes  # type: ignore[return-value]


def make_scene(index: int, kind: SceneKind, *, cutouts: Sequence[Cutout], backgrounds: Sequence[Sample],
               seed: int, imgsz: int, params: SynthParams = SynthParams()) -> tuple[Scene, str]:
    """One augmented scene and its parent group; deterministic for (seed, index, kind)."""
    scene_seed = (seed * 1_000_003 + index * 7919 + {"belt": 0, "real": 1, "plain": 2}[kind]) % (2**32)
    rng = np.random.default_rng(scene_seed)
    group = f"synth-{kind}:{seed}:{index}"
    existing: list[Box] = []
    if kind == "real" and backgrounds:
        parent = backgrounds[int(rng.integers(len(backgrounds)))]
        fitted = _fit_background(parent, imgsz)
        if fitted is not None:
            bg, existing = fitted
            group = parent.group or str(parent.image_path)
        else:
            bg = background_for("belt", (imgsz, imgsz), rng)
    elif kind == "plain":
        height = imgsz if rng.random() < 0.4 else int(imgsz * rng.uniform(0.6, 0.9))
        bg = background_for("plain", (imgsz, height) if rng.random() < 0.5 else (height, imgsz), rng)
    else:
        height = imgsz if rng.random() < 0.5 else max(64, int(imgsz * 9 / 16) // 32 * 32)
        bg = background_for("belt", (imgsz, height), rng)
    n = int(rng.integers(1, 5)) if kind == "plain" else int(rng.integers(params.items_min, params.items_max + 1))
    items = _pick_items(cutouts, n, max(bg.shape[:2]), rng, params, plain=kind == "plain")
    scene = compose(bg, existing, items, rng, params)
    return augment(scene, scene_augmentation(scene_seed)), group


def _write_scene(i: int, out_dir: Path, kind: SceneKind, cutouts: Sequence[Cutout], backgrounds: Sequence[Sample],
                 seed: int, imgsz: int, prefix: str, params: SynthParams) -> Sample:
    scene, group = make_scene(i, kind, cutouts=cutouts, backgrounds=backgrounds, seed=seed, imgsz=imgsz,
                              params=params)
    path = out_dir / f"{prefix}_{kind}_{i:05d}.jpg"
    cv2.imwrite(str(path), scene.image, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
    h, w = scene.image.shape[:2]
    return Sample(path, w, h, scene.boxes, source=f"synth-{kind}", group=group)


def write_scenes(out_dir: Path, n: int, kind: SceneKind, *, cutouts: Sequence[Cutout],
                 backgrounds: Sequence[Sample], seed: int, imgsz: int, prefix: str,
                 params: SynthParams = SynthParams(), workers: int = 1) -> list[Sample]:
    """``n`` scenes as JPEGs in ``out_dir``; Samples with source ``synth-<kind>`` and their parent group.
    Each scene depends only on (seed, index, kind), so ``workers`` processes give the same files."""
    if not cutouts:
        raise ValueError(f"no cut-outs for the {prefix} {kind} scenes; run the cut-out step first")
    out_dir.mkdir(parents=True, exist_ok=True)
    fn = partial(_write_scene, out_dir=out_dir, kind=kind, cutouts=list(cutouts), backgrounds=list(backgrounds),
                 seed=seed, imgsz=imgsz, prefix=prefix, params=params)
    samples = parallel_map(fn, list(range(n)), workers)
    log.info("synthetic %s scenes: %d written to %s", kind, n, out_dir)
    return samples


def random_seed_for(*parts: object) -> int:
    """A stable seed from parts (str hashing is salted per process, so not ``hash()``)."""
    return random.Random(repr(parts)).randrange(2**31)  # noqa: S311 - reproducible, not security
