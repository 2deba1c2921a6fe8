"""Procedural painters: batteries, circuit boards and cables (upright, at supersampled scale)."""

from __future__ import annotations

import numpy as np

from station.simulator._paint import (
    Canvas,
    Color,
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
    rrect,
    shade,
    stroke,
    text,
)

SILVER: Color = (198, 198, 202)
GOLD: Color = (60, 170, 215)
WRAPS: list[tuple[Color, Color]] = [
    ((25, 25, 25), (40, 110, 190)),     # black with copper top
    ((170, 90, 20), (200, 200, 200)),   # blue
    ((40, 130, 30), (220, 220, 220)),   # green
    ((30, 30, 180), (30, 30, 30)),      # red
    ((150, 60, 120), (200, 200, 200)),  # purple 18650
    ((190, 190, 195), (30, 30, 180)),   # silver with red
    ((30, 150, 220), (30, 30, 30)),     # orange
    ((200, 120, 230), (240, 240, 240)),  # pink
    ((60, 60, 60), (60, 190, 230)),     # grey with yellow
]
CELLS = [("AA", 0.0505, 0.0145, "1.5V"), ("AAA", 0.0445, 0.0105, "1.5V"), ("18650", 0.065, 0.0185, "3.7V"),
         ("C", 0.050, 0.026, "1.5V"), ("D", 0.061, 0.033, "1.5V"), ("21700", 0.070, 0.021, "3.6V")]


def _cell(rng: np.random.Generator, s: float) -> Canvas:
    name, length, dia, volts = CELLS[int(rng.integers(len(CELLS)))]
    L, D = length * s * rng.uniform(0.96, 1.04), dia * s * rng.uniform(0.96, 1.04)
    c = Canvas(L, D)
    body, band = WRAPS[int(rng.integers(len(WRAPS)))]
    body = pick(rng, [body], 10)
    nub = L * 0.035
    fill(c, rrect(0, D * 0.3, nub + 2, D * 0.7, D * 0.08), SILVER)
    fill(c, rrect(nub, 0, L, D, D * 0.1), body)
    if rng.random() < 0.5:
        fill(c, rrect(nub, 0, nub + L * rng.uniform(0.2, 0.35), D, D * 0.1), pick(rng, [band], 8), None)
    fill(c, rrect(L - L * 0.025, 0, L, D, D * 0.06), SILVER, None)
    if name in ("18650", "21700") and rng.random() < 0.6:
        stroke(c, pts([(nub + 3, D * 0.1), (nub + 3, D * 0.9)]), (235, 235, 235), max(2, L * 0.01))
    ink = (235, 235, 235) if sum(body) < 300 else (30, 30, 30)
    h = D * 0.33
    text(c, rng.choice([name, volts, "LR6", "ALKALINE", "Li-ion", "+" + volts]), L * 0.42, D / 2 + h / 2, h, ink)
    if rng.random() < 0.6:
        stroke(c, pts([(L * 0.4, D * 0.22), (L * 0.9, D * 0.22)]), pick(rng, [band], 20), D * 0.06)
    shade(c, cylinder(c.h, dark=0.35, spec=0.45, spec_at=rng.uniform(0.2, 0.4)))
    return c


def _coin(rng: np.random.Generator, s: float) -> Canvas:
    d = float(rng.choice([0.020, 0.0115, 0.0245, 0.016])) * s
    c = Canvas(d, d)
    r = d / 2
    fill(c, ellipse(r, r, r - 1, r - 1), pick(rng, [SILVER, (180, 182, 188)], 6))
    stroke(c, ellipse(r, r, r * 0.86, r * 0.86), (150, 150, 155), max(1, d * 0.02), closed=True)
    text(c, str(rng.choice(["CR2032", "CR2025", "LR44", "CR2450", "3V"])), r * 0.35, r * 1.05, r * 0.28,
         (90, 90, 95))
    text(c, "+", r * 0.85, r * 0.55, r * 0.3, (90, 90, 95))
    yy, xx = np.mgrid[0:c.h, 0:c.w].astype(np.float32)
    ang = np.arctan2(yy - r, xx - r)
    shade(c, 0.85 + 0.22 * np.cos(2 * ang + rng.uniform(0, np.pi)))
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.2))
    return c


