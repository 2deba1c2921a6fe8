"""Belt backgrounds and item patches: what the belt looks like and how an item is laid onto it.

A :class:`Patch` is an item prepared once for compositing (lighting gain, shadow, motion blur, premultiplied
colour); :func:`paste` lays it onto a frame with two OpenCV calls, which keeps the simulator fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from station.simulator._paint import U8, Sprite

BELTS: list[tuple[tuple[int, int, int], float]] = [
    ((38, 38, 40), 9.0),     # black rubber
    ((92, 92, 96), 7.0),     # grey PVC
    ((55, 105, 45), 7.0),    # green PVC
    ((140, 95, 40), 7.0),    # blue PVC
    ((205, 205, 200), 5.0),  # white food-grade
    ((110, 140, 160), 8.0),  # tan fabric
    ((70, 72, 75), 8.0),     # modular plastic (slats)
]


@dataclass(frozen=True)
class Light:
    """Where shadows fall: offset of the shadow per metre of item size, its softness and darkness."""

    dx: float
    dy: float
    softness: float
    opacity: float

    @staticmethod
    def random(rng: np.random.Generator) -> Light:
        a = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.0, 0.05)
        return Light(float(r * np.cos(a)), float(r * np.sin(a)), float(rng.uniform(0.01, 0.04)),
                     float(rng.uniform(0.2, 0.55)))


@dataclass(frozen=True)
class Patch:
    """An item ready to composite: ``frame = frame × inv / 255 + premult`` over the patch rectangle."""

    premult: U8
    inv: U8
    mask: npt.NDArray[np.bool_]
    """The item's own pixels (alpha ≥ 50 %), without shadow or blur: what a label box is drawn from."""
    ox: int
    oy: int
    """Top-left of the unblurred sprite inside the patch."""

    @property
    def height(self) -> int:
        return int(self.inv.shape[0])

    @property
    def width(self) -> int:
        return int(self.inv.shape[1])


def _periodic(tex: np.ndarray, period: int, blend: int) -> np.ndarray:
    """Cross-fade the columns past ``period`` into the start so the texture tiles seamlessly along x."""
    out = tex[:, :period].astype(np.float32)
    ramp = np.linspace(0, 1, blend, dtype=np.float32)[None, :, None]
    out[:, :blend] = tex[:, period:period + blend] * (1 - ramp) + out[:, :blend] * ramp
    return np.clip(out, 0, 255).astype(np.uint8)


