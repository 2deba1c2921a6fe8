"""The spool: what the store refused, kept in order until it takes it again.

A decision whose record fails (database locked or full, evidence folder unwritable), a status change that
could not be written and an alarm that could not be stored wait here: in memory first (bounded), then in a
fallback journal file (JSON lines, another path) when one is configured. ``flush`` writes them in order with
back-off; a write that had gone through before its error (a duplicate) counts as written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.events import Actuation, ActuationStatus, Alarm, Decision, Reason, Severity
from station.taxonomy import Stream

if TYPE_CHECKING:
    from station.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledRecord:
    """A decision not yet durable: recorded with ``status`` (never sent) and the bin the item went to."""

    decision: Decision
    actuation: Actuation
    status: ActuationStatus
    detail: str
    item_bin: str

    def apply(self, store: Store) -> None:
        from station.store import DuplicateError

        try:
            store.record(self.decision, self.actuation, self.status, self.detail, self.item_bin)
        except DuplicateError:  # recorded before the error (or by a worker that died): reconcile its status
            SpooledMark(self.actuation.actuation_id, self.status, self.detail, self.item_bin).apply(store)


@dataclass(frozen=True)
class SpooledMark:
    """A status change of a durable actuation that the store refused."""

    actuation_id: str
    status: ActuationStatus
    detail: str
    item_bin: str | None

    def apply(self, store: Store) -> None:
        from station.store import FinalStatusError

        try:
            store.mark_actuation(self.actuation_id, self.status, self.detail, self.item_bin)
        except FinalStatusError as exc:  # sent or missed already: that is what happened
            log.info("spooled status %s of actuation %s not applied: %s", self.status.value, self.actuation_id, exc)


@dataclass(frozen=True)
class SpooledAlarm:
    alarm: Alarm

    def apply(self, store: Store) -> None:
        from station.store import DuplicateError

        with contextlib.suppress(DuplicateError):
            store.add_alarm(self.alarm)


Entry = SpooledRecord | SpooledMark | SpooledAlarm


class Spool:
    """Bounded, ordered, thread-safe. ``put`` returns False when an entry could be kept nowhere (counted in
    ``lost``); ``flush(store)`` writes entries in order until one fails, then waits with back-off."""

    def __init__(self, size: int, keep_crops: int, journal: Path | None = None, *, retry_initial_s: float = 0.5,
                 retry_max_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._memory: deque[Entry] = deque()
        self._size, self._keep_crops, self._journal = size, keep_crops, journal
        self._in_journal = 0
        self._crops = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._retry_initial, self._retry_max, self._clock = retry_initial_s, retry_max_s, clock
        self._delay = retry_initial_s
        self._next_try = 0.0
        self.lost = 0
        self.crops_dropped = 0
        self.last_error = ""
        if journal is not None and journal.is_file():
            self._in_journal = sum(1 for line in journal.read_text().splitlines() if line.strip())

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory) + self._in_journal

    def put(self, entry: Entry) -> bool:
        with self._lock:
            if self._in_journal == 0 and len(self._memory) < self._size:
                self._memory.append(self._bounded(entry))
                return True
            if self._journal is not None and self._append_journal(entry):
                return True
            self.lost += 1
        log.error("spool full (%d in memory, journal %s): %s lost", self._size, self._journal or "not configured",
                  _describe(entry))
        return False

    def _bounded(self, entry: Entry) -> Entry:
        if not isinstance(entry, SpooledRecord) or entry.decision.crop is None:
            return entry
        if self._crops < self._keep_crops:
            self._crops += 1
            return entry
        self.crops_dropped += 1
        return dataclasses.replace(entry, decision=dataclasses.replace(entry.decision, crop=None))

    def _append_journal(self, entry: Entry) -> bool:
        assert self._journal is not None
        try:
            self._journal.parent.mkdir(parents=True, exist_ok=True)
            with self._journal.open("a") as fh:
                fh.write(json.dumps(to_jsonable(entry), default=_plain) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            log.error("spool journal %s not writable: %s", self._journal, exc)
            return False
        self._in_journal += 1
        return True

    def persist(self) -> int:
        """Move what waits in memory into the journal, ahead of the journal's own lines (they are younger), so
        that the next start finds it; returns how many entries moved (0 without a journal or when it cannot be
        written: they are then lost with the process, and the caller says so). Crops do not go to the journal."""
        with self._lock:
            if self._journal is None or not self._memory:
                return 0
            try:
                old = self._journal.read_text().splitlines() if self._journal.is_file() else []
                lines = [json.dumps(to_jsonable(e), default=_plain) for e in self._memory]
                lines += [line for line in old if line.strip()]
                self._journal.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._journal.with_suffix(".tmp")
                with tmp.open("w") as fh:
                    fh.write("".join(f"{line}\n" for line in lines))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._journal)
            except OSError as exc:
                log.error("spool journal %s not writable at shutdown: %s", self._journal, exc)
                return 0
            moved = len(self._memory)
            self._memory.clear()
            self._crops = 0
            self._in_journal = len(lines)
            return moved

    def due(self) -> bool:
        return len(self) > 0 and self._clock() >= self._next_try

    def flush(self, store: Store, errors: tuple[type[BaseException], ...]) -> int:
        """Write entries in order until one fails (``errors``): returns how many were written. On a failure the
        next try waits, doubling up to ``retry_max_s``; on success the wait starts again from the first."""
        written = 0
        with self._flush_lock:
            try:
                written += self._flush_memory(store)
                if not self._memory_len():
                    written += self._flush_journal(store)
            except errors as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._next_try = self._clock() + self._delay
                self._delay = min(self._delay * 2, self._retry_max)
                log.warning("spool: %d written, %d still waiting; next try in %.1f s: %s", written, len(self),
                            self._next_try - self._clock(), self.last_error)
                return written
        self._delay, self.last_error = self._retry_initial, ""
        return written

    def _memory_len(self) -> int:
        with self._lock:
            return len(self._memory)

    def _flush_memory(self, store: Store) -> int:
        written = 0
        while True:
            with self._lock:
                if not self._memory:
                    return written
                entry = self._memory[0]
            entry.apply(store)
            with self._lock:
                self._memory.popleft()
                if isinstance(entry, SpooledRecord) and entry.decision.crop is not None:
                    self._crops -= 1
            written += 1

    def _flush_journal(self, store: Store) -> int:
        if self._journal is None or not self._journal.is_file():
            return 0
        lines = [line for line in self._journal.read_text().splitlines() if line.strip()]
        written = 0
        try:
            for line in lines:
                from_jsonable(json.loads(line)).apply(store)
                written += 1
        finally:
            with self._lock:
                rest = lines[written:]
                added = self._journal.read_text().splitlines()[len(lines):]  # put() while we flushed
                remaining = [*rest, *(a for a in added if a.strip())]
                if remaining:
                    tmp = self._journal.with_suffix(".tmp")
                    tmp.write_text("".join(f"{line}\n" for line in remaining))
                    os.replace(tmp, self._journal)
                else:
                    self._journal.unlink()
                self._in_journal = len(remaining)
        return written


def _plain(value: object) -> object:
    """numpy scalars (votes, confidences) as plain numbers."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _describe(entry: Entry) -> str:
    if isinstance(entry, SpooledRecord):
        return f"the record of item {entry.decision.item_id}"
    if isinstance(entry, SpooledMark):
        return f"status {entry.status.value} of actuation {entry.actuation_id}"
    return f"alarm {entry.alarm.kind}"


