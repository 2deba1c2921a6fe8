"""Procedural painters: paper and cardboard, textiles, medical waste."""

from __future__ import annotations

import cv2
import numpy as np

from station.simulator._paint import (
    Canvas,
    Color,
    blob,
    cylinder,
    ellipse,
    fill,
    glow,
    grain,
    linear,
    mix,
    noise,
    pick,
    pts,
    rrect,
    shade,
    stroke,
    text,
)

KRAFT: Color = (90, 145, 190)
PAPERS: list[Color] = [(240, 242, 244), (228, 232, 236), (200, 205, 208), (150, 230, 245), (235, 215, 240),
                       (200, 225, 235)]


def _facets(c: Canvas, rng: np.random.Generator, n: int, depth: float) -> None:
    """Crumpled look: Voronoi facets with their own brightness and darker creases along their borders."""
    seeds = np.stack([rng.uniform(0, c.w, n), rng.uniform(0, c.h, n)], 1).astype(np.float32)
    small = max(1, max(c.w, c.h) // 160)
    yy, xx = np.mgrid[0:c.h:small, 0:c.w:small].astype(np.float32)
    d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    lab = np.argmin(d, axis=2).astype(np.int32)
    lab = cv2.resize(lab.astype(np.float32), (c.w, c.h), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    gains = rng.uniform(1 - depth, 1 + depth * 0.4, n).astype(np.float32)
    g = gains[lab]
    edge = (np.abs(np.diff(lab, axis=0, prepend=lab[:1])) + np.abs(np.diff(lab, axis=1, prepend=lab[:, :1]))) > 0
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
    g = cv2.GaussianBlur(g, (0, 0), max(1.0, c.w / 200))
    g[edge] *= 0.82
    shade(c, g)


def _text_lines(c: Canvas, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float,
                pitch: float, ink: Color) -> None:
    y = y0 + pitch
    while y < y1:
        x = x0
        while x < x1:
            ln = rng.uniform(0.5, 3) * pitch
            stroke(c, pts([(x, y), (min(x + ln, x1), y)]), ink, max(1.0, pitch * 0.3))
            x += ln + pitch * 0.5
        y += pitch * rng.uniform(0.9, 1.4)


def _crumpled(rng: np.random.Generator, s: float) -> Canvas:
    r = rng.uniform(0.03, 0.08) * s
    c = Canvas(2.4 * r, 2.2 * r)
    outline = blob(c.w / 2, c.h / 2, r, r * rng.uniform(0.75, 1.0), rng, 0.5, 64, 9)
    col = pick(rng, [*PAPERS, KRAFT], 8)
    fill(c, outline, col)
    if rng.random() < 0.6:
        _text_lines(c, rng, 0, 0, c.w, c.h, r * 0.08, mix(col, (0, 0, 0), 0.55))
    _facets(c, rng, int(rng.integers(14, 40)), 0.3)
    return c


def _sheet(rng: np.random.Generator, s: float) -> Canvas:
    w, h = rng.uniform(0.08, 0.21) * s, rng.uniform(0.08, 0.29) * s
    c = Canvas(w, h)
    jag = 0.003 * s
    edge = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
    if rng.random() < 0.5:
        xs = np.linspace(0, w, 12)
        edge = [(0.0, 0.0), *[(float(x), float(rng.uniform(0, jag * 3))) for x in xs[1:-1]], (w, 0.0), (w, h), (0.0, h)]
    col = pick(rng, PAPERS, 6)
    fill(c, pts(edge), col)
    ink = (60, 60, 60) if rng.random() < 0.8 else pick(rng, [(150, 60, 20), (30, 30, 160)], 10)
    _text_lines(c, rng, w * 0.1, h * 0.08, w * 0.9, h * 0.92, max(3.0, 0.004 * s), ink)
    if rng.random() < 0.3:
        fill(c, pts([(w * 0.55, h * 0.1), (w * 0.9, h * 0.1), (w * 0.9, h * 0.35), (w * 0.55, h * 0.35)]),
             pick(rng, [(120, 140, 160), (90, 90, 90)], 30), None)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.15))
    if rng.random() < 0.6:
        fy = h * rng.uniform(0.3, 0.7)
        yy = np.arange(c.h, dtype=np.float32)[:, None]
        shade(c, np.where(yy < fy, 1.0, rng.uniform(0.8, 0.95)) * np.ones((1, c.w), np.float32))
        stroke(c, pts([(0, fy), (w, fy)]), mix(col, (0, 0, 0), 0.25), 1)
    return c


