"""Bounded queues drop the oldest frame and count it; dead workers are restarted with a cap."""

from __future__ import annotations

import threading
import time

import pytest

from station.workers import Closed, DropOldestQueue, Supervisor, Worker


def test_queue_drops_oldest_and_counts() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(3)
    for i in range(5):
        q.put(i)
    assert q.dropped == 2
    assert [q.get(0), q.get(0), q.get(0)] == [2, 3, 4]
    assert q.get(0.01) is None
    q.close()
    with pytest.raises(Closed):
        q.get(0)


def test_blocking_put_loses_nothing() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(2)
    got: list[int] = []

    def consume() -> None:
        while True:
            try:
                item = q.get(0.5)
            except Closed:
                return
            if item is not None:
                got.append(item)
                time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(100):
        q.put(i, block=True)
    q.close()
    t.join(5)
    assert got == list(range(100)) and q.dropped == 0


def _wait(pred, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_dead_worker_restarted_then_given_up() -> None:
    runs = []

    def target(w: Worker) -> None:
        runs.append(1)
        raise RuntimeError("boom")

    events: list[tuple[str, str]] = []
    w = Worker("x", target)
    sup = Supervisor([w], limit_per_min=2, stuck_after_s=10, on_event=lambda k, wk, d: events.append((k, d)))
    w.start()
    for _ in range(4):
        assert _wait(lambda: not w.alive)
        sup.check()
    assert [k for k, _ in events] == ["restarted", "restarted", "gave_up"]
    assert "RuntimeError: boom" in events[0][1]
    assert len(runs) == 3


def test_stuck_worker_reported_and_recovered() -> None:
    release = threading.Event()

    def target(w: Worker) -> None:
        release.wait(5)
        w.beat()
        time.sleep(0.2)

    events: list[str] = []
    w = Worker("slow", target)
    sup = Supervisor([w], limit_per_min=1, stuck_after_s=0.05, on_event=lambda k, wk, d: events.append(k))
    w.start()
    time.sleep(0.1)
    sup.check()
    release.set()
    assert _wait(lambda: time.monotonic() - w.heartbeat < 0.05)
    sup.check()
    assert events == ["stuck", "recovered"]


def test_a_worker_past_the_limit_is_dead_then_tried_again() -> None:
    fail = threading.Event()
    fail.set()

    def target(w: Worker) -> None:
        if fail.is_set():
            raise RuntimeError("store gone")
        while True:
            w.beat()
            time.sleep(0.01)

    events: list[str] = []
    w = Worker("act", target)
    sup = Supervisor([w], limit_per_min=1, stuck_after_s=10, retry_dead_s=0.2, settle_s=0.05,
                     on_event=lambda k, wk, d: events.append(k))
    w.start()
    assert _wait(lambda: not w.alive)
    sup.check()                                  # restarted (1 of 1 a minute)
    assert _wait(lambda: not w.alive)
    sup.check()                                  # past the limit: dead, not finished
    assert sup.state(w) == "dead" and not w.finished
    fail.clear()
    sup.check()
    assert sup.state(w) == "dead"                # not before retry_dead_s
    time.sleep(0.25)
    sup.check()                                  # tried again
    assert sup.state(w) == "restarting" and w.alive
    time.sleep(0.1)
    sup.check()
    assert sup.state(w) == "alive"
    assert events == ["restarted", "gave_up", "retrying", "recovered"]