# -- journal lines -------------------------------------------------------------------------------------------

def to_jsonable(entry: Entry) -> dict[str, Any]:
    """A journal line: the entry's fields, a decision without its crop (journal lines stay small)."""
    if isinstance(entry, SpooledRecord):
        d = {f.name: getattr(entry.decision, f.name) for f in dataclasses.fields(Decision) if f.name != "crop"}
        return {"kind": "record", "decision": d, "actuation": dataclasses.asdict(entry.actuation),
                "status": entry.status.value, "detail": entry.detail, "item_bin": entry.item_bin}
    if isinstance(entry, SpooledMark):
        return {"kind": "mark", **dataclasses.asdict(entry)}
    return {"kind": "alarm", "alarm": dataclasses.asdict(entry.alarm)}


def from_jsonable(data: dict[str, Any]) -> Entry:
    kind = data.pop("kind")
    if kind == "record":
        d = dict(data["decision"])
        d.update(stream=Stream(d["stream"]), reason=Reason(d["reason"]), box=tuple(d["box"]))
        return SpooledRecord(Decision(**d), Actuation(**data["actuation"]), ActuationStatus(data["status"]),
                             data["detail"], data["item_bin"])
    if kind == "mark":
        return SpooledMark(data["actuation_id"], ActuationStatus(data["status"]), data["detail"], data["item_bin"])
    a = dict(data["alarm"])
    return SpooledAlarm(Alarm(**{**a, "severity": Severity(a["severity"])}))
