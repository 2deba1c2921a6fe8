"""Drawing helpers for the procedural items: a supersampled canvas, shapes, shading and finishing."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

SS = 2
"""Supersampling factor: items are painted at SS× and shrunk, which anti-aliases every edge."""

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
Color = tuple[int, int, int]
Points = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Sprite:
    """An item cut-out: BGR pixels and an alpha mask of the same size (0 = the belt shows through)."""

    image: U8
    alpha: U8
    class_name: str

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"Sprite.image must be (h, w, 3) uint8, got {self.image.shape} {self.image.dtype}")
        if self.alpha.shape != self.image.shape[:2] or self.alpha.dtype != np.uint8:
            raise ValueError(f"Sprite.alpha must be {self.image.shape[:2]} uint8, got "
                             f"{self.alpha.shape} {self.alpha.dtype}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class Canvas:
    """An item painted upright: BGR image plus alpha, both ``h × w`` pixels (at SS× scale)."""

    def __init__(self, w: float, h: float) -> None:
        self.w = max(4, round(w))
        self.h = max(4, round(h))
        self.img: U8 = np.zeros((self.h, self.w, 3), np.uint8)
        self.alpha: U8 = np.zeros((self.h, self.w), np.uint8)


def pts(xy: npt.ArrayLike) -> Points:
    return np.round(np.asarray(xy, dtype=np.float64)).astype(np.int32).reshape(-1, 2)


def rrect(x0: float, y0: float, x1: float, y1: float, r: float, n: int = 8) -> Points:
    """Polygon of a rounded rectangle."""
    r = max(0.0, min(r, (x1 - x0) / 2, (y1 - y0) / 2))
    out: list[tuple[float, float]] = []
    corners = ((x1 - r, y0 + r, -90), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180))
    for cx, cy, start in corners:
        for k in range(n + 1):
            a = math.radians(start + 90 * k / n)
            out.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts(out)


def ellipse(cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> Points:
    poly = cv2.ellipse2Poly((round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay))), round(angle), 0, 360, 4)
    return np.asarray(poly, dtype=np.int32)


def blob(cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator, rough: float = 0.25,
         n: int = 48, lobes: int = 5) -> Points:
    """A smooth irregular closed outline (sum of a few random harmonics of the radius)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 2 + lobes):
        r += rough / k * rng.uniform(-1, 1) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.45, 1.5)
    return pts(np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], axis=1))


def fill(c: Canvas, poly: Points, color: Color, a: int | None = 255) -> None:
    """Fill a polygon in colour; also into the alpha when ``a`` is given (None: detail only)."""
    cv2.fillPoly(c.img, [poly], color)
    if a is not None:
        cv2.fillPoly(c.alpha, [poly], a)


def hole(c: Canvas, poly: Points) -> None:
    """Cut a hole through the item (the belt shows through)."""
    cv2.fillPoly(c.alpha, [poly], 0)


def stroke(c: Canvas, poly: Points, color: Color, thick: float, closed: bool = False,
           a: int | None = None) -> None:
    t = max(1, round(thick))
    cv2.polylines(c.img, [poly], closed, color, t)
    if a is not None:
        cv2.polylines(c.alpha, [poly], closed, a, t)


