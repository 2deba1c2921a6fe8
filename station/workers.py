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
        self.restarts = 0
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def start(self) -> None:
        self.error = None
        self.finished = False
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
    """Watches workers: restarts a dead one (at most ``limit`` per minute) and reports stuck ones."""

    def __init__(self, workers: list[Worker], *, limit_per_min: int, stuck_after_s: float,
                 on_event: Callable[[str, Worker, str], None]) -> None:
        self.workers = workers
        self._limit = limit_per_min
        self._stuck_after = stuck_after_s
        self._on_event = on_event
        self._restarts: dict[str, deque[float]] = {w.name: deque() for w in workers}
        self._stuck: set[str] = set()

    def check(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.finished:
                continue
            if not w.alive and w.error is not None:
                self._restart(w, now)
            elif w.alive and now - w.heartbeat > self._stuck_after:
                if w.name not in self._stuck:
                    self._stuck.add(w.name)
                    self._on_event("stuck", w, f"no heartbeat for {now - w.heartbeat:.1f} s")
            elif w.name in self._stuck:
                self._stuck.discard(w.name)
                self._on_event("recovered", w, "heartbeat back")

    def _restart(self, w: Worker, now: float) -> None:
        window = self._restarts[w.name]
        while window and now - window[0] > 60:
            window.popleft()
        reason = f"{type(w.error).__name__}: {w.error}"
        if len(window) >= self._limit:
            if not w.finished:
                w.finished = True
                self._on_event("gave_up", w, f"{reason}; {self._limit} restarts in a minute, not restarting")
            return
        window.append(now)
        w.restarts += 1
        self._on_event("restarted", w, reason)
        w.start()
