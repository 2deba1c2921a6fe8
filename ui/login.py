"""Logins that cannot be abused: back-off after failures (per user and per address) and a bounded pool
for password hashing.

``LoginGuard`` counts failed logins per user name and per client address; after
``security.login_backoff_after`` failures each further try must wait ``login_backoff_s`` × 2^k (capped),
refused meanwhile with 429 and Retry-After without computing a hash. Logins still being checked count
as failures in advance, so 40 parallel tries from one address do not all pass the check before the first
failure is known. ``HashPool`` runs argon2 (``ui.passwords``: 19 MiB, one lane) in ``security.hash_workers``
separate worker processes at niceness ``hash_nice``, each starting at most one hash per ``hash_interval_s``;
logins beyond ``hash_queue`` waiting are answered 503: a flood queues instead of taking the frame loop's CPU,
memory or interpreter lock.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TypeVar

from station.config import SecurityConfig

log = logging.getLogger(__name__)
MAX_TRACKED = 10_000  # names and addresses remembered; beyond, the oldest are forgotten
T = TypeVar("T")


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
        self._checking: collections.Counter[str] = collections.Counter()  # logins being checked now

    def _wait(self, key: str, now: float) -> float:
        f = self._seen.get(key)
        failures = 0 if f is None else f.count
        if failures + self._checking[key] >= self.cfg.login_backoff_after > failures:
            return self.cfg.login_backoff_s  # the tries in flight would reach the limit: wait for their answer
        if f is None or f.count < self.cfg.login_backoff_after:
            return 0.0
        delay = min(self.cfg.login_backoff_s * 2 ** (f.count - self.cfg.login_backoff_after),
                    self.cfg.login_backoff_max_s)
        return max(0.0, f.last + delay - now)

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        return f"user:{username.lower()}", f"addr:{address}"

    def check(self, username: str, address: str) -> None:
        """Raise ``ThrottledError`` while the user name or the address must wait; otherwise count the try as
        being checked until ``failed``, ``succeeded`` or ``release``."""
        now = self.clock()
        keys = self._keys(username, address)
        with self._lock:
            wait = max(self._wait(key, now) for key in keys)
            if wait <= 0:
                self._checking.update(keys)
        if wait > 0:
            raise ThrottledError(f"too many failed logins; wait {max(wait, 1):.0f} s before trying again", wait)

    def release(self, username: str, address: str) -> None:
        """The try ``check`` admitted has an answer (or none will come): it no longer counts in advance."""
        with self._lock:
            for key in self._keys(username, address):
                if self._checking[key] > 0:
                    self._checking[key] -= 1
                if self._checking[key] <= 0:
                    del self._checking[key]

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        self.release(username, address)
        with self._lock:
            for key in self._keys(username, address):
                f = self._seen.pop(key, None) or _Failures()
                f.count, f.last = f.count + 1, now
                self._seen[key] = f  # re-inserted: the dict stays ordered oldest first
            while len(self._seen) > MAX_TRACKED:
                self._seen.pop(next(iter(self._seen)))

    def succeeded(self, username: str, address: str) -> None:
        self.release(username, address)
        with self._lock:
            self._seen.pop(f"user:{username.lower()}", None)
            self._seen.pop(f"addr:{address}", None)

    def failures(self, username: str) -> int:
        with self._lock:
            f = self._seen.get(f"user:{username.lower()}")
            return 0 if f is None else f.count


def _lower_priority(nice: int) -> None:
    """A hash process's initializer: lower its priority (its argon2 threads inherit it)."""
    try:
        os.nice(nice)
    except OSError as exc:  # pragma: no cover - only without permission to change niceness
        log.warning("hash worker keeps its priority: %s", exc)


_next_start = 0.0  # in a hash process: when its next hash may start (monotonic)


def paced(interval_s: float, fn: Callable[..., T], *args: object) -> T:
    """In a hash process: ``fn(*args)``, started at least ``interval_s`` after the previous job started, so a
    flood of logins takes a bounded share of the CPU (a login without a flood does not wait)."""
    global _next_start
    wait = _next_start - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    _next_start = time.monotonic() + interval_s
    return fn(*args)


_executors: dict[tuple[int, int], ProcessPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor(workers: int, nice: int) -> ProcessPoolExecutor:
    """The process's hash workers for (workers, nice), started at first use and shared by every pool."""
    with _executors_lock:
        pool = _executors.get((workers, nice))
        if pool is None:
            # spawn, not fork: the station's process has camera, inference and web threads. A spawned worker
            # imports the program's main module again: it must keep its work under `if __name__ == "__main__"`
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_lower_priority, initargs=(nice,))
            _executors[(workers, nice)] = pool
        return pool


def _drop_executor(workers: int, nice: int, broken: ProcessPoolExecutor) -> None:
    with _executors_lock:
        if _executors.get((workers, nice)) is broken:
            del _executors[(workers, nice)]
    broken.shutdown(wait=False, cancel_futures=True)


class HashPool:
    """Password hashing in low-priority worker processes, with a bounded queue."""

    def __init__(self, workers: int = 1, queue: int = 32, nice: int = 10, interval_s: float = 0.0) -> None:
        self.workers, self.nice, self.limit, self.interval_s = workers, nice, workers + queue, interval_s
        self._lock = threading.Lock()
        self._pending = 0

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a hash process (``fn`` a module-level function, the arguments picklable);
        ``BusyError`` when too many wait already or the worker died (it is restarted for the next login)."""
        with self._lock:
            if self._pending >= self.limit:
                raise BusyError("the station is busy checking other logins; try again in a few seconds")
            self._pending += 1
        try:
            executor = _executor(self.workers, self.nice)
            try:
                return executor.submit(paced, self.interval_s, fn, *args).result()
            except BrokenProcessPool:
                log.error("the password hash worker died; starting a new one")
                _drop_executor(self.workers, self.nice, executor)
                raise BusyError("the login check was interrupted; try again in a few seconds") from None
        finally:
            with self._lock:
                self._pending -= 1

    @property
    def pending(self) -> int:
        return self._pending
