"""Procedural painters: phones, laptops, keyboards, mice, monitors and other e-devices."""

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

SILVER: Color = (196, 196, 200)
GLASS: Color = (22, 18, 16)
SHELLS: list[Color] = [(28, 28, 28), (235, 235, 235), (120, 120, 125), (190, 190, 195), (150, 90, 40),
                       (40, 40, 150), (160, 200, 230), (80, 130, 60)]
ROWS = [[1.0] * 13 + [2.0], [1.5] + [1.0] * 12 + [1.5], [1.75] + [1.0] * 11 + [2.25],
        [2.25] + [1.0] * 10 + [2.75], [1.25, 1.25, 1.25, 6.25, 1.25, 1.25, 1.25, 1.25]]
LEGENDS = "QWERTYUIOPASDFGHJKLZXCVBNM1234567890"


def _reflection(c: Canvas, mask: np.ndarray, rng: np.random.Generator, amount: float) -> None:
    """A soft diagonal sheen across dark glass."""
    yy, xx = np.mgrid[0:c.h, 0:c.w].astype(np.float32)
    a = rng.uniform(0.3, 1.2)
    d = (xx * np.cos(a) + yy * np.sin(a)) / max(c.w, c.h)
    band = np.exp(-(((d - rng.uniform(0.2, 0.9)) / rng.uniform(0.05, 0.2)) ** 2))
    glow(c, band + 0.15 * (1 - yy / c.h), amount, mask)


def _screen(c: Canvas, x0: float, y0: float, x1: float, y1: float, r: float, rng: np.random.Generator,
            lit_prob: float) -> None:
    fill(c, rrect(x0, y0, x1, y1, r), pick(rng, [GLASS, (12, 12, 12), (30, 26, 24)], 4), None)
    m = region(c, rrect(x0, y0, x1, y1, r))
    if rng.random() < lit_prob:
        top, bottom = pick(rng, [(200, 120, 40), (60, 160, 220), (160, 60, 120), (90, 160, 60)], 30), \
            pick(rng, [(90, 30, 20), (20, 60, 120), (60, 20, 70)], 20)
        t = np.linspace(0, 1, c.h, dtype=np.float32)[:, None, None]
        grad = (np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t)
        c.img[m] = np.broadcast_to(grad, c.img.shape)[m].astype(np.uint8)
        icon = (x1 - x0) / 6
        for row in range(int((y1 - y0) / (icon * 1.6)) - 1):
            for col in range(4):
                ix, iy = x0 + icon * (0.6 + col * 1.4), y0 + icon * (1.0 + row * 1.6)
                fill(c, rrect(ix, iy, ix + icon, iy + icon, icon * 0.25), pick(rng, SHELLS, 40), None)
    _reflection(c, m, rng, rng.uniform(15, 45))


def _phone_face(c: Canvas, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, r: float,
                s: float) -> None:
    bez = rng.uniform(0.0015, 0.006) * s
    fill(c, rrect(x0, y0, x1, y1, r), pick(rng, [(10, 10, 10), (230, 230, 230), (20, 20, 22)], 5), None)
    _screen(c, x0 + bez, y0 + bez * rng.uniform(1, 2.5), x1 - bez, y1 - bez * rng.uniform(1, 2.5),
            max(0.0, r - bez), rng, 0.25)
    cx = (x0 + x1) / 2
    if rng.random() < 0.5:
        fill(c, ellipse(cx, y0 + bez + 0.005 * s, 0.0018 * s, 0.0018 * s), (5, 5, 5), None)
    else:
        stroke(c, pts([(cx - 0.006 * s, y0 + bez * 0.6), (cx + 0.006 * s, y0 + bez * 0.6)]), (60, 60, 60),
               0.001 * s)
    if rng.random() < 0.15:
        ox, oy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        for _ in range(int(rng.integers(4, 10))):
            a = rng.uniform(0, 2 * np.pi)
            ln = rng.uniform(0.02, 0.08) * s
            stroke(c, pts([(ox, oy), (ox + ln * np.cos(a), oy + ln * np.sin(a))]), (170, 170, 170), 1)


