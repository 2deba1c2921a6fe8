"""No decision is dropped: the spool keeps what a refusing store could not take, in order, and the recorder
never fires a command after its deadline. A real SQLite store, locked by another real connection."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from station.actuate import SimulatedActuator
from station.config import StationConfig
from station.events import Actuation, ActuationStatus, Alarm, Decision, Reason, Severity, new_id
from station.metrics import StationMetrics
from station.record import STORE_ERRORS, Recorder
from station.spool import Spool, SpooledAlarm, SpooledMark, SpooledRecord, from_jsonable, to_jsonable
from station.store import Store
from station.taxonomy import Stream

S = ActuationStatus


def decision(crop: bool = False, hazard: str | None = None) -> Decision:
    return Decision(item_id=new_id(), station_id="station-1", track_id=3, frame_index=10, crossed_at=1.0,
                    crossed_ticks=2000, class_name="plastic", stream=Stream.PLASTIC, hazard=hazard,
                    confidence=np.float32(0.9).item(), votes={"plastic": 0.9}, observations=5, reason=Reason.OK,
                    box=(1.0, 2.0, 30.0, 40.0), model_version="m-1",
                    crop=np.full((8, 8, 3), 127, np.uint8) if crop else None)


def actuation(d: Decision, in_s: float = 2.0) -> Actuation:
    return Actuation(new_id(), d.item_id, "plastic", 1, d.crossed_at + in_s, None, time.time() + in_s)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'station.db'}", tmp_path / "evidence", busy_timeout_s=0.1)
    yield s
    s.close()


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process's connection holding the write lock (BEGIN EXCLUSIVE)."""
    con = sqlite3.connect(db, timeout=5, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db, timeout=5)
    try:
        return list(con.execute(sql))
    finally:
        con.close()


@pytest.mark.parametrize(("size", "journal", "puts", "memory", "journaled", "lost"), [
    (3, False, 2, 2, 0, 0),
    (3, False, 5, 3, 0, 2),
    (3, True, 5, 3, 2, 0),
])
def test_spool_bounds_memory_then_journal_then_counts_losses(tmp_path: Path, size: int, journal: bool, puts: int,
                                                             memory: int, journaled: int, lost: int) -> None:
    path = tmp_path / "other-fs" / "spool.jsonl"
    spool = Spool(size, keep_crops=1, journal=path if journal else None)
    kept = [spool.put(SpooledRecord(decision(crop=True), actuation(decision()), S.MISSED, "x", "manual"))
            for _ in range(puts)]
    assert kept.count(False) == lost == spool.lost
    assert len(spool) == memory + journaled
    assert (len(path.read_text().splitlines()) if path.exists() else 0) == journaled
    assert spool.crops_dropped == min(puts, size) - 1  # crops beyond keep_crops are let go


