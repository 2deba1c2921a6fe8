"""Procedural painters: plastic containers, cans, other metal and glass."""

from __future__ import annotations

import numpy as np

from station.simulator._paint import (
    Canvas,
    Color,
    Points,
    cylinder,
    ellipse,
    fill,
    glow,
    grain,
    hole,
    linear,
    mix,
    noise,
    pick,
    pts,
    region,
    rrect,
    shade,
    stroke,
    text,
)

SILVER: Color = (200, 200, 204)
CAPS: list[Color] = [(240, 240, 240), (170, 80, 20), (40, 40, 200), (40, 150, 40), (30, 130, 240), (25, 25, 25),
                     (40, 200, 230)]
PRINTS: list[Color] = [(40, 40, 200), (170, 80, 20), (30, 30, 30), (40, 150, 40), (40, 200, 230), (240, 240, 240),
                       (30, 130, 240), (140, 40, 120), (200, 200, 205), (90, 30, 10)]
WORDS = ["COLA", "BEER", "ENERGY", "SODA", "Lager", "FRESH", "TONIC", "AQUA", "JUICE", "ZERO", "MILK"]


def bottle_outline(D: float, H: float, neck: float, neck_len: float, shoulder: float, top: float,
                   crush: np.ndarray | None = None) -> Points:
    """Upright bottle outline (mouth at the top), ``crush`` perturbs the body width along the height."""
    cx = D / 2
    ys = np.linspace(top, H, 60)
    half = np.empty_like(ys)
    for i, y in enumerate(ys):
        if y < top + neck_len:
            half[i] = neck / 2
        elif y < top + neck_len + shoulder:
            u = (y - top - neck_len) / shoulder
            half[i] = neck / 2 + (D / 2 - neck / 2) * (0.5 - 0.5 * np.cos(np.pi * u))
        else:
            half[i] = D / 2 * (1 - 0.06 * max(0.0, (y - H + D * 0.15) / (D * 0.15)) ** 2)
    if crush is not None:
        half = half * crush
    left = np.stack([cx - half, ys], axis=1)
    right = np.stack([cx + half, ys], axis=1)[::-1]
    return pts(np.concatenate([left, right]))


def _label(c: Canvas, rng: np.random.Generator, y0: float, y1: float, x0: float = 0, x1: float | None = None) -> None:
    x1 = c.w if x1 is None else x1
    col = pick(rng, PRINTS, 15)
    fill(c, pts([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]), col, 255)
    cv_mask = region(c, pts([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]))
    if rng.random() < 0.7:
        y = rng.uniform(y0, y1)
        stroke(c, pts([(x0, y), (x1, y + rng.uniform(-1, 1) * (y1 - y0) * 0.3)]), pick(rng, PRINTS, 20),
               (y1 - y0) * rng.uniform(0.1, 0.3))
    ink: Color = (240, 240, 240) if sum(col) < 350 else (20, 20, 20)
    hgt = min((y1 - y0) * 0.3, (x1 - x0) * 0.18)
    text(c, str(rng.choice(WORDS)), x0 + (x1 - x0) * 0.1, (y0 + y1) / 2 + hgt / 2, hgt, ink, bold=True)
    c.alpha[cv_mask] = 255


