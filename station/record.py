"""Record, then actuate: each decision durable before its command, none dropped, none fired late.

``Recorder.handle`` runs in the station's ``act`` worker for every routed decision:

1. While the spool holds anything, the decision joins it (order is kept) and its item rides to the fail-safe
   bin; otherwise the item and its pending actuation are committed. A store or evidence error spools the
   decision instead (fail-safe bin, critical alarm, retried with back-off by ``flush``).
2. A command that can no longer reach the actuator ``actuator.deadline_margin_s`` before its fire time is not
   sent: the item is recorded as missed, in the fail-safe bin; so is one decided while the station is in
   fail-safe for any reason but a failed command (a worker, the source, the actuator's link, the store).
3. The actuator gets the command with its deadline; the final status, and the bin the item really went to,
   are recorded (spooled if the store refuses).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from station.events import Actuation, ActuationStatus, Decision, Severity
from station.spool import Entry, Spool, SpooledMark, SpooledRecord
from station.store import DuplicateError, StoreError

if TYPE_CHECKING:
    from station.actuate import Actuator
    from station.config import StationConfig
    from station.metrics import StationMetrics
    from station.store import Store

log = logging.getLogger(__name__)

STORE_ERRORS: tuple[type[BaseException], ...] = (StoreError, SQLAlchemyError, OSError)
"""What a refusing store raises: its own errors, the database's, the evidence file system's."""

S = ActuationStatus
AlarmFn = Callable[[str, str, Severity, "str | None"], None]
FailsafeFn = Callable[[str, "str | None"], None]
"""``failsafe(key, detail)`` enters fail-safe for ``key``; ``failsafe(key, None)`` clears that reason."""


class Recorder:
    """The record → actuate stage, with its spool and its deadline rule."""

    def __init__(self, cfg: StationConfig, store: Store, actuator: Actuator, metrics: StationMetrics,
                 spool: Spool, *, alarm: AlarmFn, failsafe: FailsafeFn,
                 hold: Callable[[], str | None] = lambda: None) -> None:
        self.store, self.actuator, self.metrics, self.spool = store, actuator, metrics, spool
        self._alarm, self._failsafe, self._hold = alarm, failsafe, hold
        self.failsafe_bin = cfg.routing.failsafe_bin
        self._margin = cfg.actuator.deadline_margin_s
        self._rate_limit = cfg.actuator.missed_rate_limit
        self._recent: deque[bool] = deque(maxlen=cfg.actuator.missed_window)
        self._rate_alarmed = False
        self.missed = 0
        self.lost_seen = 0

    # -- one decision ----------------------------------------------------------------------------------
    def handle(self, d: Decision, a: Actuation) -> ActuationStatus:
        """Record and fire one decision; returns the status its actuation ends with."""
        self.flush()
        if len(self.spool):  # records wait: this one joins them, in order
            return self._spool_record(d, a, "not sent: the store is refusing writes (waiting in the spool)")
        late = self._late(a)
        if late is not None:
            return self._record_missed(d, a, f"missed-actuation: {late:.3f} s past its send deadline before it "
                                       "could be sent", "deadline")
        held = self._hold()
        if held is not None:
            return self._record_missed(d, a, f"not sent: station in fail-safe ({held})", "failsafe")
        try:
            self.store.record(d, a)  # durable before the actuator hears of it
        except DuplicateError:  # recorded before the act worker died and restarted: never fire it again
            self._mark(a, S.MISSED, "not sent: recorded before a worker restart", self.failsafe_bin)
            return S.MISSED
        except STORE_ERRORS as exc:
            return self._spool_record(d, a, f"not sent: the store refused the record ({_short(exc)})", exc)
        try:
            self.store.mark_actuation(a.actuation_id, S.SENDING)
        except STORE_ERRORS as exc:
            self._spool(SpooledMark(a.actuation_id, S.MISSED, f"not sent: the store refused its status "
                                    f"({_short(exc)})", self.failsafe_bin), exc)
            return self._count(S.MISSED, "store")
        return self._fire(d, a)

    def _fire(self, d: Decision, a: Actuation) -> ActuationStatus:
        from station.actuate import DeadlineMissed

        status, detail, item_bin = S.SENT, "", None
        try:
            self.actuator.fire(a, deadline_wall=a.fire_at_wall - self._margin)
            self._failsafe("actuator", None)
        except DeadlineMissed as exc:
            status, detail, item_bin = S.MISSED, f"missed-actuation: {exc}", self.failsafe_bin
        except Exception as exc:  # any actuator fault: keep the record, alarm, route to the fail-safe bin
            status, detail, item_bin = S.FAILED, str(exc), self.failsafe_bin
            self._failsafe("actuator", f"actuator failed for item {d.item_id}: {exc}")
        self._mark(a, status, detail, item_bin)
        return self._count(status, "deadline" if status is S.MISSED else "actuator")

    def _late(self, a: Actuation) -> float | None:
        """Seconds past the send deadline (fire time minus the margin), or None while there is time."""
        over = time.time() - (a.fire_at_wall - self._margin)
        return over if over >= 0 else None

    def _record_missed(self, d: Decision, a: Actuation, why: str, cause: str) -> ActuationStatus:
        detail = f"{why}; rode to {self.failsafe_bin}"
        try:
            self.store.record(d, a, S.MISSED, detail, self.failsafe_bin)
        except STORE_ERRORS as exc:
            self._spool(SpooledRecord(d, a, S.MISSED, detail, self.failsafe_bin), exc)
        return self._count(S.MISSED, cause)

    def _spool_record(self, d: Decision, a: Actuation, detail: str,
                      exc: BaseException | None = None) -> ActuationStatus:
        self._spool(SpooledRecord(d, a, S.MISSED, f"{detail}; rode to {self.failsafe_bin}", self.failsafe_bin), exc)
        return self._count(S.MISSED, "store")

    def _mark(self, a: Actuation, status: ActuationStatus, detail: str, item_bin: str | None) -> None:
        try:
            self.store.mark_actuation(a.actuation_id, status, detail, item_bin)
        except STORE_ERRORS as exc:
            self._spool(SpooledMark(a.actuation_id, status, detail, item_bin), exc)

    def _spool(self, entry: Entry, exc: BaseException | None) -> None:
        """Keep ``entry`` for later; the first store error enters fail-safe (after spooling, so the alarm
        waits in the spool behind it instead of blocking on the store)."""
        kept = self.spool.put(entry)
        if exc is not None:
            self.metrics.store_error()
            self._failsafe("store", f"store refused a write ({_short(exc)}); records kept in the spool, items to "
                           f"{self.failsafe_bin}")
        if not kept:
            self.metrics.record_lost()
            self._alarm("store.record_lost", f"spool full and no journal: a record is lost ({entry!r:.200})",
                        Severity.CRITICAL, None)

    def _count(self, status: ActuationStatus, cause: str) -> ActuationStatus:
        missed = status is not S.SENT
        if missed:
            self.missed += 1
            self.metrics.missed_actuation(cause)
        self._recent.append(missed)
        rate = sum(self._recent) / len(self._recent)
        if not self._rate_alarmed and len(self._recent) >= min(10, self._recent.maxlen or 10) \
                and rate > self._rate_limit:
            self._rate_alarmed = True
            self._alarm("actuator.missed_rate", f"{rate:.0%} of the last {len(self._recent)} commands not sent "
                        f"(limit {self._rate_limit:.0%}); their items rode to {self.failsafe_bin}",
                        Severity.CRITICAL, None)
        elif self._rate_alarmed and rate <= self._rate_limit / 2:
            self._rate_alarmed = False
        return status

    # -- the spool --------------------------------------------------------------------------------------
    def drain(self, within_s: float, beat: Callable[[], None], stop: threading.Event) -> None:
        """At the end of a finite source: give the store a little time to take what waits."""
        end = time.monotonic() + within_s
        while len(self.spool) and time.monotonic() < end and not stop.is_set():
            beat()
            self.flush()
            time.sleep(0.05)

    def flush(self) -> int:
        """Write what waits in the spool, when its back-off allows; lifts the store fail-safe once empty."""
        if not self.spool.due():
            return 0
        waiting = len(self.spool)
        written = self.spool.flush(self.store, STORE_ERRORS)
        if written:
            self.metrics.spool_written(written)
        if waiting and not len(self.spool):
            self._failsafe("store", None)
            self._alarm("store.recovered", f"store writable again: {written} spooled record(s), status change(s) "
                        "and alarm(s) written in order", Severity.INFO, None)
        return written


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"
