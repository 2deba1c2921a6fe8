"""One health model for /health, /metrics and the console: ok, degraded or failing, with the reasons.

Reasons are computed afresh from the station's current state each time, so an error is gone from the report
as soon as its cause is: nothing stale is carried.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from station.actuate import Actuator

log = logging.getLogger(__name__)


class Level(IntEnum):
    OK = 0
    DEGRADED = 1
    """Working, with a weakness an operator should see (a restarting worker, drops, slow commands)."""
    FAILING = 2
    """Not sorting as configured: fail-safe, a dead or stuck worker, the store refusing writes, no source."""

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Reason:
    code: str
    """Stable, for metrics and alert rules: e.g. failsafe.store, worker.act.dead, frames.dropped."""
    level: Level
    message: str


@dataclass(frozen=True)
class Health:
    level: Level
    reasons: tuple[Reason, ...] = ()

    @property
    def ok(self) -> bool:
        """Serve HTTP 200 (ok or degraded); failing is 503."""
        return self.level is not Level.FAILING

    @property
    def last_error(self) -> str | None:
        """The current problems, worst first; None when there are none."""
        return "; ".join(r.message for r in self.reasons) or None


@dataclass(frozen=True)
class HealthInputs:
    """What the station knows about itself at one moment."""

    running: bool
    source_ok: bool = True
    failsafe: dict[str, str] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    actuator_connected: bool = True
    spool: int = 0
    store_error: str = ""
    records_lost_recent: int = 0
    dropped_recent: int = 0
    latency_p99_s: float | None = None
    latency_limit_s: float = 1.0


def assess(i: HealthInputs) -> Health:
    """The level is the worst of the reasons; reasons are sorted worst first."""
    reasons: list[Reason] = []
    fail, degrade = Level.FAILING, Level.DEGRADED
    if not i.running:
        reasons.append(Reason("stopped", fail, "the station is not running"))
    if not i.source_ok:
        reasons.append(Reason("source.lost", fail, "the source delivers no frames"))
    reasons += [Reason(f"failsafe.{key}", fail, f"fail-safe: {detail}") for key, detail in sorted(i.failsafe.items())]
    for name, state in sorted(i.workers.items()):
        if state in ("dead", "stuck"):
            reasons.append(Reason(f"worker.{name}.{state}", fail, f"worker {name} is {state}"))
        elif state == "restarting":
            reasons.append(Reason(f"worker.{name}.restarting", degrade, f"worker {name} is restarting"))
    if i.spool:
        why = f": {i.store_error}" if i.store_error else ""
        reasons.append(Reason("store.spool", fail, f"{i.spool} record(s) waiting for the store{why}"))
    if i.records_lost_recent:
        reasons.append(Reason("store.lost", fail, f"{i.records_lost_recent} record(s) lost in the last "
                              "5 minutes (spool full, no journal)"))
    if not i.actuator_connected:
        reasons.append(Reason("actuator.disconnected", degrade, "the actuator is not connected"))
    if i.dropped_recent:
        reasons.append(Reason("frames.dropped", degrade, f"{i.dropped_recent} frame(s) dropped in the last minute"))
    if i.latency_p99_s is not None and i.latency_p99_s > i.latency_limit_s:
        reasons.append(Reason("latency", degrade, f"p99 frame-to-command latency {i.latency_p99_s:.2f} s "
                              f"> {i.latency_limit_s:g} s"))
    reasons.sort(key=lambda r: -r.level)
    return Health(max((r.level for r in reasons), default=Level.OK), tuple(reasons))


def growth_within(marks: deque[tuple[float, int]], total: int, now: float, window_s: float) -> int:
    """How much a running ``total`` grew over the last ``window_s``. ``marks`` holds (time, total) samples,
    seeded with the start (time, 0); a sample is added when the total changes, old ones are let go."""
    if marks[-1][1] != total:
        marks.append((now, total))
    while len(marks) > 1 and marks[1][0] <= now - window_s:
        marks.popleft()
    return total - marks[0][1]


def probe(actuator: Actuator) -> bool:
    """The actuator's ``healthy()``; one that raises is a link that is not there."""
    try:
        return bool(actuator.healthy())
    except Exception as exc:  # any error of the probe itself
        log.warning("actuator health probe failed: %s", exc)
        return False


@dataclass(frozen=True)
class StatusSnapshot:
    """What the running station reports about itself."""

    running: bool
    source_ok: bool
    model_version: str | None = None
    classifier_version: str | None = None
    fps: float = 0.0
    frames: int = 0
    dropped: int = 0
    decisions: int = 0
    workers: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None
    started_at: float | None = None
    status: str = "ok"
    """The health model's level (station.health): ok, degraded or failing."""
    reasons: list[str] = field(default_factory=list)
    spool: int = 0
    missed_actuations: int = 0
    corrupt_frames: int = 0