def _phone_back(c: Canvas, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, r: float,
                s: float) -> None:
    back = pick(rng, SHELLS, 12)
    fill(c, rrect(x0, y0, x1, y1, r), back, None)
    lens = rng.uniform(0.004, 0.007) * s
    n = int(rng.integers(1, 4))
    bx, by = x0 + 0.006 * s, y0 + 0.006 * s
    if n > 1 or rng.random() < 0.5:
        fill(c, rrect(bx, by, bx + lens * 2.6, by + lens * (1.3 * n + 1.2), lens * 0.6), mix(back, (0, 0, 0), 0.2),
             None)
    for k in range(n):
        cx, cy = bx + lens * 1.3, by + lens * (1.3 + 1.3 * k)
        fill(c, ellipse(cx, cy, lens * 0.55, lens * 0.55), (150, 150, 150), None)
        fill(c, ellipse(cx, cy, lens * 0.45, lens * 0.45), (15, 12, 10), None)
        fill(c, ellipse(cx - lens * 0.12, cy - lens * 0.12, lens * 0.1, lens * 0.1), (140, 90, 60), None)
    fill(c, ellipse(bx + lens * 2.2, by + lens * 0.6, lens * 0.18, lens * 0.18), (200, 240, 250), None)
    fill(c, ellipse((x0 + x1) / 2, (y0 + y1) * 0.5, 0.005 * s, 0.006 * s), mix(back, (255, 255, 255), 0.15), None)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.3))


def _feature_phone(rng: np.random.Generator, s: float) -> Canvas:
    W, H = rng.uniform(0.044, 0.052) * s, rng.uniform(0.1, 0.12) * s
    c = Canvas(W, H)
    fill(c, rrect(0, 0, W, H, W * 0.25), pick(rng, SHELLS, 10))
    _screen(c, W * 0.15, H * 0.1, W * 0.85, H * 0.42, 2, rng, 0.3)
    key = W * 0.2
    for row in range(4):
        for col in range(3):
            x, y = W * 0.14 + col * key * 1.35, H * 0.55 + row * key * 0.85
            fill(c, rrect(x, y, x + key, y + key * 0.6, key * 0.2), pick(rng, [(200, 200, 200), (40, 40, 40)], 5),
                 None)
    fill(c, ellipse(W / 2, H * 0.48, W * 0.12, H * 0.02), (90, 90, 90), None)
    return c


def paint_phone(rng: np.random.Generator, s: float) -> Canvas:
    """Smartphones face up (dark glass, bezel, camera hole) or face down (camera bump), some in cases."""
    if rng.random() < 0.12:
        c = _feature_phone(rng, s)
    else:
        W, H = rng.uniform(0.064, 0.08) * s, rng.uniform(0.135, 0.168) * s
        r = W * rng.uniform(0.08, 0.2)
        case = rng.random() < 0.35
        m = rng.uniform(0.002, 0.004) * s if case else 0.0
        c = Canvas(W + 2 * m, H + 2 * m)
        fill(c, rrect(0, 0, c.w, c.h, r + m), pick(rng, [*SHELLS, (60, 60, 200), (200, 200, 120)], 15) if case
             else pick(rng, [SILVER, (40, 40, 40), (150, 180, 210)], 8))
        frame = max(1.0, 0.0008 * s)
        if rng.random() < 0.55:
            _phone_face(c, rng, m + frame, m + frame, c.w - m - frame, c.h - m - frame, r, s)
        else:
            _phone_back(c, rng, m + frame, m + frame, c.w - m - frame, c.h - m - frame, r, s)
    grain(c, rng, 2.0)
    return c


# --- laptops and keyboards --------------------------------------------------------------------------------

