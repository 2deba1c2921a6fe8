"""The conveyor simulator: a moving belt with arriving items, rendered frame by frame, with ground truth.

The belt moves left → right (+x). Items arrive as a Poisson process and enter from the left edge; each is
drawn once at arrival and then only composited at its belt position on every frame, which keeps the
simulator fast. ``truth`` records every item that has arrived, for the scorecard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from station.config import SimulatorConfig
from station.frames import Frame
from station.simulator._paint import resize
from station.simulator.items import ItemMaker, Sprite
from station.simulator.scene import Light, Patch, belt_texture, make_patch, paste
from station.taxonomy import Stream, Taxonomy

log = logging.getLogger(__name__)

LOOKAHEAD_S = 1.0
"""Items are scheduled this far ahead of the frame being rendered (they are still off-screen then)."""
GAP_PX = 12.0
"""Clear space kept between items that do not touch."""


class SimulatorError(ValueError):
    """The simulator configuration cannot be used; the message names the setting and the fix."""


@dataclass(frozen=True)
class TruthItem:
    """Ground truth of one simulated item: what it is and where it is on the belt at any time."""

    item_id: int
    class_name: str
    stream: Stream
    hazard: str | None
    y_px: float
    """Centre of the item across the belt (image y, px)."""
    width_px: float
    height_px: float
    entered_at: float
    """Time (s) at which the item's right edge is at the left edge of the image."""
    line_time: float
    """Time (s) at which the item's centre crosses the decision line."""
    belt_speed_mps: float = 0.5
    px_per_m: float = 1000.0

    @property
    def speed_px_s(self) -> float:
        return self.belt_speed_mps * self.px_per_m

    def box_at(self, t: float) -> tuple[float, float, float, float]:
        """The item's box (x0, y0, x1, y1) in image pixels at time ``t``."""
        x1 = (t - self.entered_at) * self.speed_px_s
        return (x1 - self.width_px, self.y_px - self.height_px / 2, x1, self.y_px + self.height_px / 2)

    def ejector_time(self, distance_m: float) -> float:
        """When the item reaches an ejector ``distance_m`` downstream of the decision line."""
        return self.line_time + distance_m / self.belt_speed_mps


@dataclass
class _OnBelt:
    truth: TruthItem
    patch: Patch