def belt_texture(width: int, height: int, rng: np.random.Generator, *, rails: int = 0, style: int | None = None,
                 periodic: bool = False) -> U8:
    """A belt seen from above: base colour, grain, streaks along the travel, scuffs, dirt and side rails.

    With ``periodic`` the texture tiles along x (column ``width`` continues column 0) so it can scroll.
    """
    k = int(rng.integers(len(BELTS))) if style is None else style
    base, grain_sigma = BELTS[k]
    blend = max(8, width // 8) if periodic else 0
    w = width + blend
    colour = np.asarray(base, np.float32) * rng.uniform(0.8, 1.2)
    tex = np.empty((height, w, 3), np.float32)
    tex[:] = colour
    streaks = cv2.resize(rng.normal(0, 1, (height, 8)).astype(np.float32), (w, height))
    tex += (streaks * grain_sigma * 0.8)[..., None]
    tex += rng.normal(0, grain_sigma, (height, w, 1)).astype(np.float32)
    if k == 5:
        yy, xx = np.mgrid[0:height, 0:w].astype(np.float32)
        tex += (6 * np.sin(xx * 2.1) * np.sin(yy * 2.1))[..., None]
    if k == 6:
        pitch = int(rng.integers(24, 48))
        tex[:, ::pitch] *= 0.55
        tex[:, 1::pitch] *= 0.75
    low = cv2.resize(rng.uniform(-1, 1, (6, max(2, w // 120))).astype(np.float32), (w, height),
                     interpolation=cv2.INTER_CUBIC)
    tex *= (1 + 0.1 * low)[..., None]
    _scuffs(tex, rng)
    out = np.clip(tex, 0, 255).astype(np.uint8)
    if periodic:
        out = _periodic(out, width, blend)
    if rails > 0:
        _rails(out, rails)
    return out


def _scuffs(tex: np.ndarray, rng: np.random.Generator) -> None:
    h, w = tex.shape[:2]
    for _ in range(int(rng.integers(5, 40))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        ln = int(rng.integers(5, 60))
        shade = float(rng.uniform(-25, 25))
        cv2.line(tex, (x, y), (x + ln, y + int(rng.integers(-3, 4))), tuple(float(v) for v in tex[y, x] + shade), 1)
    stains = np.zeros((h // 4 + 1, w // 4 + 1), np.float32)
    for _ in range(int(rng.integers(0, 8))):
        centre = (int(rng.integers(0, stains.shape[1])), int(rng.integers(0, stains.shape[0])))
        axes = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
        cv2.ellipse(stains, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.05, 0.3)), -1)
    stains = cv2.resize(cv2.GaussianBlur(stains, (0, 0), 2.0), (w, h))
    tex *= (1 - stains)[..., None]


def _rails(img: U8, rails: int) -> None:
    """Steel side guards along the top and bottom edges (uniform along x, so scrolling cannot show)."""
    h = img.shape[0]
    prof = np.linspace(0.7, 1.1, rails, dtype=np.float32)
    steel = (np.asarray((150, 150, 155), np.float32)[None, :] * prof[:, None]).astype(np.uint8)
    img[:rails] = steel[:, None, :]
    img[h - rails:] = steel[::-1][:, None, :]
    img[rails:rails + 3] = (img[rails:rails + 3] * 0.5).astype(np.uint8)
    img[h - rails - 3:h - rails] = (img[h - rails - 3:h - rails] * 0.5).astype(np.uint8)


def make_patch(sprite: Sprite, *, gain: tuple[float, float, float] = (1.0, 1.0, 1.0), light: Light | None = None,
               px_per_m: float = 1000.0, blur_px: int = 0) -> Patch:
    """Prepare a sprite for compositing: colour gain, drop shadow, horizontal motion blur."""
    h, w = sprite.alpha.shape
    sdx = sdy = soft = 0
    if light is not None:
        sdx, sdy = round(light.dx * px_per_m * 0.3), round(light.dy * px_per_m * 0.3)
        soft = max(1, round(light.softness * px_per_m * 0.3))
    pad = max(abs(sdx), abs(sdy)) + 2 * soft + blur_px + 1
    H, W = h + 2 * pad, w + 2 * pad
    a = np.zeros((H, W), np.float32)
    a[pad:pad + h, pad:pad + w] = sprite.alpha.astype(np.float32) / 255.0
    colour = np.zeros((H, W, 3), np.float32)
    g = np.asarray(gain, np.float32)
    colour[pad:pad + h, pad:pad + w] = np.clip(sprite.image.astype(np.float32) * g, 0, 255)
    total = a
    if light is not None:
        sh = np.roll(np.roll(a, sdy, axis=0), sdx, axis=1)
        sh = cv2.GaussianBlur(sh, (0, 0), soft) * light.opacity
        total = a + sh * (1 - a)
    pm = colour * a[..., None]
    if blur_px > 1:
        pm = cv2.blur(pm, (blur_px, 1))
        total = cv2.blur(total, (blur_px, 1))
    inv = np.asarray(np.clip(255.0 * (1 - total), 0, 255), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[pad:pad + h, pad:pad + w] = sprite.alpha >= 128
    inv3 = np.ascontiguousarray(np.repeat(inv[..., None], 3, axis=2))
    return Patch(premult=np.clip(pm, 0, 255).astype(np.uint8), inv=inv3, mask=mask, ox=pad, oy=pad)


def clip_window(shape: tuple[int, ...], x: int, y: int, w: int, h: int) -> tuple[slice, slice, slice, slice] | None:
    """Frame and patch slices where a ``w × h`` patch at (x, y) overlaps a frame of ``shape``."""
    fh, fw = shape[0], shape[1]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1), slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)


def paste(frame: U8, patch: Patch, x: int, y: int) -> None:
    """Composite ``patch`` with its top-left at (x, y); parts outside the frame are cut off."""
    win = clip_window(frame.shape, x, y, patch.width, patch.height)
    if win is None:
        return
    fy, fx, py, px = win
    roi = frame[fy, fx]
    dark = cv2.multiply(roi, patch.inv[py, px], scale=1.0 / 255.0)
    roi[:] = cv2.add(dark, patch.premult[py, px])