def _pet_bottle(rng: np.random.Generator, s: float) -> Canvas:
    D = rng.uniform(0.055, 0.095) * s
    H = D * rng.uniform(2.6, 3.6)
    cap = 0.013 * s
    c = Canvas(D, H)
    crush = None
    if rng.random() < 0.35:
        crush = 1 + 0.18 * np.interp(np.linspace(0, 1, 60), np.linspace(0, 1, 8), rng.uniform(-1, 0.4, 8))
    outline = bottle_outline(D, H, 0.027 * s, 0.012 * s, D * rng.uniform(0.4, 0.9), cap, crush)
    opaque = rng.random() < 0.3
    tint = pick(rng, [(225, 220, 210), (230, 200, 170), (200, 225, 200), (210, 200, 230)], 8)
    body = pick(rng, CAPS, 15) if opaque else tint
    fill(c, outline, body, 255 if opaque else int(rng.integers(110, 190)))
    cap_poly = rrect(D / 2 - 0.0155 * s, 0, D / 2 + 0.0155 * s, cap + 2, 0.002 * s)
    fill(c, cap_poly, pick(rng, CAPS, 10))
    for k in range(4):
        stroke(c, pts([(D / 2 - 0.015 * s, cap * (0.2 + 0.2 * k)), (D / 2 + 0.015 * s, cap * (0.2 + 0.2 * k))]),
               (0, 0, 0), 1)
    if rng.random() < 0.75:
        y0 = H * rng.uniform(0.35, 0.55)
        _label(c, rng, y0, y0 + H * rng.uniform(0.15, 0.3))
    m = region(c, outline)
    c.alpha[~(m | region(c, cap_poly))] = 0
    shade(c, cylinder(c.w, dark=0.55, spec=0.5, spec_at=rng.uniform(0.2, 0.4)))
    xx = np.arange(c.w, dtype=np.float32)[None, :] / c.w
    glow(c, np.exp(-(((xx - rng.uniform(0.6, 0.8)) / 0.03) ** 2)) * np.ones((c.h, 1), np.float32), 60.0, m)
    if crush is not None:
        for _ in range(int(rng.integers(2, 6))):
            y = rng.uniform(0.3, 0.95) * H
            stroke(c, pts([(0, y), (D * 0.5, y + rng.uniform(-0.1, 0.1) * D), (D, y)]), mix(body, (0, 0, 0), 0.3), 2)
    return c


def _tub(rng: np.random.Generator, s: float) -> Canvas:
    W = rng.uniform(0.08, 0.16) * s
    H = W * rng.uniform(0.6, 1.0)
    c = Canvas(W, H)
    col = pick(rng, [(240, 240, 240), (30, 30, 30), (40, 200, 230), (220, 215, 205), (170, 80, 20)], 12)
    rim = W * 0.06
    oval = rng.random() < 0.4
    shape = ellipse(W / 2, H / 2, W / 2 - 1, H / 2 - 1) if oval else rrect(0, 0, W, H, W * 0.12)
    fill(c, shape, mix(col, (255, 255, 255), 0.1), int(rng.integers(180, 256)))
    inner = ellipse(W / 2, H / 2, W / 2 - rim, H / 2 - rim) if oval else \
        rrect(rim, rim, W - rim, H - rim, W * 0.08)
    fill(c, inner, mix(col, (0, 0, 0), 0.15), None)
    stroke(c, inner, mix(col, (0, 0, 0), 0.35), max(2.0, rim * 0.2), closed=True)
    if rng.random() < 0.5:
        _label(c, rng, H * 0.35, H * 0.65, W * 0.2, W * 0.8)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.3))
    return c


def paint_plastic(rng: np.random.Generator, s: float) -> Canvas:
    """PET bottles (clear, tinted or opaque, capped, labelled, sometimes crushed) and tubs."""
    c = _pet_bottle(rng, s) if rng.random() < 0.7 else _tub(rng, s)
    grain(c, rng, 2.0)
    return c


# --- cans ---------------------------------------------------------------------------------------------------

