"""RGBA cut-outs from single-object photos on a plain (white-ish) background.

The background colour is estimated at the image border (a smooth quadratic surface in Lab, fitted robustly,
so lighting gradients on the posterboard stay background); pixels far from it in colour are the object.
Threshold → morphology → hole filling → largest component, optionally refined by grabCut. A mask is rejected
when it touches too much of the border (the object was cropped or the background is not plain) or is too
small or too large. Accepted cut-outs are written as ``out_dir/<class>/<source>__<name>.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from training.sources import Crop

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Mask = npt.NDArray[Any]
"""uint8 0/255."""
Image = npt.NDArray[Any]
"""uint8 BGR (h, w, 3) or BGRA (h, w, 4)."""


@dataclass(frozen=True)
class CutoutParams:
    """Segmentation settings (recorded in the cut-out index; a change re-makes the cut-outs)."""

    border: int = 3
    """Width (px) of the border ring the background is estimated from."""
    min_distance: float = 16.0
    """Smallest colour distance (Lab units) that counts as object."""
    margin: float = 8.0
    """Added to the spread of the border's own distances to get the threshold."""
    lightness_weight: float = 0.6
    """Weight of a lighter-than-background L difference against a/b differences."""
    shadow_weight: float = 0.25
    """Weight of a darker-than-background L difference: low, so grey shadows stay background."""
    max_border_touch: float = 0.2
    """Largest share of the outermost pixel frame the mask may cover."""
    min_area: float = 0.04
    max_area: float = 0.9
    min_solidity: float = 0.6
    """Smallest mask area / convex hull area: below it the mask is fragments (a partly found object)."""
    min_edge_contrast: float = 60.0
    """Smallest median gradient along the mask outline: soft outlines are shadows or cuts through an object."""
    grabcut: bool = False
    """Refine the mask with a few grabCut iterations (slower, cleaner edges)."""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _design(xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=1)


