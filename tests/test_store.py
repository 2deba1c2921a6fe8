"""Store: migrations, SQLite settings, record/reconcile, queries, alarms — on a real SQLite file (and a
throwaway PostgreSQL server when its binaries are installed)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from station.events import Actuation, ActuationStatus, Alarm, Decision, Reason, Severity, new_id
from station.store import ItemFilter, NotFoundError, Store, StoreError
from station.store.models import Base
from station.taxonomy import Stream

T0 = 1_699_999_200.0  # on the hour (UTC)
S = ActuationStatus
TABLES = {"items", "actuations", "alarms", "model_versions", "users", "corrections", "quarantine_log",
          "console_secrets", "sessions", "service_tokens", "audit_log", "runs"}
MASS = {"phone": 0.2, "plastic": 0.05, "can": 0.02}


def make_decision(**kw: object) -> Decision:
    values: dict[str, object] = {
        "item_id": new_id(), "station_id": "station-1", "track_id": 7, "frame_index": 120, "crossed_at": 4.0,
        "crossed_ticks": 8000, "class_name": "plastic", "stream": Stream.PLASTIC, "hazard": None,
        "confidence": 0.8, "votes": {"plastic": 0.8, "can": 0.2}, "observations": 9, "reason": Reason.OK,
        "box": (10.0, 20.0, 110.0, 90.0), "model_version": "m-1", "decided_at_wall": T0,
    }
    values.update(kw)
    return Decision(**values)  # type: ignore[arg-type]


def make_actuation(d: Decision, fire_at_wall: float, bin_name: str = "plastic") -> Actuation:
    return Actuation(new_id(), d.item_id, bin_name, 1, d.crossed_at + 1.8, 11_600, fire_at_wall)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'db' / 'station.db'}", tmp_path / "evidence")
    yield s
    s.close()


def test_migrations_create_all_tables_at_the_head_revision(store: Store) -> None:
    assert TABLES | {"alembic_version"} == set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0007"


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_with_full_sync(store: Store) -> None:
    with store.engine.connect() as conn:
        pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in
                   ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")}
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 10_000, "foreign_keys": 1}
    raw = sqlite3.connect(str(store.engine.url.database))  # WAL is a property of the file itself
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


def test_record_writes_item_pending_actuation_and_crop(store: Store) -> None:
    crop = np.full((40, 60, 3), 200, np.uint8)
    d = make_decision(crop=crop, hazard="battery", class_name="phone", stream=Stream.ELECTRONICS)
    a = make_actuation(d, T0 + 2, bin_name="hazard")
    store.record(d, a)
    item = store.get_item(d.item_id)
    assert item is not None
    assert (item.class_name, item.stream, item.hazard, item.bin, item.box) == \
        ("phone", Stream.ELECTRONICS, "battery", "hazard", d.box)
    assert (item.votes, item.crossed_ticks, item.decided_at, item.reason) == (d.votes, 8000, T0, Reason.OK)
    assert item.actuation is not None and item.actuation.status is S.PENDING
    assert item.actuation.to_actuation() == a
    path = store.crop_file(d.item_id)
    assert path is not None and path.is_relative_to(store.evidence_dir)
    image = cv2.imread(str(path))
    assert image is not None
    assert image.shape == crop.shape and abs(int(image.mean()) - 200) <= 2
    assert not list(path.parent.glob("*.tmp"))


def test_record_without_crop_has_no_crop_file(store: Store) -> None:
    d = make_decision()
    store.record(d, make_actuation(d, T0))
    item = store.get_item(d.item_id)
    assert item is not None and item.crop_path is None
    assert store.crop_file(d.item_id) is None
    assert store.get_item("nope") is None


@pytest.mark.parametrize(("same_item", "same_actuation", "match"), [
    (True, False, "already recorded"),
    (False, True, "already recorded"),
])
def test_record_refuses_duplicates(store: Store, same_item: bool, same_actuation: bool, match: str) -> None:
    d = make_decision()
    a = make_actuation(d, T0)
    store.record(d, a)
    d2 = d if same_item else make_decision()
    a2 = replace(a, item_id=d2.item_id, actuation_id=a.actuation_id if same_actuation else new_id())
    with pytest.raises(StoreError, match=match):
        store.record(d2, a2)
    assert store.item_ids() == {d.item_id}


def test_record_refuses_an_actuation_of_another_item(store: Store) -> None:
    d = make_decision()
    with pytest.raises(StoreError, match="route the decision again"):
        store.record(d, make_actuation(make_decision(), T0))
    assert store.item_ids() == set()


def _recorded(store: Store, status: ActuationStatus, fire_at_wall: float, station_id: str = "station-1") -> str:
    d = make_decision(station_id=station_id)
    a = make_actuation(d, fire_at_wall)
    store.record(d, a)
    if status is not S.PENDING:
        if status in (S.SENT, S.FAILED):
            store.mark_actuation(a.actuation_id, S.SENDING)
        store.mark_actuation(a.actuation_id, status)
    return a.actuation_id


NOW = T0 + 100


@pytest.mark.parametrize(("status", "offset", "after", "resent"), [
    (S.PENDING, +5.0, S.PENDING, True),      # its ejector is still ahead: send it again
    (S.PENDING, -5.0, S.MISSED, False),      # too late
    (S.PENDING, 0.0, S.MISSED, False),       # exactly now is too late
    (S.SENDING, +5.0, S.MISSED, False),      # in doubt: never re-sent, even in the future
    (S.SENDING, -5.0, S.MISSED, False),
    (S.SENT, +5.0, S.SENT, False),
    (S.FAILED, +5.0, S.FAILED, False),
    (S.MISSED, +5.0, S.MISSED, False),
])
def test_reconcile(store: Store, status: ActuationStatus, offset: float, after: ActuationStatus,
                   resent: bool) -> None:
    aid = _recorded(store, status, NOW + offset)
    result = store.reconcile(NOW)
    assert [a.actuation_id for a in result.resend] == ([aid] if resent else [])
    assert result.in_doubt == (1 if status is S.SENDING else 0)
    assert result.missed == (1 if status is S.PENDING and after is S.MISSED else 0)
    counts = store.actuation_counts()
    assert counts[after.value] == 1 and sum(counts.values()) == 1


def test_reconcile_mixed_batch_and_twice(store: Store) -> None:
    future = [_recorded(store, S.PENDING, NOW + dt) for dt in (30.0, 10.0)]
    _recorded(store, S.PENDING, NOW - 1)
    _recorded(store, S.SENDING, NOW + 10)
    first = store.reconcile(NOW)
    assert [a.actuation_id for a in first.resend] == future[::-1]  # soonest first
    assert (first.missed, first.in_doubt) == (1, 1)
    store.mark_actuation(future[1], S.SENDING)
    store.mark_actuation(future[1], S.SENT)
    second = store.reconcile(NOW)
    assert [a.actuation_id for a in second.resend] == [future[0]]
    assert (second.missed, second.in_doubt) == (0, 0)


def test_reconcile_is_limited_to_one_station(store: Store) -> None:
    mine = _recorded(store, S.SENDING, NOW + 5, station_id="a")
    _recorded(store, S.SENDING, NOW + 5, station_id="b")
    theirs = _recorded(store, S.PENDING, NOW + 5, station_id="b")
    result = store.reconcile(NOW, station_id="a")
    assert (result.resend, result.in_doubt) == ([], 1)
    assert store.actuation_counts() == {"pending": 1, "sending": 1, "sent": 0, "failed": 0, "missed": 1}
    assert [a.actuation_id for a in store.reconcile(NOW, station_id="b").resend] == [theirs]
    assert mine != theirs


@pytest.mark.parametrize(("path", "error"), [
    ([S.SENDING, S.SENT], None),
    ([S.SENDING, S.FAILED, S.SENDING, S.SENT], None),
    ([S.SENDING, S.SENDING], None),
    ([S.MISSED], None),
    ([S.SENDING, S.SENT, S.SENDING], "cannot become sending"),
    ([S.MISSED, S.SENDING], "cannot become sending"),
    ([S.SENDING, S.PENDING], "cannot become pending"),
])
def test_mark_actuation_transitions(store: Store, path: list[ActuationStatus], error: str | None) -> None:
    aid = _recorded(store, S.PENDING, NOW)
    *head, last = path
    for status in head:
        store.mark_actuation(aid, status)
    if error is None:
        store.mark_actuation(aid, last, detail="ack 3 ms")
        assert store.actuation_counts()[last.value] == 1
    else:
        with pytest.raises(StoreError, match=error):
            store.mark_actuation(aid, last)


def test_mark_actuation_counts_attempts_and_keeps_detail(store: Store) -> None:
    d = make_decision()
    a = make_actuation(d, NOW)
    store.record(d, a)
    for status, detail in [(S.SENDING, ""), (S.FAILED, "connection refused"), (S.SENDING, ""), (S.SENT, "")]:
        store.mark_actuation(a.actuation_id, status, detail)
    item = store.get_item(d.item_id)
    assert item is not None and item.actuation is not None
    assert (item.actuation.status, item.actuation.attempts, item.actuation.detail) == \
        (S.SENT, 2, "connection refused")
    with pytest.raises(NotFoundError, match="record it first"):
        store.mark_actuation("missing", S.SENT)


@pytest.fixture
def catalogue(store: Store) -> dict[str, str]:
    """Six items an hour apart; returns name → item_id."""
    specs: dict[str, dict[str, object]] = {
        "b1": dict(class_name="plastic", stream=Stream.PLASTIC),
        "b2": dict(class_name="plastic", stream=Stream.PLASTIC, reason=Reason.LOW_CONFIDENCE),
        "c1": dict(class_name="can", stream=Stream.METAL),
        "p1": dict(class_name="phone", stream=Stream.ELECTRONICS, hazard="battery"),
        "m1": dict(class_name=None, stream=Stream.MANUAL, reason=Reason.SHORT_TRACK),
        "c2": dict(class_name="can", stream=Stream.METAL, station_id="station-2"),
    }
    ids = {}
    for hour, (name, spec) in enumerate(specs.items()):
        d = make_decision(decided_at_wall=T0 + hour * 3600 + 60, **spec)
        store.record(d, make_actuation(d, T0))
        ids[name] = d.item_id
    return ids


@pytest.mark.parametrize(("flt", "expected"), [
    (ItemFilter(), ["c2", "m1", "p1", "c1", "b2", "b1"]),
    (ItemFilter(stream=Stream.PLASTIC), ["b2", "b1"]),
    (ItemFilter(class_name="can"), ["c2", "c1"]),
    (ItemFilter(hazard="battery"), ["p1"]),
    (ItemFilter(reason=Reason.SHORT_TRACK), ["m1"]),
    (ItemFilter(since=T0 + 3600, until=T0 + 3 * 3600), ["c1", "b2"]),
    (ItemFilter(class_name="can", station_id="station-1"), ["c1"]),
    (ItemFilter(stream=Stream.TEXTILE), []),
])
def test_list_items_filters(store: Store, catalogue: dict[str, str], flt: ItemFilter, expected: list[str]) -> None:
    page = store.list_items(flt, page=1, page_size=50)
    assert [i.item_id for i in page.items] == [catalogue[n] for n in expected]
    assert page.total == len(expected)


@pytest.mark.parametrize(("page", "size", "expected", "pages"), [
    (1, 4, ["c2", "m1", "p1", "c1"], 2),
    (2, 4, ["b2", "b1"], 2),
    (3, 4, [], 2),
    (1, 6, ["c2", "m1", "p1", "c1", "b2", "b1"], 1),
])
def test_list_items_pages(store: Store, catalogue: dict[str, str], page: int, size: int, expected: list[str],
                          pages: int) -> None:
    result = store.list_items(ItemFilter(), page=page, page_size=size)
    assert [i.item_id for i in result.items] == [catalogue[n] for n in expected]
    assert (result.total, result.pages) == (6, pages)
    assert all(i.actuation is not None for i in result.items)


@pytest.mark.parametrize(("page", "size"), [(0, 10), (1, 0), (1, 5000)])
def test_list_items_rejects_bad_pages(store: Store, page: int, size: int) -> None:
    with pytest.raises(ValueError, match="page must be"):
        store.list_items(ItemFilter(), page=page, page_size=size)


@pytest.mark.parametrize(("since", "until", "bucket", "origin", "expected"), [
    # hourly: one row per item-hour and stream
    (T0, T0 + 3 * 3600, 3600, 0.0, [(T0, Stream.PLASTIC, 1), (T0 + 3600, Stream.PLASTIC, 1),
                                    (T0 + 7200, Stream.METAL, 1)]),
    # since in the middle of an hour: its bucket still starts on the hour
    (T0 + 30, T0 + 3600, 3600, 0.0, [(T0, Stream.PLASTIC, 1)]),
    # three-hour buckets aligned to the first item's hour
    (T0, T0 + 6 * 3600, 3 * 3600, T0, [(T0, Stream.METAL, 1), (T0, Stream.PLASTIC, 2),
                                       (T0 + 3 * 3600, Stream.ELECTRONICS, 1), (T0 + 3 * 3600, Stream.MANUAL, 1),
                                       (T0 + 3 * 3600, Stream.METAL, 1)]),
])
def test_throughput_buckets(store: Store, catalogue: dict[str, str], since: float, until: float, bucket: int,
                            origin: float, expected: list[tuple[float, Stream, int]]) -> None:
    rows = store.throughput(since, until, bucket_s=bucket, origin=origin)
    assert sorted((r.bucket_start, r.stream, r.items) for r in rows) == sorted(expected)
    assert all(r.kg is None and r.bucket_s == bucket for r in rows)


def test_throughput_mass(store: Store, catalogue: dict[str, str]) -> None:
    rows = store.throughput(T0, T0 + 6 * 3600, bucket_s=86_400, origin=T0, mass_kg=MASS)
    kg = {r.stream: r.kg for r in rows}
    assert kg == {Stream.PLASTIC: pytest.approx(0.1), Stream.METAL: pytest.approx(0.04),
                  Stream.ELECTRONICS: pytest.approx(0.2), Stream.MANUAL: 0.0}
    with pytest.raises(ValueError, match="since < until"):
        store.throughput(T0, T0)


def test_alarms_ack_once(store: Store) -> None:
    first = Alarm("hazard.battery", "battery on the belt", Severity.CRITICAL, item_id="x", raised_at=T0)
    second = Alarm("source.lost", "camera lost", raised_at=T0 + 1)
    store.add_alarm(first)
    store.add_alarm(second)
    assert [a.alarm_id for a in store.active_alarms()] == [second.alarm_id, first.alarm_id]
    acked = store.ack_alarm(first.alarm_id, by="ana")
    assert (acked.acknowledged_by, acked.active, acked.severity) == ("ana", False, Severity.CRITICAL)
    again = store.ack_alarm(first.alarm_id, by="bob")
    assert (again.acknowledged_by, again.acknowledged_at) == ("ana", acked.acknowledged_at)
    assert [a.alarm_id for a in store.active_alarms()] == [second.alarm_id]
    assert len(store.alarms()) == 2
    with pytest.raises(NotFoundError, match="not in the store"):
        store.ack_alarm("nope", by="ana")


def test_record_model_keeps_one_active(store: Store) -> None:
    assert store.active_model() is None
    store.record_model("m-1", "models/a.onnx", {"map50": 0.61, "classes": ["plastic", "can"]})
    store.record_model("m-2", "models/b.onnx", {"map50": 0.66})
    store.record_model("m-1", "models/a.onnx", {"map50": 0.61})
    active = store.active_model()
    assert active is not None and (active.version, active.metadata) == ("m-1", {"map50": 0.61})
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM model_versions WHERE active")).scalar_one() == 1


_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store import make_decision, make_actuation
from station.store import Store
store = Store.open(sys.argv[1], Path(sys.argv[2]))
d = make_decision(station_id=sys.argv[3])
store.record(d, make_actuation(d, time.time() + 60))
print(d.item_id)
"""