def _keys(c: Canvas, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, key: Color,
          legend: Color, rows: list[list[float]] | None = None) -> None:
    rows = rows or ROWS
    unit = (x1 - x0) / 15.0
    rh = (y1 - y0) / len(rows)
    gap = unit * rng.uniform(0.08, 0.2)
    top = mix(key, (255, 255, 255), 0.08)
    for r, row in enumerate(rows):
        x = x0
        for w in row:
            kx0, ky0, kx1, ky1 = x + gap / 2, y0 + r * rh + gap / 2, x + w * unit - gap / 2, y0 + (r + 1) * rh - gap / 2
            fill(c, rrect(kx0, ky0, kx1, ky1, unit * 0.12), mix(key, (0, 0, 0), 0.25), None)
            fill(c, rrect(kx0 + gap * 0.4, ky0 + gap * 0.2, kx1 - gap * 0.4, ky1 - gap * 0.7, unit * 0.1), top, None)
            if unit > 14 and w < 2:
                text(c, LEGENDS[int(rng.integers(len(LEGENDS)))], kx0 + unit * 0.2, ky0 + rh * 0.45, unit * 0.25,
                     legend)
            x += w * unit


def _laptop_lid(c: Canvas, rng: np.random.Generator, W: float, D: float, shell: Color) -> None:
    fill(c, rrect(0, 0, W, D, D * 0.04), shell)
    stroke(c, rrect(W * 0.005, D * 0.005, W * 0.995, D * 0.96, D * 0.04), mix(shell, (0, 0, 0), 0.2), 2,
           closed=True)
    fill(c, pts([(W * 0.03, D * 0.965), (W * 0.97, D * 0.965), (W * 0.97, D), (W * 0.03, D)]),
         mix(shell, (0, 0, 0), 0.4), None)
    logo = mix(shell, (255, 255, 255), 0.3) if sum(shell) < 400 else mix(shell, (0, 0, 0), 0.2)
    if rng.random() < 0.5:
        fill(c, ellipse(W / 2, D * 0.47, D * 0.05, D * 0.06), logo, None)
    else:
        txt = str(rng.choice(["DELL", "hp", "lenovo", "ASUS", "acer"]))
        text(c, txt, W / 2 - D * 0.06 * len(txt) / 2, D * 0.5, D * 0.06, logo, bold=True)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.2) * (1 + 0.04 * noise(c.h, c.w, rng, 3)))


def paint_laptop(rng: np.random.Generator, s: float) -> Canvas:
    """Closed clamshells (lid, logo, hinge) and opened laptops showing the keyboard deck and a tilted lid."""
    W = rng.uniform(0.27, 0.36) * s
    D = W * rng.uniform(0.64, 0.72)
    shell = pick(rng, [(195, 195, 200), (70, 70, 75), (35, 35, 35), (160, 150, 140), (60, 40, 30)], 8)
    if rng.random() < 0.55:
        c = Canvas(W, D)
        _laptop_lid(c, rng, W, D, shell)
    else:
        lid = D * rng.uniform(0.15, 0.9)
        c = Canvas(W, D + lid)
        fill(c, rrect(0, 0, W, lid + D * 0.02, D * 0.03), mix(shell, (0, 0, 0), 0.15))
        bez = D * 0.04
        _screen(c, bez, bez * lid / D, W - bez, lid - bez * lid / D, 2, rng, 0.2)
        fill(c, rrect(0, lid, W, lid + D, D * 0.03), shell)
        key = pick(rng, [(25, 25, 25), (60, 60, 60), (210, 210, 210)], 6)
        _keys(c, rng, W * 0.08, lid + D * 0.08, W * 0.92, lid + D * 0.55, key,
              (220, 220, 220) if sum(key) < 300 else (40, 40, 40))
        fill(c, rrect(W * 0.33, lid + D * 0.62, W * 0.67, lid + D * 0.93, D * 0.02), mix(shell, (0, 0, 0), 0.1), None)
        shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.2))
    grain(c, rng, 2.0)
    return c


