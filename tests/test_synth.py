"""Cut-outs from white-background photos and synthetic scenes with exact boxes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.cutouts import CutoutParams, CutoutReport, make_cutouts, segment, to_rgba
from training.formats import Box
from training.sources import Crop
from training.synth import SynthParams, belt_background, compose, mask_box, transform_cutout, write_scenes


def white_photo(shape: str = "ellipse", size: tuple[int, int] = (200, 160),
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A coloured object on a slightly graded, noisy white background, and its true mask."""
    w, h = size
    rng = np.random.default_rng(seed)
    grad = np.linspace(225, 250, w, dtype=np.float32)[None, :, None]
    img = np.clip(grad + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    if shape == "ellipse":
        cv2.ellipse(mask, (w // 2, h // 2), (w // 4, h // 5), 20, 0, 360, 255, -1)
    elif shape == "touching":
        cv2.rectangle(mask, (0, 0), (w - 1, h // 2), 255, -1)
    elif shape == "tiny":
        cv2.circle(mask, (w // 2, h // 2), 3, 255, -1)
    colour = np.array([40, 60, 170], np.uint8)
    img[mask > 0] = colour
    cv2.rectangle(img, (w // 2 - 5, h // 2 - 5), (w // 2 + 5, h // 2 + 5), (250, 250, 250), -1)  # a white label
    img[mask == 0] = np.clip(grad + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)[mask == 0]
    return img, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a > 0) & (b > 0)).sum() / ((a > 0) | (b > 0)).sum())


@pytest.mark.parametrize("grabcut", [False, True])
def test_cutout_mask_matches_the_object(grabcut: bool) -> None:
    img, truth = white_photo()
    mask, reason = segment(img, CutoutParams(grabcut=grabcut))
    assert reason == "ok" and mask is not None
    assert iou(mask, truth) > 0.95  # the white label inside the object is filled, the background is not


@pytest.mark.parametrize(("shape", "reason"), [("touching", "touches_border"), ("tiny", "too_small"),
                                               ("none", "too_small")])
def test_bad_masks_are_rejected_with_a_reason(shape: str, reason: str) -> None:
    img, _ = white_photo(shape)
    mask, got = segment(img)
    assert mask is None and got == reason


def test_make_cutouts_writes_rgba_and_counts(tmp_path: Path) -> None:
    crops = []
    for i, shape in enumerate(["ellipse", "ellipse", "touching"]):
        p = tmp_path / "src" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), white_photo(shape, seed=i)[0])
        crops.append(Crop(p, "battery", "test", "train", f"test:{i}"))
    report = make_cutouts(crops, tmp_path / "cut")
    assert report.accepted == {"battery": 2} and report.rejected == {"battery": 1}
    assert report.reasons == {"touches_border": 1}
    rgba = cv2.imread(str(report.cutouts[0].path), cv2.IMREAD_UNCHANGED)
    assert rgba is not None and rgba.shape[2] == 4 and report.cutouts[0].path.parent.name == "battery"
    x1, y1, x2, y2 = report.cutouts[0].bbox
    assert (x2 - x1, y2 - y1) == pytest.approx((rgba.shape[1] - 4, rgba.shape[0] - 4), abs=1)
    again = make_cutouts(crops, tmp_path / "cut")  # reused from the index
    assert again.to_dict() == report.to_dict() == CutoutReport.load(tmp_path / "cut" / "index.json").to_dict()


def hard_rgba(w: int, h: int, colour: tuple[int, int, int]) -> np.ndarray:
    """An RGBA item with a hard (0/255) alpha of a diamond shape, so its pixels are exactly ``colour``."""
    rgba = np.zeros((h, w, 4), np.uint8)
    pts = np.array([[w // 2, 0], [w - 1, h // 2], [w // 2, h - 1], [0, h // 2]])
    cv2.fillConvexPoly(rgba, pts, (*colour, 255))
    return rgba


def test_pasted_boxes_equal_the_visible_masks() -> None:
    rng = np.random.default_rng(0)
    bg = np.full((240, 320, 3), 60, np.uint8)
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 0)]
    items = [(hard_rgba(50 + 10 * i, 40 + 5 * i, c), f"c{i}") for i, c in enumerate(colours)]
    scene = compose(bg, [], items, rng, SynthParams(shadow=0.0, max_iou_pasted=0.3))
    assert len(scene.boxes) >= 3
    for box, mask in zip(scene.boxes, scene.masks, strict=True):
        assert box.xyxy == mask_box(mask)
        colour = colours[int(box.class_name[1])]
        ys, xs = np.nonzero(np.all(scene.image == colour, axis=2))
        assert box.xyxy == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_transformed_cutout_is_tight_and_scaled() -> None:
    rng = np.random.default_rng(1)
    img, truth = white_photo()
    out = transform_cutout(to_rgba(img, truth), 90, rng)
    alpha = out[:, :, 3] >= 128
    assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
    assert 40 <= max(out.shape[:2]) <= 130


def test_real_background_boxes_are_kept_and_not_covered_too_much() -> None:
    rng = np.random.default_rng(2)
    bg = belt_background(320, 240, rng)
    existing = [Box((20, 20, 140, 120), "laptop"), Box((180, 100, 300, 220), "monitor")]
    items = [(hard_rgba(60, 60, (0, 0, 255)), "battery") for _ in range(6)]
    params = SynthParams(shadow=0.0)
    scene = compose(bg, existing, items, rng, params)
    assert scene.boxes[:2] == existing
    for e in existing:
        x1, y1, x2, y2 = (int(v) for v in e.xyxy)
        covered = sum(int(m[y1:y2, x1:x2].sum()) for m in scene.masks)
        assert covered <= params.max_cover_existing * e.area * len(scene.masks)
        for m in scene.masks:
            assert m[y1:y2, x1:x2].sum() <= params.max_cover_existing * e.area


def test_write_scenes_is_deterministic_and_records_parents(tmp_path: Path) -> None:
    img, truth = white_photo()
    cut_path = tmp_path / "cut" / "battery" / "a.png"
    cut_path.parent.mkdir(parents=True)
    cv2.imwrite(str(cut_path), to_rgba(img, truth))
    from training.cutouts import Cutout
    from training.formats import Sample

    cutouts = [Cutout(cut_path, "battery", "test", "train", "test:a", cut_path)]
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), belt_background(200, 150, np.random.default_rng(5)))
    parent = Sample(photo, 200, 150, [Box((10, 10, 60, 60), "laptop")], source="x", group="x:photo")
    runs = []
    for d in ("a", "b"):
        samples = write_scenes(tmp_path / d, 3, "real", cutouts=cutouts, backgrounds=[parent], seed=7, imgsz=160,
                               prefix="train")
        runs.append(samples)
    assert [s.image_path.read_bytes() for s in runs[0]] == [s.image_path.read_bytes() for s in runs[1]]
    assert all(s.group == "x:photo" and s.source == "synth-real" for s in runs[0])
    assert all(any(b.class_name == "laptop" for b in s.boxes) for s in runs[0])
    belt = write_scenes(tmp_path / "c", 2, "belt", cutouts=cutouts, backgrounds=[], seed=7, imgsz=160, prefix="val")
    assert all(s.group.startswith("synth-belt:") for s in belt) and belt[0].group != belt[1].group
    assert all(b.class_name == "battery" for s in belt for b in s.boxes)


def test_plain_scenes_hold_one_to_four_items_at_wide_scales(tmp_path: Path) -> None:
    """The "plain" scenes (domain randomisation for photos taken off the belt): a procedural surface, one to four
    cut-outs, boxes inside the image, the same files for the same seed."""
    cutouts = []
    from training.cutouts import Cutout

    for i, cls in enumerate(("battery", "can", "plastic")):
        img, truth = white_photo(seed=i)
        path = tmp_path / "cut" / cls / f"{i}.png"
        path.parent.mkdir(parents=True)
        cv2.imwrite(str(path), to_rgba(img, truth))
        cutouts.append(Cutout(path, cls, "test", "train", f"test:{i}", path))
    a = write_scenes(tmp_path / "a", 12, "plain", cutouts=cutouts, backgrounds=[], seed=3, imgsz=160, prefix="train")
    b = write_scenes(tmp_path / "b", 12, "plain", cutouts=cutouts, backgrounds=[], seed=3, imgsz=160, prefix="train")
    assert [s.image_path.read_bytes() for s in a] == [s.image_path.read_bytes() for s in b]
    assert all(s.source == "synth-plain" and 1 <= len(s.boxes) <= 4 for s in a)
    sides = []
    for s in a:
        assert max(s.width, s.height) == 160
        for box in s.boxes:
            x1, y1, x2, y2 = box.xyxy
            assert 0 <= x1 < x2 <= s.width and 0 <= y1 < y2 <= s.height
            sides.append(max(x2 - x1, y2 - y1) / 160)
    assert min(sides) < 0.2 and max(sides) > 0.4  # small cells and items that fill much of the photo


def test_plain_backgrounds_vary() -> None:
    from training.synth import plain_background

    rng = np.random.default_rng(0)
    means = [plain_background(64, 48, rng).reshape(-1, 3).mean(axis=0) for _ in range(20)]
    assert np.ptp(np.array(means), axis=0).min() > 60  # not one surface: colours and brightness spread widely