def background_distance(image: Image, params: CutoutParams) -> tuple[npt.NDArray[np.float32], float]:
    """Per-pixel colour distance from the fitted background, and the object threshold."""
    h, w = image.shape[:2]
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    ring = np.zeros((h, w), bool)
    b = max(1, min(params.border, min(h, w) // 4))
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    yy, xx = np.nonzero(ring)
    design = _design(xx / w - 0.5, yy / h - 0.5)
    values = lab[yy, xx].astype(np.float64)
    keep = np.ones(len(values), bool)
    weights = np.array([params.lightness_weight, 1.0, 1.0])
    for _ in range(2):  # fit, drop the border pixels that belong to the object, refit
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        resid = np.sqrt((((values - design @ coef) * weights) ** 2).sum(axis=1))
        med = float(np.median(resid))
        keep = resid <= med + 3 * 1.4826 * float(np.median(np.abs(resid - med))) + 1.0
    gy, gx = np.mgrid[0:h, 0:w]
    bg = (_design(gx.ravel() / w - 0.5, gy.ravel() / h - 0.5) @ coef).reshape(h, w, 3)
    diff = lab - bg
    diff[:, :, 0] *= np.where(diff[:, :, 0] < 0, params.shadow_weight, params.lightness_weight)
    dist = np.sqrt((diff[:, :, 1:] ** 2).sum(axis=2) + diff[:, :, 0] ** 2).astype(np.float32)
    spread = float(np.percentile(resid[keep], 99)) if keep.any() else 0.0
    return dist, max(params.min_distance, spread + params.margin)


def _fill_holes(mask: Mask) -> Mask:
    h, w = mask.shape
    flood = np.zeros((h + 2, w + 2), np.uint8)
    flood[1:-1, 1:-1] = mask
    cv2.floodFill(flood, None, (0, 0), 255)
    return mask | (255 - flood[1:-1, 1:-1])


def _largest_component(mask: Mask) -> Mask:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == best, 255, 0).astype(np.uint8)


def _grabcut(image: Image, mask: Mask) -> Mask:
    gc = np.full(mask.shape, cv2.GC_PR_BGD, np.uint8)
    gc[mask > 0] = cv2.GC_PR_FGD
    k = max(3, min(mask.shape) // 30)
    gc[cv2.erode(mask, np.ones((k, k), np.uint8)) > 0] = cv2.GC_FGD
    gc[cv2.dilate(mask, np.ones((3 * k, 3 * k), np.uint8)) == 0] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(image, gc, (0, 0, 0, 0), bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return mask
    out = np.where((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    return _largest_component(out) if out.any() else mask


def segment(image: Image, params: CutoutParams = CutoutParams()) -> tuple[Mask | None, str]:
    """Object mask (uint8 0/255) of a single-object photo, or None and the reason it was rejected."""
    dist, thr = background_distance(image, params)
    mask: Mask = np.where(dist > thr, 255, 0).astype(np.uint8)
    k = max(3, (min(mask.shape) // 60) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = _largest_component(_fill_holes(mask))
    if params.grabcut and mask.any():
        mask = _grabcut(image, mask)
    reason = _rejection(image, mask, params)
    return (mask if reason == "ok" else None), reason


def _solidity(mask: Mask) -> float:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    return float((mask > 0).sum() / max(1.0, cv2.contourArea(hull)))


def edge_contrast(image: Image, mask: Mask) -> float:
    """Median gradient magnitude along the mask outline (away from the image frame)."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (3, 3), 0).astype(np.float32)
    mag = cv2.dilate(np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)),
                     np.ones((5, 5), np.uint8))
    outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    outline[[0, -1], :] = False
    outline[:, [0, -1]] = False
    return float(np.median(mag[outline])) if outline.any() else 0.0


def _rejection(image: Image, mask: Mask, params: CutoutParams) -> str:
    """Why a mask is not a usable cut-out, or "ok"."""
    area = float((mask > 0).mean())
    frame = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]]) > 0
    if area < params.min_area:
        return "too_small"
    if area > params.max_area:
        return "too_large"
    if frame.mean() > params.max_border_touch:
        return "touches_border"
    if _solidity(mask) < params.min_solidity:
        return "fragmented"
    if edge_contrast(image, mask) < params.min_edge_contrast:
        return "weak_edges"
    return "ok"


def to_rgba(image: Image, mask: Mask, pad: int = 2) -> Image:
    """The object cropped to its mask (plus ``pad``) with the mask, lightly feathered, as alpha."""
    ys, xs = np.nonzero(mask)
    y1, y2 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + 1 + pad)
    x1, x2 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + 1 + pad)
    alpha = cv2.GaussianBlur(mask, (3, 3), 0)
    rgba = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    rgba[:, :, 3] = alpha
    return np.ascontiguousarray(rgba[y1:y2, x1:x2])


@dataclass(frozen=True)
class Cutout:
    """One accepted cut-out (RGBA PNG) and where it came from."""

    path: Path
    class_name: str
    source: str
    pool: str
    group: str
    origin: Path
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """Box of the mask in the origin image (x1, y1, x2, y2)."""


@dataclass
class CutoutReport:
    """Accepted/rejected counts per class, rejection reasons, and the accepted cut-outs."""

    params: CutoutParams = field(default_factory=CutoutParams)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    cutouts: list[Cutout] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"params": asdict(self.params), "accepted": dict(sorted(self.accepted.items())),
                "rejected": dict(sorted(self.rejected.items())), "reasons": dict(sorted(self.reasons.items())),
                "cutouts": [{"path": str(c.path), "class_name": c.class_name, "source": c.source, "pool": c.pool,
                             "group": c.group, "origin": str(c.origin), "bbox": list(c.bbox)}
                            for c in self.cutouts]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> CutoutReport:
        d = json.loads(path.read_text())
        cut = [Cutout(Path(c["path"]), c["class_name"], c["source"], c["pool"], c["group"], Path(c["origin"]),
                      tuple(c["bbox"])) for c in d["cutouts"]]
        return cls(CutoutParams(**d["params"]), Counter(d["accepted"]), Counter(d["rejected"]),
                   Counter(d["reasons"]), cut)

    def table(self) -> str:
        lines = [f"{'class':<12}{'accepted':>10}{'rejected':>10}"]
        for c in sorted(set(self.accepted) | set(self.rejected)):
            lines.append(f"{c:<12}{self.accepted[c]:>10}{self.rejected[c]:>10}")
        lines.append("rejected because: " + ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items())))
        return "\n".join(lines)


def _one_thread() -> None:
    cv2.setNumThreads(1)


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` in ``workers`` processes (in order); serial when ``workers`` ≤ 1."""
    if workers <= 1 or len(items) < 2 * workers:
        return [fn(x) for x in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, len(items) // (workers * 8))
    ctx = multiprocessing.get_context("forkserver")  # fork after cv2/onnxruntime threads can deadlock
    ctx.set_forkserver_preload(["cv2", "albumentations", "training.synth"])  # imported once, not per pool
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_thread) as pool:
        return list(pool.map(fn, items, chunksize=chunk))


def _crops_digest(crops: Sequence[Crop], params: CutoutParams) -> str:
    h = hashlib.sha256(params.digest().encode())
    for c in crops:
        h.update(f"{c.image_path}|{c.class_name}|{c.pool}|{c.group}\n".encode())
    return h.hexdigest()[:16]


def cut_one(crop: Crop, out_dir: Path, params: CutoutParams) -> tuple[Cutout | None, str]:
    image = cv2.imread(str(crop.image_path), cv2.IMREAD_COLOR)
    if image is None:
        return None, "unreadable"
    mask, reason = segment(image, params)
    if mask is None:
        return None, reason
    sub = crop.group.split(":", 1)[-1].replace("/", "__").replace(" ", "_")
    path = out_dir / crop.class_name / f"{crop.source}__{sub}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), to_rgba(image, mask))
    ys, xs = np.nonzero(mask)
    bbox = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return Cutout(path, crop.class_name, crop.source, crop.pool, crop.group, crop.image_path, bbox), "ok"


def make_cutouts(crops: Sequence[Crop], out_dir: Path, params: CutoutParams = CutoutParams(), *,
                 reuse: bool = True, workers: int = 1) -> CutoutReport:
    """Cut out every crop into ``out_dir/<class>/*.png``; reuses a previous run with the same inputs."""
    index = out_dir / "index.json"
    digest = _crops_digest(crops, params)
    if reuse and index.is_file() and (out_dir / "inputs.sha").is_file() and \
            (out_dir / "inputs.sha").read_text() == digest:
        report = CutoutReport.load(index)
        if all(c.path.is_file() for c in report.cutouts):
            return report
    report = CutoutReport(params)
    results = parallel_map(partial(cut_one, out_dir=out_dir, params=params), crops, workers)
    for crop, (cut, reason) in zip(crops, results, strict=True):
        if cut is None:
            report.rejected[crop.class_name] += 1
            report.reasons[reason] += 1
        else:
            report.accepted[crop.class_name] += 1
            report.cutouts.append(cut)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.save(index)
    (out_dir / "inputs.sha").write_text(digest)
    log.info("cut-outs: %d accepted, %d rejected (%s)", len(report.cutouts), sum(report.rejected.values()),
             dict(report.reasons))
    return report