def _power_bank(rng: np.random.Generator, s: float) -> Canvas:
    L, W = rng.uniform(0.085, 0.15) * s, rng.uniform(0.055, 0.08) * s
    c = Canvas(L, W)
    body = pick(rng, [(30, 30, 30), (235, 235, 235), (120, 120, 125), (140, 70, 20), (40, 40, 160), (70, 50, 40)])
    fill(c, rrect(0, 0, L, W, W * rng.uniform(0.08, 0.2)), body)
    face = W * 0.09
    fill(c, rrect(0, 0, face, W, W * 0.05), mix(body, (0, 0, 0), 0.35), None)
    for k in range(int(rng.integers(1, 3))):
        y0 = W * (0.2 + 0.35 * k)
        fill(c, pts([(face * 0.15, y0), (face * 0.85, y0), (face * 0.85, y0 + W * 0.2), (face * 0.15, y0 + W * 0.2)]),
             (20, 20, 20), None)
        fill(c, pts([(face * 0.3, y0 + W * 0.03), (face * 0.55, y0 + W * 0.03), (face * 0.55, y0 + W * 0.17),
                     (face * 0.3, y0 + W * 0.17)]), SILVER, None)
    for k in range(4):
        lit = k < int(rng.integers(0, 5))
        col: Color = (240, 180, 60) if lit else mix(body, (128, 128, 128), 0.4)
        fill(c, ellipse(face + L * 0.08 + k * W * 0.08, W * 0.85, W * 0.025, W * 0.025), col, None)
    ink = (200, 200, 200) if sum(body) < 350 else (70, 70, 70)
    text(c, str(rng.choice(["10000mAh", "20000mAh", "5000mAh", "POWER", "PowerBank"])), L * 0.3, W * 0.55,
         W * 0.12, ink)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.25) * (1 + 0.05 * noise(c.h, c.w, rng, 3)))
    return c


def _nine_volt(rng: np.random.Generator, s: float) -> Canvas:
    L, W = 0.048 * s, 0.026 * s
    c = Canvas(L, W)
    body, band = WRAPS[int(rng.integers(len(WRAPS)))]
    fill(c, rrect(0, 0, L, W, W * 0.12), body)
    fill(c, rrect(L * 0.6, 0, L, W, W * 0.1), band, None)
    fill(c, ellipse(L * 0.08, W * 0.3, W * 0.13, W * 0.13), SILVER, None)
    fill(c, ellipse(L * 0.08, W * 0.72, W * 0.15, W * 0.15, 30), (170, 170, 175), None)
    text(c, "9V", L * 0.3, W * 0.62, W * 0.3, (235, 235, 235) if sum(body) < 300 else (20, 20, 20), bold=True)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.3))
    return c


def _pack(rng: np.random.Generator, s: float) -> Canvas:
    L, W = rng.uniform(0.055, 0.2) * s, rng.uniform(0.035, 0.075) * s
    c = Canvas(L + W * 0.5, W)
    body = pick(rng, [(30, 30, 30), (170, 120, 40), (200, 200, 205), (60, 60, 60)])
    fill(c, rrect(0, 0, L, W, W * 0.06), body)
    if rng.random() < 0.6:
        lab = pick(rng, [(240, 240, 240), (60, 200, 240), (235, 235, 240)], 6)
        fill(c, rrect(L * 0.1, W * 0.12, L * 0.85, W * 0.88, 2), lab, None)
        for k in range(4):
            y = W * (0.3 + 0.15 * k)
            stroke(c, pts([(L * 0.15, y), (L * rng.uniform(0.4, 0.8), y)]), (60, 60, 60), W * 0.03)
        text(c, str(rng.choice(["Li-ion", "7.4V", "3.85V", "4000mAh"])), L * 0.15, W * 0.25, W * 0.1, (30, 30, 30))
    for k, col in enumerate([(30, 30, 200), (30, 30, 30)]):
        y = W * (0.4 + 0.15 * k)
        curve = pts([(L - 2, y), (L + W * 0.2, y + W * rng.uniform(-0.1, 0.1)), (L + W * 0.45, y)])
        stroke(c, curve, col, W * 0.05, a=255)
    fill(c, rrect(L + W * 0.35, W * 0.33, L + W * 0.5, W * 0.7, 2), (235, 235, 235))
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.25))
    return c


def paint_battery(rng: np.random.Generator, s: float) -> Canvas:
    """Cylindrical cells, coin cells, power banks, 9 V blocks and bare Li-ion packs."""
    kind = rng.choice(5, p=[0.42, 0.14, 0.22, 0.08, 0.14])
    c = [_cell, _coin, _power_bank, _nine_volt, _pack][int(kind)](rng, s)
    grain(c, rng, 2.5)
    return c


# --- printed circuit boards ---------------------------------------------------------------------------------

BOARDS: list[Color] = [(40, 110, 20), (50, 95, 30), (30, 130, 60), (140, 70, 20), (25, 25, 25), (30, 30, 150),
                       (110, 40, 90)]