def paint_keyboard(rng: np.random.Generator, s: float) -> Canvas:
    """Keyboards: a body with a grid of keycaps, optional function row and numeric pad."""
    numpad = rng.random() < 0.5
    W = rng.uniform(0.28, 0.32) * s * (1.3 if numpad else 1.0)
    fn = rng.random() < 0.6
    H = rng.uniform(0.1, 0.125) * s * (1.15 if fn else 1.0)
    c = Canvas(W, H)
    body = pick(rng, [(25, 25, 25), (230, 230, 230), (110, 110, 115), (190, 190, 195)], 8)
    fill(c, rrect(0, 0, W, H, H * rng.uniform(0.03, 0.12)), body)
    key = pick(rng, [body, (30, 30, 30), (235, 235, 235)], 6)
    legend: Color = (230, 230, 230) if sum(key) < 300 else (40, 40, 40)
    main = W / 1.3 if numpad else W
    m = H * 0.06
    top = H * 0.2 if fn else m
    _keys(c, rng, m, top, main - m, H - m, key, legend)
    if fn:
        _keys(c, rng, m, m, main - m, top - m * 0.3, key, legend, [[1.0] + [0.5] + [1.0] * 12])
    if numpad:
        _keys(c, rng, main + m, top, W - m, H - m, key, legend, [[3.75] * 4] * 5)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.2))
    grain(c, rng, 2.0)
    return c


def paint_mouse(rng: np.random.Generator, s: float) -> Canvas:
    """Computer mice: egg-shaped shell, button split, scroll wheel, gloss, sometimes a cord."""
    W, H = rng.uniform(0.055, 0.07) * s, rng.uniform(0.095, 0.125) * s
    cord = rng.random() < 0.4
    extra = rng.uniform(0.04, 0.09) * s if cord else 0.0
    c = Canvas(W, H + extra)
    t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    taper = rng.uniform(0.05, 0.2)
    x = W / 2 + W / 2 * np.cos(t) * (1 + taper * np.sin(t)) / (1 + taper)
    y = extra + H / 2 + H / 2 * np.sin(t)
    shell = pick(rng, [(30, 30, 30), (60, 60, 65), (235, 235, 235), (180, 180, 185), (120, 60, 30), (40, 40, 140)])
    body = pts(np.stack([x, y], axis=1))
    if cord:
        curve = [(W / 2, extra + 4), (W / 2 + rng.uniform(-0.3, 0.3) * W, extra / 2), (rng.uniform(0, W), 0)]
        stroke(c, pts(curve), (30, 30, 30), 0.003 * s, a=255)
    fill(c, body, shell)
    line = mix(shell, (0, 0, 0), 0.45)
    stroke(c, pts([(W / 2, extra), (W / 2, extra + H * 0.4)]), line, 0.0008 * s)
    stroke(c, pts([(W * 0.08, extra + H * 0.42), (W / 2, extra + H * 0.4), (W * 0.92, extra + H * 0.42)]), line,
           0.0006 * s)
    fill(c, rrect(W * 0.44, extra + H * 0.1, W * 0.56, extra + H * 0.27, W * 0.05), (40, 40, 40), None)
    for k in range(5):
        yk = extra + H * (0.12 + 0.03 * k)
        stroke(c, pts([(W * 0.46, yk), (W * 0.54, yk)]), (90, 90, 90), 1)
    m = region(c, body)
    yy, xx = np.mgrid[0:c.h, 0:c.w].astype(np.float32)
    gx, gy = W * rng.uniform(0.3, 0.7), extra + H * rng.uniform(0.3, 0.6)
    gloss = np.exp(-(((xx - gx) / (W * 0.35)) ** 2 + ((yy - gy) / (H * 0.35)) ** 2))
    shade(c, 0.65 + 0.45 * gloss, m)
    glow(c, gloss ** 4, 40.0, m)
    grain(c, rng, 2.0)
    return c


