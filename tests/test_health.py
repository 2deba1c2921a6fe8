"""One health model: the level is the worst reason, and a reason is there only while its cause is."""

from __future__ import annotations

from collections import deque

import pytest

from station.health import HealthInputs, Level, assess, growth_within


@pytest.mark.parametrize(("inputs", "level", "codes"), [
    (HealthInputs(running=True), Level.OK, []),
    (HealthInputs(running=False), Level.FAILING, ["stopped"]),
    (HealthInputs(running=True, failsafe={"store": "locked"}), Level.FAILING, ["failsafe.store"]),
    (HealthInputs(running=True, workers={"act": "dead", "capture": "alive"}), Level.FAILING, ["worker.act.dead"]),
    (HealthInputs(running=True, workers={"detect-1": "restarting"}), Level.DEGRADED, ["worker.detect-1.restarting"]),
    (HealthInputs(running=True, workers={"act": "stuck"}), Level.FAILING, ["worker.act.stuck"]),
    (HealthInputs(running=True, actuator_connected=False), Level.DEGRADED, ["actuator.disconnected"]),
    (HealthInputs(running=True, spool=3, store_error="locked"), Level.FAILING, ["store.spool"]),
    (HealthInputs(running=True, records_lost_recent=1), Level.FAILING, ["store.lost"]),
    (HealthInputs(running=True, dropped_recent=4), Level.DEGRADED, ["frames.dropped"]),
    (HealthInputs(running=True, latency_p99_s=1.5, latency_limit_s=1.0), Level.DEGRADED, ["latency"]),
    (HealthInputs(running=True, latency_p99_s=0.5, latency_limit_s=1.0), Level.OK, []),
    (HealthInputs(running=True, source_ok=False, dropped_recent=1), Level.FAILING, ["source.lost", "frames.dropped"]),
])
def test_assess(inputs: HealthInputs, level: Level, codes: list[str]) -> None:
    h = assess(inputs)
    assert h.level is level and [r.code for r in h.reasons] == codes
    assert h.ok is (level is not Level.FAILING)
    assert (h.last_error is None) is (not codes)


def test_growth_within_forgets_what_is_older_than_the_window() -> None:
    marks = deque([(0.0, 0)])
    assert growth_within(marks, 0, 1.0, 60) == 0
    assert growth_within(marks, 3, 10.0, 60) == 3
    assert growth_within(marks, 5, 50.0, 60) == 5
    assert growth_within(marks, 5, 69.0, 60) == 5   # at t=9 (the window start) the total was 0
    assert growth_within(marks, 5, 71.0, 60) == 2   # the 3 of t=10 fell out of the window
    assert growth_within(marks, 5, 200.0, 60) == 0
