"""Hot-path plumbing: bounded queues that drop the oldest item, and supervised worker threads."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Closed(Exception):
    """The queue was closed and is empty."""


class DropOldestQueue(Generic[T]):
    """A bounded queue. ``put`` never blocks the producer unless ``block`` is set: when full, the oldest
    item is dropped and counted (a camera must never wait for the detector)."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[T] = deque()
        self._max = maxsize
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: T, block: bool = False) -> None:
        with self._cv:
            while block and len(self._items) >= self._max and not self._closed:
                self._cv.wait(0.1)
            if len(self._items) >= self._max:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cv.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """The next item; None on timeout; raises Closed once closed and drained."""
        with self._cv:
            if not self._items and not self._closed:
                self._cv.wait(timeout)
            if self._items:
                item = self._items.popleft()
                self._cv.notify_all()
                return item
            if self._closed:
                raise Closed
            return None

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class Worker:
    """A named thread running ``target(worker)`` that beats a heartbeat; restarted by the Supervisor."""

    def __init__(self, name: str, target: Callable[[Worker], None]) -> None:
        self.name = name
        self._target = target
        self.heartbeat = time.monotonic()
        self.error: BaseException | None = None
        self.finished = False
        self.dead = False
        """Given up after too many restarts: not restarted until the supervisor's next try."""
        self.restarts = 0
        self.started_at = time.monotonic()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def start(self) -> None:
        self.error = None
        self.finished = False
        self.dead = False
        self.started_at = time.monotonic()
        self.beat()
        self._thread = threading.Thread(target=self._run, name=f"sortloop-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target(self)
            self.finished = True
        except BaseException as exc:  # a dead worker is reported to the supervisor, which restarts it
            self.error = exc
            log.exception("worker %s died", self.name)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class Supervisor:
    """Watches workers: restarts a dead one (at most ``limit`` per minute), reports stuck ones, and never gives
    up silently: past the limit a worker is ``dead`` (reported, the station stays in fail-safe) and is tried
    again every ``retry_dead_s``. A restarted worker counts as recovered once it has run ``settle_s``."""

    def __init__(self, workers: list[Worker], *, limit_per_min: int, stuck_after_s: float,
                 on_event: Callable[[str, Worker, str], None], retry_dead_s: float = 30.0,
                 settle_s: float = 2.0) -> None:
        self.workers = workers
        self._limit = limit_per_min
        self._stuck_after = stuck_after_s
        self._on_event = on_event
        self._retry_dead = retry_dead_s
        self._settle = settle_s
        self._restarts: dict[str, deque[float]] = {w.name: deque() for w in workers}
        self._stuck: set[str] = set()
        self._settling: set[str] = set()
        self._retry_at: dict[str, float] = {}

    def state(self, w: Worker) -> str:
        """finished, dead, stuck, restarting (restarted, not yet settled) or alive."""
        if w.finished:
            return "finished"
        if w.dead or (not w.alive and w.error is not None):
            return "dead"
        if w.name in self._stuck:
            return "stuck"
        if w.name in self._settling:
            return "restarting"
        return "alive" if w.alive else "stopped"

    def check(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.finished:
                continue
            if w.dead:
                if now >= self._retry_at.get(w.name, now):
                    self._revive(w, now)
            elif not w.alive and w.error is not None:
                self._restart(w, now)
            elif w.alive and now - w.heartbeat > self._stuck_after:
                if w.name not in self._stuck:
                    self._stuck.add(w.name)
                    self._on_event("stuck", w, f"no heartbeat for {now - w.heartbeat:.1f} s")
            elif w.name in self._stuck:
                self._stuck.discard(w.name)
                self._on_event("recovered", w, "heartbeat back")
            elif w.name in self._settling and w.alive and now - w.started_at >= self._settle:
                self._settling.discard(w.name)
                self._on_event("recovered", w, f"running again for {self._settle:g} s")

    def _restart(self, w: Worker, now: float) -> None:
        window = self._restarts[w.name]
        while window and now - window[0] > 60:
            window.popleft()
        reason = f"{type(w.error).__name__}: {w.error}"
        self._stuck.discard(w.name)
        if len(window) >= self._limit:
            w.dead = True
            self._settling.discard(w.name)
            self._retry_at[w.name] = now + self._retry_dead
            self._on_event("gave_up", w, f"{reason}; {self._limit} restarts in a minute, dead: tried again in "
                           f"{self._retry_dead:g} s")
            return
        window.append(now)
        w.restarts += 1
        self._settling.add(w.name)
        self._on_event("restarted", w, reason)
        w.start()

    def _revive(self, w: Worker, now: float) -> None:
        """A dead worker's next try, after ``retry_dead_s``: it starts with an empty restart window."""
        self._restarts[w.name].clear()
        self._restarts[w.name].append(now)
        w.restarts += 1
        self._settling.add(w.name)
        self._on_event("retrying", w, f"dead for {self._retry_dead:g} s, trying again")
        w.start()