def _chips(c: Canvas, rng: np.random.Generator, s: float, n: int) -> None:
    for _ in range(n):
        cw, ch = rng.uniform(0.005, 0.025) * s, rng.uniform(0.005, 0.02) * s
        x, y = rng.uniform(0.05, 0.95) * c.w - cw / 2, rng.uniform(0.05, 0.95) * c.h - ch / 2
        pin = max(2.0, 0.0012 * s)
        for k in range(max(2, int(cw / (pin * 2)))):
            px = x + pin + k * pin * 2
            stroke(c, pts([(px, y - pin * 1.5), (px, y + ch + pin * 1.5)]), SILVER, pin * 0.8)
        fill(c, rrect(x, y, x + cw, y + ch, 2), pick(rng, [(25, 25, 25), (40, 40, 45)], 5), None)
        if cw > 0.012 * s:
            text(c, str(rng.choice(["ATMEL", "STM32", "74HC", "IC3", "U1"])), x + cw * 0.1, y + ch * 0.6,
                 ch * 0.22, (170, 170, 170))


def _parts(c: Canvas, rng: np.random.Generator, s: float, board: Color) -> None:
    for _ in range(int(rng.integers(0, 4))):
        r = rng.uniform(0.003, 0.006) * s
        x, y = rng.uniform(r, c.w - r), rng.uniform(r, c.h - r)
        fill(c, ellipse(x, y, r, r), pick(rng, [(130, 60, 20), (20, 20, 20), (40, 40, 120)], 10), None)
        fill(c, ellipse(x - r * 0.2, y - r * 0.2, r * 0.55, r * 0.55), SILVER, None)
    for _ in range(int(rng.integers(4, 20))):
        w, h = rng.uniform(0.0015, 0.004) * s, rng.uniform(0.001, 0.002) * s
        x, y = rng.uniform(0, c.w - w), rng.uniform(0, c.h - h)
        fill(c, pts([(x, y), (x + w, y), (x + w, y + h), (x, y + h)]),
             pick(rng, [(60, 60, 60), (80, 110, 150), (30, 30, 30)], 10), None)
    if rng.random() < 0.5:
        n, p = int(rng.integers(4, 16)), 0.00254 * s
        x, y = rng.uniform(0.05, 0.5) * c.w, rng.uniform(0.05, 0.9) * c.h
        fill(c, pts([(x, y), (x + n * p, y), (x + n * p, y + p), (x, y + p)]), (20, 20, 20), None)
        for k in range(n):
            fill(c, ellipse(x + (k + 0.5) * p, y + p / 2, p * 0.2, p * 0.2), GOLD, None)
    if rng.random() < 0.3:
        for k in range(int(c.w / (0.003 * s)) - 2):
            x = (k + 1) * 0.003 * s
            fill(c, pts([(x, c.h - 0.006 * s), (x + 0.0018 * s, c.h - 0.006 * s), (x + 0.0018 * s, c.h - 1),
                         (x, c.h - 1)]), GOLD, None)


def paint_pcb(rng: np.random.Generator, s: float) -> Canvas:
    """Bare boards: solder mask, copper traces, pads, chips, capacitors, headers, silkscreen, holes."""
    W, H = rng.uniform(0.05, 0.2) * s, rng.uniform(0.035, 0.13) * s
    c = Canvas(W, H)
    board = pick(rng, BOARDS, 10)
    fill(c, rrect(0, 0, W, H, rng.uniform(0, 0.004) * s), board)
    trace = mix(board, (120, 220, 160), 0.25)
    for _ in range(int(rng.integers(12, 40))):
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        path = [(x, y)]
        for _ in range(int(rng.integers(2, 5))):
            if rng.random() < 0.5:
                x = float(np.clip(x + rng.uniform(-0.4, 0.4) * W, 0, W))
            else:
                y = float(np.clip(y + rng.uniform(-0.4, 0.4) * H, 0, H))
            path.append((x, y))
        stroke(c, pts(path), trace, rng.uniform(0.0004, 0.0012) * s)
        fill(c, ellipse(x, y, 0.0009 * s, 0.0009 * s), pick(rng, [GOLD, SILVER], 5), None)
    for _ in range(int(rng.integers(2, 8))):
        x, y, w, h = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(0.004, 0.02) * s, rng.uniform(0.003, 0.01) * s
        stroke(c, pts([(x, y), (x + w, y), (x + w, y + h), (x, y + h)]), (230, 230, 230), 0.0004 * s, closed=True)
    _chips(c, rng, s, int(rng.integers(1, 6)))
    _parts(c, rng, s, board)
    for _ in range(int(rng.integers(2, 5))):
        text(c, str(rng.choice(["R12", "C3", "J1", "REV B", "U4", "+5V", "GND"])), rng.uniform(0, W * 0.8),
             rng.uniform(0.1, 1) * H, 0.002 * s, (230, 230, 230))
    r = 0.0015 * s
    for x, y in ((0.004 * s, 0.004 * s), (W - 0.004 * s, 0.004 * s), (0.004 * s, H - 0.004 * s),
                 (W - 0.004 * s, H - 0.004 * s)):
        if rng.random() < 0.7 and min(W, H) > 0.02 * s:
            fill(c, ellipse(x, y, r * 1.5, r * 1.5), SILVER, None)
            hole(c, ellipse(x, y, r, r))
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.2))
    grain(c, rng, 3.0)
    return c