def _can_side(rng: np.random.Generator, s: float) -> Canvas:
    D, H = rng.choice([(0.066, 0.115), (0.066, 0.122), (0.058, 0.146), (0.066, 0.168), (0.074, 0.11)])
    D, H = D * s, H * s
    c = Canvas(D, H)
    crush = rng.random() < 0.3
    ys = np.linspace(0, H, 40)
    prof = np.ones_like(ys)
    neck = H * 0.07
    prof[ys < neck] = 0.86 + 0.14 * ys[ys < neck] / neck
    if crush:
        prof *= 1 + 0.15 * np.interp(ys / H, np.linspace(0, 1, 7), rng.uniform(-1, 0.5, 7))
    left, right = np.stack([D / 2 - D / 2 * prof, ys], 1), np.stack([D / 2 + D / 2 * prof, ys], 1)
    outline = pts(np.concatenate([left, right[::-1]]))
    base = pick(rng, PRINTS, 15)
    fill(c, outline, base)
    m = region(c, outline)
    kind = int(rng.integers(3))
    second = pick(rng, PRINTS, 15)
    if kind == 0:
        y = rng.uniform(0.3, 0.6) * H
        fill(c, pts([(0, y), (D, y - H * 0.15), (D, y + H * 0.05), (0, y + H * 0.2)]), second, None)
    elif kind == 1:
        fill(c, ellipse(D / 2, H * 0.5, D * 0.35, D * 0.35), second, None)
    else:
        for k in range(3):
            y = H * (0.25 + 0.18 * k)
            stroke(c, pts([(0, y), (D, y)]), second, H * 0.04)
    ink: Color = (240, 240, 240) if sum(base) < 350 else (20, 20, 20)
    text(c, str(rng.choice(WORDS)), D * 0.08, H * 0.42, D * 0.2, ink, bold=True)
    fill(c, pts([(0, 0), (D, 0), (D, neck), (0, neck)]), SILVER, None)
    fill(c, pts([(0, H - H * 0.03), (D, H - H * 0.03), (D, H), (0, H)]), SILVER, None)
    c.img[~m] = 0
    shade(c, cylinder(c.w, dark=0.35, spec=0.7, spec_at=rng.uniform(0.2, 0.45)))
    if crush:
        for _ in range(int(rng.integers(3, 8))):
            y = rng.uniform(0.1, 0.95) * H
            zz = pts([(0, y), (D * 0.3, y + rng.uniform(-0.05, 0.05) * H), (D * 0.6, y + rng.uniform(-0.05, 0.05) * H),
                      (D, y)])
            stroke(c, zz, (235, 235, 235) if rng.random() < 0.5 else (40, 40, 40), max(2.0, D * 0.02))
    return c


def _can_top(rng: np.random.Generator, s: float) -> Canvas:
    d = rng.uniform(0.052, 0.068) * s
    c = Canvas(d, d)
    r = d / 2
    fill(c, ellipse(r, r, r - 1, r - 1), SILVER)
    stroke(c, ellipse(r, r, r * 0.86, r * 0.86), (150, 150, 155), max(2.0, d * 0.02), closed=True)
    fill(c, ellipse(r, r * 0.62, r * 0.22, r * 0.16), (40, 40, 40), None)
    fill(c, rrect(r - r * 0.18, r * 0.75, r + r * 0.18, r * 1.35, r * 0.1), (215, 215, 220), None)
    hole(c, ellipse(r, r * 1.2, r * 0.07, r * 0.05))
    yy, xx = np.mgrid[0:c.h, 0:c.w].astype(np.float32)
    shade(c, 0.8 + 0.3 * np.cos(2 * np.arctan2(yy - r, xx - r) + rng.uniform(0, np.pi)))
    return c


def paint_can(rng: np.random.Generator, s: float) -> Canvas:
    """Aluminium drink and food cans seen from the side (printed, shaded, sometimes crushed) or the top."""
    c = _can_side(rng, s) if rng.random() < 0.8 else _can_top(rng, s)
    grain(c, rng, 2.0)
    return c


# --- other metal ----------------------------------------------------------------------------------------------

METALS: list[Color] = [(170, 170, 172), (130, 135, 140), (60, 110, 180), (70, 140, 190), (110, 110, 110),
                       (190, 190, 195)]


def _brushed(c: Canvas, rng: np.random.Generator) -> None:
    streak = rng.normal(0, 1, (1, c.w)).astype(np.float32) * np.ones((c.h, 1), np.float32)
    if rng.random() < 0.5:
        streak = rng.normal(0, 1, (c.h, 1)).astype(np.float32) * np.ones((1, c.w), np.float32)
    shade(c, (1 + 0.05 * streak) * linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.35))


def _rust(c: Canvas, rng: np.random.Generator, amount: float) -> None:
    f = noise(c.h, c.w, rng, 10) + 0.35 * noise(c.h, c.w, rng, 40)
    t = np.clip((f - (1 - amount)) * 2.5, 0, 0.85)[..., None]
    t *= (0.6 + 0.4 * rng.random((c.h, c.w, 1))).astype(np.float32)
    rust = np.array([30, 70, 140], np.float32) * rng.uniform(0.6, 1.1)
    c.img[:] = np.clip(c.img.astype(np.float32) * (1 - t) + rust * t, 0, 255).astype(np.uint8)