def test_spool_writes_in_order_after_the_lock_and_counts_duplicates_as_written(store: Store, tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    spool = Spool(2, keep_crops=10, journal=tmp_path / "j" / "spool.jsonl", retry_initial_s=0.01, retry_max_s=0.02)
    ds = [decision(crop=True) for _ in range(4)]
    acts = [actuation(d) for d in ds]
    store.record(ds[0], acts[0])  # already durable: its spooled copy is a duplicate that reconciles the status
    for d, a in zip(ds, acts, strict=True):
        spool.put(SpooledRecord(d, a, S.MISSED, "not sent", "manual"))
    spool.put(SpooledAlarm(Alarm("store.x", "spooled alarm", Severity.CRITICAL)))
    with locked(db):
        assert spool.flush(store, STORE_ERRORS) == 0
        assert spool.last_error and len(spool) == 5
    time.sleep(0.03)
    assert spool.flush(store, STORE_ERRORS) == 5 and len(spool) == 0
    assert not (tmp_path / "j" / "spool.jsonl").exists()
    got = rows(db, "select i.item_id, i.bin, a.status from items i join actuations a using (item_id) "
               "order by i.rowid")
    assert [r[0] for r in got] == [d.item_id for d in ds]
    assert {(r[1], r[2]) for r in got} == {("manual", "missed")}
    assert rows(db, "select kind from alarms") == [("store.x",)]
    assert store.crop_file(ds[1].item_id) is not None  # kept in memory with its crop
    assert store.crop_file(ds[3].item_id) is None  # from the journal: no crop


def test_journal_lines_round_trip() -> None:
    d = decision(hazard="battery")
    for entry in (SpooledRecord(d, actuation(d), S.MISSED, "x", "manual"),
                  SpooledMark("a1", S.SENT, "", None), SpooledAlarm(Alarm("k", "m", Severity.INFO))):
        back = from_jsonable(to_jsonable(entry))
        assert back == entry


class Harness:
    """A recorder over a real store and the simulated actuator, with the station's callbacks recorded."""

    def __init__(self, store: Store, hold: str | None = None) -> None:
        cfg = StationConfig.model_validate({"store": {"retry_initial_s": 0.01, "retry_max_s": 0.02}})
        self.actuator = SimulatedActuator()
        self.alarms: list[str] = []
        self.failsafe: dict[str, str] = {}
        self.spool = Spool(100, 10, retry_initial_s=0.01, retry_max_s=0.02)
        self.rec = Recorder(cfg, store, self.actuator, StationMetrics(), self.spool,
                            alarm=lambda kind, msg, sev, item: self.alarms.append(kind),
                            failsafe=self._failsafe, hold=lambda: hold)

    def _failsafe(self, key: str, detail: str | None) -> None:
        if detail is None:
            self.failsafe.pop(key, None)
        else:
            self.failsafe[key] = detail


@pytest.mark.parametrize(("in_s", "hold", "offline", "status", "item_bin", "fired"), [
    (2.0, None, False, S.SENT, "plastic", True),
    (0.01, None, False, S.MISSED, "manual", False),     # inside the deadline margin (0.05 s): not sent
    (-3.0, None, False, S.MISSED, "manual", False),     # already past
    (2.0, "worker act dead", False, S.MISSED, "manual", False),
    (2.0, None, True, S.FAILED, "manual", False),
])
def test_recorder_sends_only_in_time_and_records_the_real_bin(store: Store, tmp_path: Path, in_s: float,
                                                              hold: str | None, offline: bool, status: S,
                                                              item_bin: str, fired: bool) -> None:
    h = Harness(store, hold)
    h.actuator.set_offline(offline)
    d = decision()
    a = actuation(d, in_s)
    assert h.rec.handle(d, a) is status
    assert bool(h.actuator.sent) is fired
    assert all(c.sent_at_wall < c.actuation.fire_at_wall for c in h.actuator.sent)
    assert rows(tmp_path / "station.db", "select i.bin, a.status from items i join actuations a using (item_id)") \
        == [(item_bin, status.value)]
    assert ("actuator" in h.failsafe) is offline


def test_recorder_spools_while_locked_alarms_and_recovers_in_order(store: Store, tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    h = Harness(store)
    ds = [decision(hazard="battery") for _ in range(3)]
    with locked(db):
        got = [h.rec.handle(d, actuation(d)) for d in ds]
        assert got == [S.MISSED] * 3 and len(h.spool) == 3
        assert "store" in h.failsafe and not h.actuator.sent
    time.sleep(0.03)
    d4 = decision()
    assert h.rec.handle(d4, actuation(d4)) is S.SENT  # the spool is written first, then this one goes out
    assert "store" not in h.failsafe and "store.recovered" in h.alarms
    assert [c.actuation.item_id for c in h.actuator.sent] == [d4.item_id]
    got_rows = rows(db, "select i.item_id, i.bin, a.status from items i join actuations a using (item_id) "
                    "order by i.rowid")
    assert got_rows == [*((d.item_id, "manual", "missed") for d in ds), (d4.item_id, "plastic", "sent")]


def test_a_status_the_store_refused_is_written_later(store: Store, tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    d = decision()
    a = actuation(d)
    store.record(d, a)
    spool = Spool(10, 0, retry_initial_s=0.01)
    spool.put(SpooledMark(a.actuation_id, S.FAILED, "broker away", "manual"))
    with locked(db):
        assert spool.flush(store, STORE_ERRORS) == 0
    time.sleep(0.02)
    assert spool.flush(store, STORE_ERRORS) == 1
    assert rows(db, "select i.bin, a.status, a.detail from items i join actuations a using (item_id)") == [
        ("manual", "failed", "broker away")]


@pytest.mark.parametrize("journal", [True, False])
def test_what_waits_in_memory_goes_to_the_journal_at_shutdown_ahead_of_its_lines(store: Store, tmp_path: Path,
                                                                               journal: bool) -> None:
    """A stop while the store refuses: memory entries (older) move into the journal before its own lines; the
    next start (a new spool on the same journal) writes all of them in order. Without a journal nothing moves."""
    db, path = tmp_path / "station.db", tmp_path / "j" / "spool.jsonl"
    spool = Spool(2, keep_crops=10, journal=path if journal else None, retry_initial_s=0.0)
    ds = [decision(crop=True) for _ in range(4)]
    for d in ds:  # two in memory, two in the journal (or lost without one)
        spool.put(SpooledRecord(d, actuation(d), S.MISSED, "not sent", "manual"))
    with locked(db):
        assert spool.flush(store, STORE_ERRORS) == 0
    moved = spool.persist()
    assert moved == (2 if journal else 0)
    if not journal:
        assert len(spool) == 2 and spool.lost == 2
        return
    assert len(spool) == 4 and len(path.read_text().splitlines()) == 4
    restarted = Spool(2, keep_crops=10, journal=path, retry_initial_s=0.0)
    assert len(restarted) == 4
    assert restarted.flush(store, STORE_ERRORS) == 4 and len(restarted) == 0 and not path.exists()
    got = rows(db, "select item_id from items order by rowid")
    assert [r[0] for r in got] == [d.item_id for d in ds]