# --- cables -----------------------------------------------------------------------------------------------

def _curve(rng: np.random.Generator, length: float, coiled: bool) -> np.ndarray:
    n = 60
    if coiled:
        turns = rng.uniform(1.2, 3.0)
        t = np.linspace(0, 2 * np.pi * turns, n)
        r = length / (2 * np.pi * turns) * (1 + 0.25 * np.sin(t * rng.uniform(0.3, 0.8)))
        drift = np.linspace(0, rng.uniform(-0.5, 0.5) * r.mean(), n)
        return np.stack([r * np.cos(t) + drift, r * np.sin(t) * rng.uniform(0.5, 1.0)], axis=1)
    step = length / n
    curv = np.cumsum(rng.normal(0, 0.12, n)) * rng.uniform(0.3, 1.0)
    ang = np.cumsum(curv * 0.3) + rng.uniform(0, 2 * np.pi)
    return np.cumsum(np.stack([np.cos(ang), np.sin(ang)], axis=1) * step, axis=0)


def _plug(c: Canvas, rng: np.random.Generator, s: float, end: np.ndarray, direction: np.ndarray,
          colour: Color) -> None:
    d = direction / max(float(np.linalg.norm(direction)), 1e-6)
    n = np.array([-d[1], d[0]])
    kind = int(rng.integers(4))
    hl, hw = [(0.025, 0.012), (0.02, 0.01), (0.03, 0.014), (0.045, 0.035)][kind]
    hl, hw = hl * s, hw * s
    corners = [end + n * hw / 2, end + n * hw / 2 + d * hl, end - n * hw / 2 + d * hl, end - n * hw / 2]
    fill(c, pts(corners), mix(colour, (0, 0, 0), 0.15))
    if kind in (0, 2):
        tip = 0.012 * s if kind == 0 else 0.007 * s
        tw = hw * (0.85 if kind == 0 else 0.6)
        base = end + d * hl
        fill(c, pts([base + n * tw / 2, base + n * tw / 2 + d * tip, base - n * tw / 2 + d * tip, base - n * tw / 2]),
             SILVER)
    elif kind == 3:
        base = end + d * hl
        for side in (-0.25, 0.25):
            p = base + n * hw * side
            fill(c, pts([p + n * 0.002 * s, p + n * 0.002 * s + d * 0.016 * s, p - n * 0.002 * s + d * 0.016 * s,
                         p - n * 0.002 * s]), (40, 150, 200) if rng.random() < 0.4 else SILVER)


def paint_cable(rng: np.random.Generator, s: float) -> Canvas:
    """A thick curved cord (loose or coiled) with one or two plugs: USB, barrel, wall plug."""
    thick = rng.uniform(0.003, 0.008) * s
    coiled = rng.random() < 0.35
    curve = _curve(rng, rng.uniform(0.2, 0.6) * s, coiled)
    pad = 0.06 * s
    curve = curve - curve.min(axis=0) + pad
    span = curve.max(axis=0) + pad
    c = Canvas(span[0], span[1])
    colour = pick(rng, [(25, 25, 25), (235, 235, 235), (120, 120, 120), (40, 40, 40), (180, 100, 30),
                        (40, 40, 170)], 8)
    poly = pts(curve)
    stroke(c, poly, mix(colour, (0, 0, 0), 0.3), thick, a=255)
    stroke(c, poly, colour, thick * 0.65)
    hi = pts(curve + np.array([-thick * 0.15, -thick * 0.15]))
    stroke(c, hi, mix(colour, (255, 255, 255), 0.35), max(1.0, thick * 0.18))
    _plug(c, rng, s, curve[-1], curve[-1] - curve[-4], colour)
    if rng.random() < 0.6:
        _plug(c, rng, s, curve[0], curve[0] - curve[3], colour)
    mask = c.alpha > 0
    glow(c, np.clip(noise(c.h, c.w, rng, 4), 0, 1), 10.0, mask)
    grain(c, rng, 2.0)
    return c


__all__ = ["paint_battery", "paint_cable", "paint_pcb"]