def _scrap(rng: np.random.Generator, s: float) -> Canvas:
    w, h = rng.uniform(0.05, 0.2) * s, rng.uniform(0.04, 0.15) * s
    c = Canvas(w, h)
    n = int(rng.integers(5, 11))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(0.55, 1.0, n)
    poly = pts(np.stack([w / 2 + w / 2 * rad * np.cos(ang), h / 2 + h / 2 * rad * np.sin(ang)], 1))
    fill(c, poly, pick(rng, METALS, 10))
    for _ in range(int(rng.integers(0, 3))):
        hole(c, ellipse(rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.003 * s, 0.003 * s))
    if rng.random() < 0.5:
        stroke(c, pts([(rng.uniform(0, w), 0), (rng.uniform(0, w), h)]), (235, 235, 235), 0.002 * s)
    _brushed(c, rng)
    if rng.random() < 0.5:
        _rust(c, rng, rng.uniform(0.2, 0.8))
    return c


def _wrench(rng: np.random.Generator, s: float) -> Canvas:
    L, t = rng.uniform(0.12, 0.25) * s, rng.uniform(0.012, 0.02) * s
    head = t * 1.4
    c = Canvas(L, head * 2)
    col = pick(rng, [(190, 190, 195), (160, 160, 165), (90, 90, 95)], 8)
    fill(c, rrect(head, head - t / 2, L - head, head + t / 2, t / 3), col)
    fill(c, ellipse(head, head, head - 1, head - 1), col)
    fill(c, ellipse(L - head, head, head - 1, head - 1), col)
    hole(c, pts([(0, head - t * 0.45), (head * 1.1, head - t * 0.45), (head * 1.1, head + t * 0.45),
                 (0, head + t * 0.45)]))
    hole(c, ellipse(L - head, head, head * 0.5, head * 0.5))
    shade(c, cylinder(c.h, dark=0.55, spec=0.5))
    text(c, str(rng.choice(["13", "17", "10", "CR-V"])), L * 0.4, head + t * 0.25, t * 0.45, (80, 80, 80))
    return c


def _pipe(rng: np.random.Generator, s: float) -> Canvas:
    L, d = rng.uniform(0.08, 0.3) * s, rng.uniform(0.01, 0.035) * s
    c = Canvas(L, d)
    fill(c, rrect(0, 0, L, d, d * 0.1), pick(rng, [(60, 110, 180), (170, 170, 172), (110, 110, 110)], 8))
    shade(c, cylinder(c.h, dark=0.4, spec=0.6))
    if rng.random() < 0.4:
        _rust(c, rng, 0.4)
    return c


def _bracket(rng: np.random.Generator, s: float) -> Canvas:
    a, b, t = rng.uniform(0.05, 0.12) * s, rng.uniform(0.05, 0.12) * s, rng.uniform(0.012, 0.03) * s
    c = Canvas(a, b)
    col = pick(rng, METALS, 10)
    fill(c, pts([(0, 0), (t, 0), (t, b - t), (a, b - t), (a, b), (0, b)]), col)
    for k in range(int(rng.integers(1, 4))):
        hole(c, ellipse(t / 2, b * (0.2 + 0.25 * k), t * 0.2, t * 0.2))
    _brushed(c, rng)
    return c


def _tin(rng: np.random.Generator, s: float) -> Canvas:
    w, h = rng.uniform(0.08, 0.12) * s, rng.uniform(0.05, 0.08) * s
    c = Canvas(w, h)
    fill(c, rrect(0, 0, w, h, h * 0.3), SILVER)
    for k in range(1, 4):
        stroke(c, rrect(k * h * 0.06, k * h * 0.06, w - k * h * 0.06, h - k * h * 0.06, h * 0.25),
               (150, 150, 155) if k % 2 else (230, 230, 232), 2, closed=True)
    stroke(c, ellipse(w * 0.15, h / 2, h * 0.12, h * 0.12), (120, 120, 120), 0.002 * s, closed=True)
    _brushed(c, rng)
    return c


