"""Routing: a Decision → the bin it goes to and when its ejector must fire."""

from __future__ import annotations

import logging
import time
from collections import deque

from station.config import RoutingConfig
from station.events import Actuation, Decision, new_id
from station.frames import Frame
from station.taxonomy import Stream

log = logging.getLogger(__name__)


class BeltSpeed:
    """Belt speed in m/s: from encoder ticks when the source has them, otherwise from config.

    The encoder speed is measured over a window (default 2 s) rather than frame to frame, so the rounding
    of integer ticks does not move far ejectors' fire times.
    """

    def __init__(self, cfg: RoutingConfig, window_s: float = 2.0) -> None:
        self._cfg = cfg
        self._window = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._mps: float | None = None

    def update(self, frame: Frame) -> None:
        if self._cfg.belt_speed_source != "encoder" or frame.ticks is None:
            return
        s = self._samples
        if s and frame.timestamp <= s[-1][0]:
            s.clear()  # the source restarted its clock
        s.append((frame.timestamp, frame.ticks))
        while len(s) > 2 and s[-1][0] - s[1][0] >= self._window:
            s.popleft()
        (t0, k0), (t1, k1) = s[0], s[-1]
        if t1 > t0:
            self._mps = (k1 - k0) / self._cfg.ticks_per_m / (t1 - t0)

    @property
    def mps(self) -> float:
        return self._mps if self._mps is not None and self._mps > 0 else self._cfg.belt_speed_mps

    @property
    def px_per_s(self) -> float:
        return max(self.mps * self._cfg.px_per_m, 1e-6)

    @property
    def ticks_per_s(self) -> float:
        return self.mps * self._cfg.ticks_per_m


class RoutingError(RuntimeError):
    """No bin takes the decision's stream (a configuration gap): the item goes to the fail-safe bin."""


class Router:
    """Maps a decision to its bin; hazards override the stream, faults and doubt go to the fail-safe bin."""

    def __init__(self, cfg: RoutingConfig, speed: BeltSpeed) -> None:
        self._cfg = cfg
        self._speed = speed
        self._by_stream: dict[Stream, str] = {}
        for name, b in cfg.bins.items():
            for s in b.streams:
                self._by_stream.setdefault(s, name)

    def bin_for(self, decision: Decision) -> str:
        if decision.needs_manual:  # doubt or fault, a suspected hazard included: a person looks
            return self._cfg.failsafe_bin
        if decision.hazard is not None:
            return self._cfg.hazard_bin
        name = self._by_stream.get(decision.stream)
        if name is None:
            log.warning("no bin takes stream %s; routing item %s to %s", decision.stream, decision.item_id,
                        self._cfg.failsafe_bin)
            return self._cfg.failsafe_bin
        return name

    def route(self, decision: Decision, now_wall: float | None = None, now_source: float | None = None) -> Actuation:
        """The ejector command for ``decision``; ``fire_at_wall`` maps the source clock onto wall time."""
        name = self.bin_for(decision)
        b = self._cfg.bins[name]
        fire_at = decision.crossed_at + b.distance_m / self._speed.mps
        ticks = None
        if decision.crossed_ticks is not None:
            ticks = decision.crossed_ticks + round(b.distance_m * self._cfg.ticks_per_m)
        wall = time.time() if now_wall is None else now_wall
        src = decision.crossed_at if now_source is None else now_source
        return Actuation(
            actuation_id=new_id(), item_id=decision.item_id, bin=name, channel=b.channel,
            fire_at=fire_at, fire_at_ticks=ticks, fire_at_wall=wall + (fire_at - src),
        )