def _children(url: str, evidence: Path, names: list[str]) -> list[str]:
    code = _CHILD.format(tests=str(Path(__file__).parent))
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(evidence), name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in names]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        out.append(stdout.strip())
    return out


def test_two_processes_open_and_write_the_same_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ids = _children(url, tmp_path / "ev", ["p1", "p2"])  # both migrate a fresh file at once
    store = Store.open(url, tmp_path / "ev")
    try:
        assert store.item_ids() == set(ids)
        [late] = _children(url, tmp_path / "ev", ["p3"])  # while this process holds it open
        assert store.item_ids() == {*ids, late}
    finally:
        store.close()


# -- PostgreSQL --------------------------------------------------------------------------------------

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (as the postgres user when the tests run as root)."""
    if not PG_BINS or not Path(PG_BINS[-1], "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin/pg_ctl, initdb) are not installed")
    pytest.importorskip("psycopg", reason="psycopg (pip install 'sortloop[postgres]') is needed for PostgreSQL")
    bindir = Path(PG_BINS[-1])
    as_root = os.geteuid() == 0
    # initdb refuses root: run the server as 'postgres' in a folder it may enter (pytest's is root-only)
    base = Path(tempfile.mkdtemp(prefix="sortloop-pg-")) if as_root else tmp_path
    prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"] if as_root else []
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "sortloop", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://sortloop@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        if as_root:
            shutil.rmtree(base, ignore_errors=True)


def test_postgresql_record_reconcile_cycle(pg_url: str, tmp_path: Path) -> None:
    store = Store.open(pg_url, tmp_path / "ev")
    try:
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        ahead = _recorded(store, S.PENDING, NOW + 5)
        _recorded(store, S.PENDING, NOW - 5)
        _recorded(store, S.SENDING, NOW + 5)
        result = store.reconcile(NOW)
        assert ([a.actuation_id for a in result.resend], result.missed, result.in_doubt) == ([ahead], 1, 1)
        assert store.actuation_counts()["missed"] == 2
        d = make_decision(decided_at_wall=T0 + 5400, crop=np.zeros((8, 8, 3), np.uint8))
        store.record(d, make_actuation(d, NOW))
        rows = store.throughput(T0, T0 + 7200, mass_kg=MASS)
        assert [(r.bucket_start, r.items, r.kg) for r in rows] == [(T0, 3, pytest.approx(0.15)),
                                                                 (T0 + 3600, 1, pytest.approx(0.05))]
        assert store.list_items(ItemFilter(since=T0 + 3600), page=1, page_size=10).items[0].item_id == d.item_id
        Store.open(pg_url, tmp_path / "ev").close()  # a second open finds the schema in place
    finally:
        store.close()


def test_store_open_reports_a_bad_url(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        Store.open("not a url", tmp_path)


def test_record_leaves_no_temporary_files(store: Store) -> None:
    d = make_decision(crop=np.zeros((4, 4, 3), np.uint8), decided_at_wall=time.time())
    store.record(d, make_actuation(d, NOW))
    leftovers = [p for p in store.evidence_dir.rglob("*") if p.is_file() and not p.name.endswith(".jpg")]
    assert leftovers == []


def test_from_config_opens_the_configured_store(tmp_path: Path) -> None:
    from station.config import StationConfig

    cfg = StationConfig()
    cfg.store.url = f"sqlite:///{tmp_path / 'cfg.db'}"
    cfg.store.evidence_dir = str(tmp_path / "crops")
    cfg.store.crop_quality = 60
    store = Store.from_config(cfg)
    try:
        assert (store.evidence_dir, store.crop_quality) == (tmp_path / "crops", 60)
        assert (tmp_path / "cfg.db").is_file() and (tmp_path / "crops").is_dir()
    finally:
        store.close()