class ConveyorSimulator:
    """Frames of a belt carrying items past the camera; ``iter(sim)`` yields them forever."""

    def __init__(self, cfg: SimulatorConfig, taxonomy: Taxonomy, line_x: float = 0.5) -> None:
        if not 0 < line_x < 1:
            raise SimulatorError(f"line_x must be within (0, 1) (a fraction of the frame width), got {line_x}")
        classes = list(cfg.classes) if cfg.classes else list(taxonomy.names)
        unknown = [c for c in classes if c not in taxonomy]
        if unknown:
            raise SimulatorError(f"simulator.classes: {unknown} not in the taxonomy; use some of {taxonomy.names}")
        self.cfg = cfg
        self.taxonomy = taxonomy
        self.line_x = line_x
        self.maker = ItemMaker(classes, cfg.sprites)
        self.rng = np.random.default_rng(cfg.seed)
        self.speed_px_s = cfg.belt_speed_mps * cfg.px_per_m
        self.rails = max(4, round(cfg.height * 0.04))
        self.blur_px = round(cfg.motion_blur * self.speed_px_s / cfg.fps)
        self.light: Light | None = Light.random(self.rng)
        """Shadow direction of every item; None draws items without shadows."""
        tex = belt_texture(cfg.width, cfg.height, self.rng, rails=0, periodic=True)
        self._belt = self._prepare_belt(tex)
        self.truth: list[TruthItem] = []
        self._on_belt: list[_OnBelt] = []
        self._next_arrival = float(self.rng.exponential(60.0 / cfg.items_per_min))
        self._index = 0

    def _prepare_belt(self, tex: np.ndarray) -> np.ndarray:
        """Blur the periodic texture along the travel and lay two copies side by side for scrolling."""
        w = self.cfg.width
        if self.blur_px > 1:
            k = self.blur_px
            wide = cv2.blur(np.hstack([tex[:, -k:], tex, tex[:, :k]]), (k, 1))
            tex = wide[:, k:k + w]
        ext = np.ascontiguousarray(np.hstack([tex, tex]))
        r = self.rails
        prof = np.linspace(0.7, 1.1, r, dtype=np.float32)
        steel = (np.asarray((150, 150, 155), np.float32)[None, :] * prof[:, None]).astype(np.uint8)
        ext[:r] = steel[:, None, :]
        ext[-r:] = steel[::-1][:, None, :]
        return ext

    # --- arrivals -----------------------------------------------------------------------------------------

    @property
    def belt_top(self) -> int:
        return self.rails

    @property
    def belt_bottom(self) -> int:
        return self.cfg.height - self.rails

    def _sprite(self, name: str) -> Sprite:
        sp = self.maker.draw(name, self.rng, self.cfg.px_per_m)
        room = 0.95 * (self.belt_bottom - self.belt_top)
        if sp.height > room:
            f = room / sp.height
            img, alpha = resize(sp.image, sp.alpha, max(1, round(sp.width * f)), max(1, round(sp.height * f)))
            sp = Sprite(image=img, alpha=alpha, class_name=name)
        return sp

    def _free_y(self, w: float, h: float, te: float) -> tuple[float, float]:
        """A lateral position clear of items still near the entry, delaying the entry when none is free."""
        lo, hi = self.belt_top + h / 2, self.belt_bottom - h / 2
        for _ in range(8):
            blockers = [it.truth for it in self._on_belt if it.truth.box_at(te)[0] < GAP_PX]
            for _ in range(20):
                y = float(self.rng.uniform(lo, max(lo, hi)))
                if all(abs(y - b.y_px) > (h + b.height_px) / 2 + GAP_PX for b in blockers):
                    return y, te
            te += max((GAP_PX - b.box_at(te)[0]) / self.speed_px_s for b in blockers) + 1e-3
        return float(self.rng.uniform(lo, max(lo, hi))), te

    def _touching(self, w: float, h: float, now: float) -> tuple[float, float] | None:
        """Place the new item against the previous one (a little box overlap), if it is not yet in view."""
        if not self._on_belt or self.rng.random() >= self.cfg.touching_prob:
            return None
        prev = self._on_belt[-1].truth
        te = prev.entered_at + (prev.width_px - 0.1 * min(w, prev.width_px)) / self.speed_px_s
        if te < now:
            return None
        lo, hi = self.belt_top + h / 2, self.belt_bottom - h / 2
        y = prev.y_px + float(self.rng.uniform(-0.5, 0.5)) * (prev.height_px + h) / 2
        return float(np.clip(y, lo, max(lo, hi))), te

    def _spawn(self, arrival: float, now: float) -> float:
        names = self.maker.classes
        name = names[int(self.rng.integers(len(names)))]
        sprite = self._sprite(name)
        w, h = float(sprite.width), float(sprite.height)
        placed = self._touching(w, h, now)
        y, te = placed if placed is not None else self._free_y(w, h, max(arrival, now))
        j = self.cfg.lighting_jitter
        level = 1 + j * float(self.rng.uniform(-1, 1))
        gain = tuple(level * (1 + j * 0.3 * float(self.rng.uniform(-1, 1))) for _ in range(3))
        patch = make_patch(sprite, gain=(gain[0], gain[1], gain[2]), light=self.light, px_per_m=self.cfg.px_per_m,
                           blur_px=self.blur_px)
        truth = TruthItem(item_id=len(self.truth), class_name=name, stream=self.taxonomy.stream_of(name),
                          hazard=self.taxonomy.hazard_of(name), y_px=y, width_px=w, height_px=h, entered_at=te,
                          line_time=te + (self.line_x * self.cfg.width + w / 2) / self.speed_px_s,
                          belt_speed_mps=self.cfg.belt_speed_mps, px_per_m=self.cfg.px_per_m)
        self.truth.append(truth)
        self._on_belt.append(_OnBelt(truth, patch))
        return te

    def _advance(self, t: float) -> None:
        while self._next_arrival <= t + LOOKAHEAD_S:
            te = self._spawn(self._next_arrival, t)
            self._next_arrival = max(self._next_arrival, te) + float(
                self.rng.exponential(60.0 / self.cfg.items_per_min))
        self._on_belt = [it for it in self._on_belt if it.truth.box_at(t)[0] - it.patch.ox <= self.cfg.width]

    # --- frames -------------------------------------------------------------------------------------------

    def background(self, t: float) -> np.ndarray:
        """The empty belt at time ``t`` (a new array)."""
        w = self.cfg.width
        start = (-round(self.speed_px_s * t)) % w
        return self._belt[:, start:start + w].copy()

    def render(self, t: float) -> np.ndarray:
        """The image at time ``t`` (items scheduled so far; call in increasing time)."""
        frame = self.background(t)
        for it in self._on_belt:
            x0, y0, _, _ = it.truth.box_at(t)
            if x0 + it.truth.width_px + it.patch.ox < 0:
                continue
            paste(frame, it.patch, round(x0) - it.patch.ox, round(y0) - it.patch.oy)
        return frame

    def read(self) -> Frame:
        """The next frame: index k at timestamp k / fps, with the encoder count of the belt travel."""
        k = self._index
        t = k / self.cfg.fps
        self._advance(t)
        image = self.render(t)
        self._index += 1
        ticks = int(self.cfg.belt_speed_mps * t * self.cfg.ticks_per_m)
        return Frame(image=image, index=k, timestamp=t, ticks=ticks, source="simulator")

    def time_at_ticks(self, ticks: int) -> float:
        """When the encoder reaches ``ticks``: the moment a PLC firing on that count ejects."""
        return ticks / (self.cfg.ticks_per_m * self.cfg.belt_speed_mps)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            yield self.read()
