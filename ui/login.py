"""Logins that cannot be abused: back-off after failures (per user and per address) and a bounded pool
for password hashing.

``LoginGuard`` counts failed logins per user name and per client address; after
``security.login_backoff_after`` failures each further try must wait ``login_backoff_s`` × 2^k (capped),
refused meanwhile with 429 and Retry-After without computing a hash. ``HashPool`` runs argon2 (64 MiB,
a few hundred ms) on ``security.hash_workers`` threads at a lowered scheduling priority; logins beyond
``hash_queue`` waiting are answered 503: a flood queues instead of taking the frame loop's CPU and memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from station.config import SecurityConfig

log = logging.getLogger(__name__)
MAX_TRACKED = 10_000  # names and addresses remembered; beyond, the oldest are forgotten


class ThrottledError(Exception):
    """Too many failed logins: wait ``retry_after_s`` (HTTP 429)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BusyError(Exception):
    """Too many logins wait for a hash worker (HTTP 503)."""


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class LoginGuard:
    """Back-off after failed logins, per user name and per client address (in memory)."""

    def __init__(self, cfg: SecurityConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self._lock = threading.Lock()
        self._seen: dict[str, _Failures] = {}

    def _wait(self, key: str, now: float) -> float:
        f = self._seen.get(key)
        if f is None or f.count < self.cfg.login_backoff_after:
            return 0.0
        delay = min(self.cfg.login_backoff_s * 2 ** (f.count - self.cfg.login_backoff_after),
                    self.cfg.login_backoff_max_s)
        return max(0.0, f.last + delay - now)

    def check(self, username: str, address: str) -> None:
        """Raise ``ThrottledError`` while the user name or the address must wait."""
        now = self.clock()
        with self._lock:
            wait = max(self._wait(f"user:{username.lower()}", now), self._wait(f"addr:{address}", now))
        if wait > 0:
            raise ThrottledError(f"too many failed logins; wait {wait:.0f} s before trying again", wait)

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"user:{username.lower()}", f"addr:{address}"):
                f = self._seen.pop(key, None) or _Failures()
                f.count, f.last = f.count + 1, now
                self._seen[key] = f  # re-inserted: the dict stays ordered oldest first
            while len(self._seen) > MAX_TRACKED:
                self._seen.pop(next(iter(self._seen)))

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._seen.pop(f"user:{username.lower()}", None)
            self._seen.pop(f"addr:{address}", None)

    def failures(self, username: str) -> int:
        with self._lock:
            f = self._seen.get(f"user:{username.lower()}")
            return 0 if f is None else f.count


def _lower_priority(nice: int) -> Callable[[], None]:
    def init() -> None:
        try:  # Linux: a thread has its own niceness (its thread id is a process id to setpriority)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except (OSError, AttributeError) as exc:
            log.warning("hash worker keeps its priority: %s", exc)

    return init


class HashPool:
    """Password hashing on a few low-priority threads, with a bounded queue."""

    def __init__(self, workers: int = 1, queue: int = 32, nice: int = 10) -> None:
        self.limit = workers + queue
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hash", initializer=_lower_priority(nice))
        self._lock = threading.Lock()
        self._pending = 0

    def run(self, fn: Callable[[], bool]) -> bool:
        """``fn()`` on a hash worker; ``BusyError`` when too many wait already."""
        with self._lock:
            if self._pending >= self.limit:
                raise BusyError("the station is busy checking other logins; try again in a few seconds")
            self._pending += 1
        try:
            return self._pool.submit(fn).result()
        finally:
            with self._lock:
                self._pending -= 1

    @property
    def pending(self) -> int:
        return self._pending

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