def paint_metal(rng: np.random.Generator, s: float) -> Canvas:
    """Other metal: scrap plates (brushed, rusty, holed), wrenches, pipes, brackets, tin lids."""
    kind = int(rng.choice(5, p=[0.35, 0.2, 0.15, 0.15, 0.15]))
    c = [_scrap, _wrench, _pipe, _bracket, _tin][kind](rng, s)
    grain(c, rng, 3.0)
    return c


# --- glass --------------------------------------------------------------------------------------------------

def paint_glass(rng: np.random.Generator, s: float) -> Canvas:
    """Glass bottles (green, brown, clear, blue) with long necks and jars with lids; specular highlights."""
    jar = rng.random() < 0.3
    tone = 2 if jar and rng.random() < 0.8 else int(rng.choice(4, p=[0.35, 0.3, 0.28, 0.07]))
    col = pick(rng, [[(40, 100, 30)], [(20, 55, 100)], [(205, 215, 200)], [(130, 60, 20)]][tone], 10)
    a_body = int(rng.integers(150, 200)) if tone == 2 else int(rng.integers(215, 245))
    if jar:
        D = rng.uniform(0.065, 0.1) * s
        H = D * rng.uniform(1.1, 1.6)
        c = Canvas(D, H)
        outline = bottle_outline(D, H, D * 0.78, H * 0.08, H * 0.07, H * 0.1)
        fill(c, outline, col, a_body)
        lid = pick(rng, [(40, 170, 210), SILVER, (30, 30, 180), (240, 240, 240), (40, 120, 40)], 10)
        fill(c, rrect(D * 0.1, 0, D * 0.9, H * 0.12, 3), lid)
        for k in range(1, 6):
            stroke(c, pts([(D * 0.1, H * 0.02 * k), (D * 0.9, H * 0.02 * k)]), mix(lid, (0, 0, 0), 0.3), 1)
        stroke(c, pts([(D * 0.15, H * 0.95), (D * 0.5, H * 0.985), (D * 0.85, H * 0.95)]), mix(col, (0, 0, 0), 0.4),
               max(2.0, D * 0.03))
    else:
        D = rng.uniform(0.055, 0.085) * s
        H = D * rng.uniform(3.2, 4.3)
        c = Canvas(D, H)
        top = 0.003 * s
        outline = bottle_outline(D, H, D * 0.36, H * rng.uniform(0.2, 0.32), H * rng.uniform(0.08, 0.18), top)
        fill(c, outline, col, a_body)
        fill(c, rrect(D * 0.3, 0, D * 0.7, top + 0.006 * s, 2), mix(col, (255, 255, 255), 0.2) if rng.random() < 0.5
             else pick(rng, [(40, 170, 210), SILVER], 10))
    m = region(c, outline)
    if rng.random() < 0.6:
        y0 = H * rng.uniform(0.45, 0.6)
        fill(c, pts([(0, y0), (D, y0), (D, y0 + H * 0.22), (0, y0 + H * 0.22)]),
             pick(rng, [(225, 240, 245), (240, 240, 240), (30, 30, 30), (40, 40, 160)], 10), None)
        c.alpha[region(c, pts([(0, y0), (D, y0), (D, y0 + H * 0.22), (0, y0 + H * 0.22)])) & m] = 255
        c.img[~m & (c.alpha == 0)] = 0
    shade(c, cylinder(c.w, dark=0.3, spec=0.2, spec_at=0.3), m)
    xx = np.arange(c.w, dtype=np.float32)[None, :] / c.w
    for at, width, amt in ((rng.uniform(0.22, 0.35), 0.035, 150.0), (rng.uniform(0.7, 0.8), 0.02, 80.0)):
        glow(c, np.exp(-(((xx - at) / width) ** 2)) * np.ones((c.h, 1), np.float32), amt, m)
    edge = np.abs(xx - 0.5) * 2
    c.alpha[m] = np.clip(c.alpha.astype(np.float32) + 60 * edge ** 3, 0, 255).astype(np.uint8)[m]
    grain(c, rng, 1.5)
    return c


__all__ = ["bottle_outline", "paint_can", "paint_glass", "paint_metal", "paint_plastic"]