def _cardboard(rng: np.random.Generator, s: float) -> Canvas:
    w, h = rng.uniform(0.1, 0.3) * s, rng.uniform(0.07, 0.22) * s
    c = Canvas(w, h)
    n = int(rng.integers(4, 8))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n)) if rng.random() < 0.4 else np.array([0.8, 2.35, 3.9, 5.5])
    rad = rng.uniform(0.85, 1.0, len(ang))
    poly = pts(np.stack([w / 2 + w / 2 * 1.35 * rad * np.cos(ang), h / 2 + h / 2 * 1.35 * rad * np.sin(ang)], 1))
    poly = np.clip(poly, 0, [c.w - 1, c.h - 1]).astype(np.int32)
    col = pick(rng, [KRAFT, (120, 165, 200), (230, 230, 230)], 12)
    fill(c, poly, col)
    xx = np.arange(c.w, dtype=np.float32)[None, :]
    shade(c, (1 + 0.04 * np.sin(xx * 2 * np.pi / (0.008 * s))) * np.ones((c.h, 1), np.float32))
    if rng.random() < 0.6:
        y = rng.uniform(0.2, 0.8) * h
        fill(c, pts([(0, y), (w, y), (w, y + 0.05 * s), (0, y + 0.05 * s)]), pick(rng, [(60, 120, 170),
                                                                                       (200, 200, 190)], 8), None)
    if rng.random() < 0.6:
        ink = pick(rng, [(30, 30, 30), (40, 40, 160), (140, 70, 20)], 10)
        text(c, str(rng.choice(["FRAGILE", "THIS SIDE UP", "BOX", "KG", "PRIME", "12x"])), w * 0.1, h * 0.4,
             0.012 * s, ink, bold=True)
        stroke(c, ellipse(w * 0.75, h * 0.7, 0.01 * s, 0.01 * s), ink, 0.0015 * s, closed=True)
    if rng.random() < 0.5:
        x = rng.uniform(0.2, 0.8) * w
        stroke(c, pts([(x, 0), (x, h)]), mix(col, (0, 0, 0), 0.3), 0.0015 * s)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.2) * (1 + 0.06 * noise(c.h, c.w, rng, 8)))
    return c


def _egg_carton(rng: np.random.Generator, s: float) -> Canvas:
    cols, rows = int(rng.choice([2, 3, 5, 6])), 2
    cell = 0.05 * s
    c = Canvas(cols * cell, rows * cell)
    col = pick(rng, [(170, 172, 175), (190, 200, 210), (150, 180, 200)], 8)
    fill(c, rrect(0, 0, c.w, c.h, cell * 0.2), col)
    yy, xx = np.mgrid[0:c.h, 0:c.w].astype(np.float32)
    u, v = (xx % cell) / cell - 0.5, (yy % cell) / cell - 0.5
    shade(c, 1.0 - 0.5 * (u + v) * np.exp(-(u ** 2 + v ** 2) * 6) + 0.05 * noise(c.h, c.w, rng, 20))
    return c


def paint_paper(rng: np.random.Generator, s: float) -> Canvas:
    """Crumpled paper balls, printed sheets (torn, folded), cardboard pieces, egg cartons."""
    kind = int(rng.choice(4, p=[0.3, 0.3, 0.3, 0.1]))
    c = [_crumpled, _sheet, _cardboard, _egg_carton][kind](rng, s)
    grain(c, rng, 2.5)
    return c