def text(c: Canvas, s: str, x: float, y: float, height: float, color: Color, bold: bool = False) -> None:
    """Hershey text whose capital height is about ``height`` pixels, baseline at (x, y)."""
    scale = max(0.1, height / 22.0)
    thick = max(1, round(height / (6 if bold else 10)))
    cv2.putText(c.img, s, (round(x), round(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def text_width(s: str, height: float, bold: bool = False) -> float:
    scale = max(0.1, height / 22.0)
    thick = max(1, round(height / (6 if bold else 10)))
    (w, _), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    return float(w)


def jitter(color: Color, rng: np.random.Generator, amount: float = 12.0) -> Color:
    """Vary a colour mostly in brightness, a little in hue."""
    v = np.asarray(color, dtype=np.float64) + rng.normal(0, amount) + rng.normal(0, amount * 0.35, 3)
    v = np.clip(v, 0, 255)
    return (int(v[0]), int(v[1]), int(v[2]))


def pick(rng: np.random.Generator, colors: list[Color], amount: float = 12.0) -> Color:
    return jitter(colors[int(rng.integers(len(colors)))], rng, amount)


def mix(a: Color, b: Color, t: float) -> Color:
    return (round(a[0] * (1 - t) + b[0] * t), round(a[1] * (1 - t) + b[1] * t), round(a[2] * (1 - t) + b[2] * t))


# --- shading fields (float32, multiplicative gains around 1) -----------------------------------------------

def cylinder(n: int, dark: float = 0.5, spec: float = 0.35, spec_at: float = 0.3) -> F32:
    """Gain profile across a cylinder seen from the side: dark rims, a specular stripe."""
    u = np.linspace(0.0, 1.0, max(n, 2))
    g = dark + (1 - dark) * np.sin(np.pi * u) ** 0.7 + spec * np.exp(-(((u - spec_at) / 0.07) ** 2))
    return g.astype(np.float32)


def linear(h: int, w: int, angle: float, strength: float) -> F32:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (xx / max(w, 1) - 0.5) * math.cos(angle) + (yy / max(h, 1) - 0.5) * math.sin(angle)
    return (1.0 + strength * 2 * d).astype(np.float32)


def noise(h: int, w: int, rng: np.random.Generator, cells: float = 6.0) -> F32:
    """Smooth random field in about [-1, 1] with ``cells`` blobs across the longer side."""
    gh = max(2, round(cells * h / max(h, w)) + 2)
    gw = max(2, round(cells * w / max(h, w)) + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.asarray(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), dtype=np.float32)


def shade(c: Canvas, gain: npt.NDArray[np.floating], mask: npt.NDArray[np.bool_] | None = None) -> None:
    g = np.asarray(gain, dtype=np.float32)
    if g.ndim == 1:
        g = g[None, :] if g.shape[0] == c.w else g[:, None]
    g = np.broadcast_to(g, (c.h, c.w))
    out = np.clip(c.img.astype(np.float32) * g[..., None], 0, 255).astype(np.uint8)
    if mask is None:
        c.img[:] = out
    else:
        c.img[mask] = out[mask]


def glow(c: Canvas, field: npt.NDArray[np.floating], amount: float,
         mask: npt.NDArray[np.bool_] | None = None) -> None:
    """Add light (``amount`` × field, field in 0..1) - for reflections on dark glass and metal."""
    f = np.broadcast_to(np.asarray(field, dtype=np.float32), (c.h, c.w))
    out = np.clip(c.img.astype(np.float32) + amount * f[..., None], 0, 255).astype(np.uint8)
    if mask is None:
        c.img[:] = out
    else:
        c.img[mask] = out[mask]


def grain(c: Canvas, rng: np.random.Generator, sigma: float) -> None:
    n = rng.normal(0, sigma, (c.h, c.w, 1)).astype(np.float32)
    c.img[:] = np.clip(c.img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def region(c: Canvas, poly: Points) -> npt.NDArray[np.bool_]:
    m = np.zeros((c.h, c.w), np.uint8)
    cv2.fillPoly(m, [poly], 1)
    return m.astype(bool)


# --- finishing --------------------------------------------------------------------------------------------

def _premultiplied(img: U8, alpha: U8) -> tuple[F32, F32]:
    a = alpha.astype(np.float32)
    return img.astype(np.float32) * (a[..., None] / 255.0), a


def _unpremultiply(pm: F32, a: F32) -> tuple[U8, U8]:
    safe = np.maximum(a, 1e-3)[..., None]
    img = np.clip(pm * 255.0 / safe, 0, 255).astype(np.uint8)
    return img, np.clip(a, 0, 255).astype(np.uint8)


def rotate(img: U8, alpha: U8, angle_deg: float) -> tuple[U8, U8]:
    """Rotate about the centre into a canvas big enough to hold the result (premultiplied, no dark fringe)."""
    h, w = alpha.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = math.ceil(h * sin + w * cos) + 2, math.ceil(h * cos + w * sin) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    pm, a = _premultiplied(img, alpha)
    pm_out = np.asarray(cv2.warpAffine(pm, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)), np.float32)
    a_out = np.asarray(cv2.warpAffine(a, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0), np.float32)
    return _unpremultiply(pm_out, a_out)


def crop(img: U8, alpha: U8, threshold: int = 8) -> tuple[U8, U8]:
    ys, xs = np.nonzero(alpha > threshold)
    if len(xs) == 0:
        return img, alpha
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return np.ascontiguousarray(img[y0:y1, x0:x1]), np.ascontiguousarray(alpha[y0:y1, x0:x1])


def resize(img: U8, alpha: U8, w: int, h: int) -> tuple[U8, U8]:
    pm, a = _premultiplied(img, alpha)
    interp = cv2.INTER_AREA if w < alpha.shape[1] else cv2.INTER_LINEAR
    size = (max(1, w), max(1, h))
    pm_out = np.asarray(cv2.resize(pm, size, interpolation=interp), np.float32)
    a_out = np.asarray(cv2.resize(a, size, interpolation=interp), np.float32)
    return _unpremultiply(pm_out, a_out)


def finish(c: Canvas, class_name: str, angle_deg: float, flip: bool) -> Sprite:
    """Shrink from SS×, mirror, rotate and crop a painted canvas into a Sprite."""
    img, alpha = resize(c.img, c.alpha, round(c.w / SS), round(c.h / SS))
    if flip:
        img, alpha = np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1])
    if angle_deg:
        img, alpha = rotate(img, alpha, angle_deg)
    img, alpha = crop(img, alpha)
    return Sprite(image=img, alpha=alpha, class_name=class_name)