def paint_monitor(rng: np.random.Generator, s: float) -> Canvas:
    """Flat screens lying on the belt: bezel and dark glass with the stand's neck and foot, or the back."""
    W = rng.uniform(0.26, 0.42) * s
    H = W * float(rng.choice([0.5625, 0.625, 0.75]))
    stand = rng.random() < 0.7
    neck = H * rng.uniform(0.15, 0.3) if stand else 0.0
    c = Canvas(W, H + neck + (H * 0.08 if stand else 0))
    shell = pick(rng, [(25, 25, 25), (45, 45, 48), (200, 200, 205), (120, 120, 125)], 6)
    if stand:
        fill(c, rrect(W * 0.45, H - 4, W * 0.55, H + neck, 3), mix(shell, (0, 0, 0), 0.1))
        fw = W * rng.uniform(0.25, 0.45)
        fill(c, rrect(W / 2 - fw / 2, H + neck - 2, W / 2 + fw / 2, c.h, H * 0.03), mix(shell, (255, 255, 255), 0.05))
    fill(c, rrect(0, 0, W, H, H * 0.015), shell)
    if rng.random() < 0.7:
        bez = H * rng.uniform(0.015, 0.06)
        _screen(c, bez, bez, W - bez, H - bez * rng.uniform(1, 2.5), 1, rng, 0.15)
        text(c, str(rng.choice(["SAMSUNG", "DELL", "LG", "AOC", "BenQ"])), W * 0.45, H - bez * 0.35,
             max(4.0, bez * 0.45), (150, 150, 150))
    else:
        for k in range(int(rng.integers(6, 14))):
            y = H * 0.1 + k * H * 0.02
            stroke(c, pts([(W * 0.3, y), (W * 0.7, y)]), mix(shell, (0, 0, 0), 0.5), max(2.0, H * 0.006))
        for dx in (-1, 1):
            for dy in (-1, 1):
                fill(c, ellipse(W / 2 + dx * H * 0.2, H * 0.55 + dy * H * 0.2, 3, 3), (10, 10, 10), None)
        stroke(c, rrect(W * 0.1, H * 0.35, W * 0.9, H * 0.9, H * 0.05), mix(shell, (255, 255, 255), 0.08), 2,
               closed=True)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.2))
    grain(c, rng, 2.0)
    return c


# --- other e-devices --------------------------------------------------------------------------------------

def _router(rng: np.random.Generator, s: float) -> Canvas:
    W, H = rng.uniform(0.14, 0.24) * s, rng.uniform(0.1, 0.16) * s
    ant = int(rng.integers(0, 5))
    al = rng.uniform(0.08, 0.15) * s if ant else 0.0
    c = Canvas(W, H + al)
    shell = pick(rng, [(25, 25, 25), (235, 235, 235), (60, 60, 60)], 6)
    for k in range(ant):
        x = W * (0.15 + 0.7 * k / max(ant - 1, 1))
        fill(c, rrect(x - 0.005 * s, 0, x + 0.005 * s, al + 4, 0.005 * s), mix(shell, (0, 0, 0), 0.2))
    fill(c, rrect(0, al, W, al + H, H * 0.08), shell)
    vent = mix(shell, (0, 0, 0), 0.5)
    for k in range(int(rng.integers(5, 12))):
        y = al + H * 0.2 + k * H * 0.05
        stroke(c, pts([(W * 0.2, y), (W * 0.8, y)]), vent, max(2.0, 0.0015 * s))
    for k in range(int(rng.integers(3, 8))):
        fill(c, ellipse(W * 0.15 + k * W * 0.07, al + H * 0.88, 0.0015 * s, 0.0015 * s),
             pick(rng, [(60, 220, 60), (230, 150, 40), (40, 150, 240)], 10), None)
    return c