# --- textiles ------------------------------------------------------------------------------------------------

FABRICS: list[Color] = [(40, 40, 160), (140, 80, 30), (40, 120, 40), (30, 30, 30), (230, 230, 230), (60, 180, 230),
                        (130, 50, 110), (120, 120, 120), (150, 100, 60), (180, 190, 240), (20, 60, 100)]


def _pattern(c: Canvas, rng: np.random.Generator, s: float) -> None:
    base = pick(rng, FABRICS, 15)
    other = pick(rng, FABRICS, 15)
    yy, xx = np.mgrid[0:c.h, 0:c.w].astype(np.float32)
    kind = int(rng.integers(6))
    p = rng.uniform(0.006, 0.025) * s
    a = rng.uniform(0, np.pi)
    u = xx * np.cos(a) + yy * np.sin(a)
    v = -xx * np.sin(a) + yy * np.cos(a)
    if kind == 1:
        t = ((u // p) % 2).astype(np.float32)
    elif kind == 2:
        t = 0.5 * (((u // p) % 2) + ((v // p) % 2)).astype(np.float32)
    elif kind == 3:
        t = ((((u % (2 * p)) - p) ** 2 + (((v % (2 * p)) - p) ** 2)) < (p * 0.4) ** 2).astype(np.float32)
    elif kind == 4:
        base, other = pick(rng, [(130, 80, 40), (100, 60, 30)], 10), (200, 180, 160)
        t = 0.25 * (np.sin((xx + yy) * 2 * np.pi / 6) > 0.3).astype(np.float32)
    else:
        t = np.zeros_like(xx)
    col = np.asarray(base, np.float32) * (1 - t[..., None]) + np.asarray(other, np.float32) * t[..., None]
    m = c.alpha > 0
    c.img[m] = col[m].astype(np.uint8)
    weave = 1 + 0.07 * np.sin(xx * 2 * np.pi / 5) * np.sin(yy * 2 * np.pi / 5)
    folds = np.ones_like(xx)
    for _ in range(int(rng.integers(1, 4))):
        b = rng.uniform(0, np.pi)
        w = xx * np.cos(b) + yy * np.sin(b)
        f = rng.uniform(0.02, 0.06) * s
        folds *= 1 + rng.uniform(0.1, 0.25) * np.sin(w * 2 * np.pi / f + 3 * noise(c.h, c.w, rng, 4))
    shade(c, weave * folds * (1 + 0.04 * rng.normal(0, 1, xx.shape).astype(np.float32)))


def _tshirt(c: Canvas, rng: np.random.Generator) -> np.ndarray:
    raw = [(0.36, 0), (0.5, 0.07), (0.64, 0), (0.8, 0.03), (1, 0.25), (0.88, 0.38), (0.78, 0.3), (0.78, 1),
           (0.22, 1), (0.22, 0.3), (0.12, 0.38), (0, 0.25), (0.2, 0.03)]
    xy = np.array(raw, np.float32) + rng.normal(0, 0.02, (len(raw), 2))
    return pts(np.clip(xy, 0, 1) * [c.w - 1, c.h - 1])


def paint_textile(rng: np.random.Generator, s: float) -> Canvas:
    """Cloth: rags, t-shirts, folded garments and socks; plain, striped, checked, dotted or denim; folds."""
    kind = int(rng.choice(4, p=[0.4, 0.25, 0.15, 0.2]))
    if kind == 0:
        r = rng.uniform(0.06, 0.16) * s
        c = Canvas(2.6 * r, 2.2 * r)
        fill(c, blob(c.w / 2, c.h / 2, r * 1.1, r * 0.9, rng, 0.45, 80, 8), (128, 128, 128))
    elif kind == 1:
        c = Canvas(rng.uniform(0.3, 0.45) * s, rng.uniform(0.3, 0.45) * s)
        fill(c, _tshirt(c, rng), (128, 128, 128))
    elif kind == 2:
        c = Canvas(rng.uniform(0.15, 0.3) * s, rng.uniform(0.12, 0.25) * s)
        fill(c, rrect(0, 0, c.w, c.h, c.w * 0.04), (128, 128, 128))
    else:
        L, w = rng.uniform(0.18, 0.26) * s, rng.uniform(0.07, 0.09) * s
        c = Canvas(L * 0.75 + w, L * 0.75)
        stroke(c, pts([(w / 2, w / 2), (w / 2, c.h - w / 2), (c.w - w / 2, c.h - w / 2)]), (128, 128, 128), w, a=255)
    _pattern(c, rng, s)
    if kind == 2:
        stroke(c, pts([(0, c.h * 0.5), (c.w, c.h * 0.5)]), (40, 40, 40), 2)
    if kind == 3:
        for k in range(6):
            y = c.h * 0.02 + k * 0.004 * s
            stroke(c, pts([(0, y), (c.w * 0.4, y)]), (200, 200, 200), 1)
    grain(c, rng, 4.0)
    return c


# --- medical ------------------------------------------------------------------------------------------------

def _mask(rng: np.random.Generator, s: float) -> Canvas:
    W, H = rng.uniform(0.16, 0.18) * s, rng.uniform(0.085, 0.1) * s
    loop = rng.uniform(0.02, 0.04) * s
    c = Canvas(W + 2 * loop, H)
    col = pick(rng, [(235, 205, 160), (240, 240, 240), (30, 30, 30), (200, 180, 240), (220, 230, 180)], 8)
    lc = (235, 235, 235) if rng.random() < 0.7 else col
    for side in (-1, 1):
        cx = c.w / 2 + side * W / 2
        cv2.ellipse(c.img, (round(cx), round(H / 2)), (round(loop), round(H * 0.42)), 0,
                    -90 if side > 0 else 90, 90 if side > 0 else 270, lc, max(2, round(0.0015 * s)))
        cv2.ellipse(c.alpha, (round(cx), round(H / 2)), (round(loop), round(H * 0.42)), 0,
                    -90 if side > 0 else 90, 90 if side > 0 else 270, 255, max(2, round(0.0015 * s)))
    fill(c, rrect(loop, 0, loop + W, H, H * 0.12), col)
    yy = np.arange(c.h, dtype=np.float32)[:, None]
    pleat = 1 + 0.12 * np.sin(yy / H * 2 * np.pi * 3.5) * np.ones((1, c.w), np.float32)
    shade(c, pleat * linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.15))
    edge = mix(col, (0, 0, 0), 0.12)
    stroke(c, rrect(loop + 3, 3, loop + W - 3, H - 3, H * 0.1), edge, 0.004 * s, closed=True)
    stroke(c, pts([(loop + W * 0.3, 0.006 * s), (loop + W * 0.7, 0.006 * s)]), mix(col, (255, 255, 255), 0.3), 2)
    return c


def _syringe(rng: np.random.Generator, s: float) -> Canvas:
    L, d = rng.uniform(0.05, 0.1) * s, rng.uniform(0.009, 0.018) * s
    needle = rng.uniform(0.015, 0.04) * s
    rod = L * rng.uniform(0.3, 0.9)
    c = Canvas(needle + L + rod + 0.004 * s, d * 2.0)
    y = c.h / 2
    x0 = needle
    hub = pick(rng, [(40, 140, 240), (60, 180, 60), (200, 120, 40), (180, 120, 240)], 10)
    capped = rng.random() < 0.4
    if capped:
        fill(c, rrect(0, y - d * 0.22, x0 + 2, y + d * 0.22, d * 0.1), pick(rng, [hub, (40, 140, 240)], 10))
    else:
        stroke(c, pts([(0, y), (x0, y)]), (170, 170, 175), max(1.0, 0.0006 * s), a=255)
        fill(c, rrect(x0 - 0.008 * s, y - d * 0.2, x0 + 1, y + d * 0.2, 2), hub)
    fill(c, rrect(x0, y - d / 2, x0 + L, y + d / 2, d * 0.1), (235, 235, 235), int(rng.integers(140, 200)))
    fill(c, pts([(x0 + L - 2, y - d), (x0 + L + 0.003 * s, y - d), (x0 + L + 0.003 * s, y + d),
                 (x0 + L - 2, y + d)]), (230, 230, 230), 235)
    stop = x0 + L - rod * 0.98 + L * 0.05
    stop = max(stop, x0 + L * 0.1)
    fill(c, pts([(stop, y - d * 0.22), (c.w - 0.004 * s, y - d * 0.22), (c.w - 0.004 * s, y + d * 0.22),
                 (stop, y + d * 0.22)]), (240, 240, 240), 240)
    fill(c, rrect(stop - d * 0.25, y - d * 0.45, stop + d * 0.25, y + d * 0.45, 2), (30, 30, 30), 255)
    fill(c, rrect(c.w - 0.004 * s, y - d * 0.7, c.w, y + d * 0.7, 2), (240, 240, 240), 245)
    for k in range(int(L / (0.004 * s))):
        x = x0 + L * 0.1 + k * 0.004 * s
        if x < x0 + L * 0.95:
            stroke(c, pts([(x, y - d / 2), (x, y - d * (0.2 if k % 5 else 0.0))]), (40, 40, 40), 1)
    shade(c, cylinder(c.h, dark=0.7, spec=0.3))
    return c


def _glove(rng: np.random.Generator, s: float) -> Canvas:
    pw, ph = rng.uniform(0.08, 0.1) * s, rng.uniform(0.09, 0.11) * s
    fl = rng.uniform(0.06, 0.08) * s
    cuff = rng.uniform(0.04, 0.09) * s
    c = Canvas(pw * 1.9, fl + ph + cuff + 0.01 * s)
    col = pick(rng, [(200, 130, 50), (170, 80, 130), (220, 230, 240), (30, 30, 30), (180, 200, 210)], 10)
    ox = pw * 0.45
    fill(c, rrect(ox, fl, ox + pw, fl + ph, pw * 0.2), col)
    fw = pw / 4.3
    for k in range(4):
        x = ox + fw * (0.6 + k * 1.05)
        spread = rng.uniform(-0.3, 0.3) * fw
        length = fl * (0.85 if k in (0, 3) else 1.0) * rng.uniform(0.85, 1.0)
        stroke(c, pts([(x, fl + fw), (x + spread, fl + fw - length + fw / 2)]), col, fw * 0.95, a=255)
    ta = rng.uniform(0.5, 1.1)
    stroke(c, pts([(ox + fw * 0.3, fl + ph * 0.6), (ox + fw * 0.3 - np.cos(ta) * fl * 0.8,
                                                    fl + ph * 0.6 - np.sin(ta) * fl * 0.8)]), col, fw * 1.05, a=255)
    fill(c, pts([(ox + pw * 0.05, fl + ph - 4), (ox + pw * 0.95, fl + ph - 4), (ox + pw * 1.0, fl + ph + cuff),
                 (ox, fl + ph + cuff)]), col)
    stroke(c, pts([(ox, fl + ph + cuff - 3), (ox + pw, fl + ph + cuff - 3)]), mix(col, (0, 0, 0), 0.2), 0.003 * s)
    shade(c, (1 + 0.12 * noise(c.h, c.w, rng, 7)) * linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.25))
    glow(c, np.clip(noise(c.h, c.w, rng, 5), 0, 1) ** 3, 50.0, c.alpha > 0)
    return c


def paint_medical(rng: np.random.Generator, s: float) -> Canvas:
    """Medical waste: surgical masks with ear loops and pleats, syringes (capped or with needle), gloves."""
    kind = int(rng.choice(3, p=[0.4, 0.3, 0.3]))
    c = [_mask, _syringe, _glove][kind](rng, s)
    grain(c, rng, 2.0)
    return c


__all__ = ["paint_medical", "paint_paper", "paint_textile"]