def _remote(rng: np.random.Generator, s: float) -> Canvas:
    W, H = rng.uniform(0.04, 0.055) * s, rng.uniform(0.14, 0.22) * s
    c = Canvas(W, H)
    shell = pick(rng, [(25, 25, 25), (60, 60, 60), (200, 200, 200)], 6)
    fill(c, rrect(0, 0, W, H, W * 0.3), shell)
    b = W * 0.17
    fill(c, ellipse(W * 0.75, H * 0.06, b * 0.7, b * 0.7), (40, 40, 200), None)
    fill(c, ellipse(W / 2, H * 0.25, W * 0.3, W * 0.3), mix(shell, (255, 255, 255), 0.2), None)
    fill(c, ellipse(W / 2, H * 0.25, W * 0.12, W * 0.12), mix(shell, (255, 255, 255), 0.35), None)
    for k, tint in enumerate([(40, 40, 200), (40, 170, 40), (40, 200, 220), (200, 90, 40)]):
        fill(c, rrect(W * 0.12 + k * W * 0.2, H * 0.4, W * 0.12 + k * W * 0.2 + b, H * 0.42, 2), tint, None)
    for row in range(int(rng.integers(4, 7))):
        for col in range(3):
            x, y = W * 0.2 + col * W * 0.25, H * 0.5 + row * H * 0.07
            fill(c, ellipse(x, y, b * 0.55, b * 0.4), mix(shell, (255, 255, 255), 0.3), None)
    return c


def _charger(rng: np.random.Generator, s: float) -> Canvas:
    W, H = rng.uniform(0.035, 0.07) * s, rng.uniform(0.035, 0.08) * s
    pl = 0.018 * s
    c = Canvas(W, H + pl)
    shell = pick(rng, [(240, 240, 240), (25, 25, 25)], 5)
    round_pins = rng.random() < 0.5
    for side in (0.3, 0.7):
        x = W * side
        if round_pins:
            fill(c, rrect(x - 0.002 * s, 0, x + 0.002 * s, pl + 4, 0.002 * s), SILVER)
        else:
            fill(c, rrect(x - 0.001 * s, 0, x + 0.001 * s, pl + 4, 1), SILVER)
    fill(c, rrect(0, pl, W, H + pl, W * 0.12), shell)
    fill(c, rrect(W * 0.35, H * 0.85 + pl, W * 0.65, H * 0.95 + pl, 2), (15, 15, 15), None)
    text(c, str(rng.choice(["5V 2A", "20W", "USB-C", "65W"])), W * 0.15, pl + H * 0.5, W * 0.12,
         (120, 120, 120))
    return c


def _hdd(rng: np.random.Generator, s: float) -> Canvas:
    w_m, h_m = (0.102, 0.147) if rng.random() < 0.6 else (0.07, 0.1)
    W, H = w_m * s, h_m * s
    c = Canvas(W, H)
    fill(c, rrect(0, 0, W, H, W * 0.03), SILVER)
    fill(c, rrect(W * 0.1, H * 0.15, W * 0.9, H * 0.7, 2), pick(rng, [(240, 240, 240), (40, 40, 40)], 5), None)
    for k in range(5):
        stroke(c, pts([(W * 0.15, H * (0.25 + 0.08 * k)), (W * rng.uniform(0.4, 0.85), H * (0.25 + 0.08 * k))]),
               (110, 110, 110), max(2.0, 0.001 * s))
    for x, y in ((0.05, 0.04), (0.95, 0.04), (0.05, 0.96), (0.95, 0.96), (0.5, 0.85)):
        fill(c, ellipse(W * x, H * y, 0.002 * s, 0.002 * s), (90, 90, 90), None)
    shade(c, cylinder(c.w, dark=0.85, spec=0.1))
    return c


def paint_e_device(rng: np.random.Generator, s: float) -> Canvas:
    """Other e-waste: routers with antennas, remote controls, wall chargers, hard drives."""
    kind = int(rng.choice(4, p=[0.3, 0.3, 0.2, 0.2]))
    c = [_router, _remote, _charger, _hdd][kind](rng, s)
    shade(c, linear(c.h, c.w, rng.uniform(0, 2 * np.pi), 0.25))
    grain(c, rng, 2.5)
    return c


__all__ = ["paint_e_device", "paint_keyboard", "paint_laptop", "paint_monitor", "paint_mouse", "paint_phone"]
