"""Runs keep their data apart: a scorecard run (`sortloop run --headless` on the simulator) writes to a store of its
own under store.runs_dir/<run id>/ unless --store says otherwise; every item carries its run id; reports and the
impact page read one station's live runs only (items from before runs were kept count as live)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from station.cli import app as cli_app
from station.config import StationConfig
from station.events import Actuation, Decision, Reason, new_id
from station.runs import new_run_id, plan_run
from station.store import DuplicateError, Store
from station.store.records import RunKind
from station.taxonomy import load_taxonomy
from ui.context import ConsoleContext
from ui.impact import impact_router
from ui.repo import ConsoleRepo, NewCorrection
from ui.reports import Period, ReportConfig, build_report

ROOT = Path(__file__).resolve().parents[1]
TAX = load_taxonomy()
TODAY = datetime.now(UTC).date()
PERIOD = Period(TODAY - timedelta(days=1), TODAY)


def decision(cls: str, station: str = "station-1", t: float | None = None) -> Decision:
    return Decision(item_id=new_id(), station_id=station, track_id=1, frame_index=1, crossed_at=1.0,
                    crossed_ticks=None, class_name=cls, stream=TAX.stream_of(cls), hazard=TAX.hazard_of(cls),
                    confidence=0.9, votes={cls: 0.9}, observations=8, reason=Reason.OK, box=(0, 0, 10, 10),
                    model_version="m", decided_at_wall=PERIOD.since + 3600 if t is None else t)


def record(store: Store, d: Decision) -> None:
    store.record(d, Actuation(new_id(), d.item_id, "plastic", 1, 2.0, None, d.decided_at_wall + 2))


# (run kind or None for an item recorded before runs were kept, station, items of plastic): reports of station-1
# count its live runs and the items without a run only
RUNS: list[tuple[RunKind | None, str, int]] = [
    (None, "station-1", 1), ("live", "station-1", 2), ("scorecard", "station-1", 4), ("bench", "station-1", 8),
    ("live", "station-2", 16), ("live", "station-1", 32)]
LIVE_OF_STATION_1 = 1 + 2 + 32


@pytest.fixture
def mixed(tmp_path: Path) -> Store:
    store = Store.open(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path / "evidence")
    for kind, station, n in RUNS:
        if kind is not None:
            store.begin_run(new_run_id(kind), kind, station)
        for _ in range(n):
            record(store, decision("plastic", station))
        store.end_run()
    return store


def test_reports_and_impact_read_one_stations_live_runs_only(mixed: Store) -> None:
    r = build_report(mixed, TAX, PERIOD, ReportConfig(), station="station-1")
    assert r.totals.items == r.totals.diverted_items == LIVE_OF_STATION_1
    assert sum(b.items for b in r.rows("hour")) == LIVE_OF_STATION_1
    ctx = ConsoleContext(config=StationConfig(), taxonomy=TAX, store=mixed)
    web = FastAPI()
    web.include_router(impact_router(ctx, cache_s=0))
    body = TestClient(web).get("/impact.json", params={"from": str(PERIOD.start), "to": str(PERIOD.end)}).json()
    assert body["items"] == body["diverted_items"] == LIVE_OF_STATION_1
    runs = mixed.runs()
    assert [(run.kind, run.station_id) for run in runs] == [(k, s) for k, s, _ in RUNS if k is not None]
    assert all(run.ended_at is not None and run.ended_at >= run.started_at for run in runs)


def test_corrections_of_other_runs_do_not_count(mixed: Store) -> None:
    repo = ConsoleRepo(mixed)
    with mixed.engine.connect() as conn:
        ids = {kind: item for kind, item in conn.exec_driver_sql(
            "SELECT r.kind, i.item_id FROM items i JOIN runs r USING (run_id)")}
    for kind in ("live", "scorecard"):
        repo.add_correction(NewCorrection(ids[kind], "olga", "operator", "reclass", "plastic", "metal", None, None))
    assert build_report(mixed, TAX, Period(TODAY, TODAY), ReportConfig(), station="station-1").totals.corrections == 1


def test_a_run_id_is_recorded_once(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "ev")
    run_id = new_run_id("live")
    store.begin_run(run_id, "live", "station-1")
    with pytest.raises(DuplicateError, match=run_id):
        store.begin_run(run_id, "live", "station-1")
    store.close()


@pytest.mark.parametrize(("kind", "store_url", "where"), [
    ("live", None, "config"),                      # the live station keeps its configured store
    ("scorecard", None, "own"),                     # a scored run gets <runs_dir>/<run id>/sortloop.db
    ("bench", None, "own"),
    ("scorecard", "sqlite:///{tmp}/asked.db", "asked"),  # --store says otherwise
])
def test_plan_run_gives_non_live_runs_their_own_store(tmp_path: Path, kind: RunKind, store_url: str | None,
                                                       where: str) -> None:
    cfg = StationConfig.model_validate({"store": {"url": f"sqlite:///{tmp_path}/live.db", "runs_dir": str(
        tmp_path / "runs"), "evidence_dir": str(tmp_path / "ev"), "journal": str(tmp_path / "journal.jsonl")}})
    plan = plan_run(cfg, kind, None if store_url is None else store_url.format(tmp=tmp_path))
    assert plan.kind == kind and kind in plan.run_id
    own = tmp_path / "runs" / plan.run_id
    expected = {"config": (f"sqlite:///{tmp_path}/live.db", str(tmp_path / "journal.jsonl")),
                "own": (f"sqlite:///{own / 'sortloop.db'}", str(own / "journal.jsonl")),
                "asked": (f"sqlite:///{tmp_path}/asked.db", str(tmp_path / "journal.jsonl"))}[where]
    assert (plan.config.store.url, plan.config.store.journal) == expected


def test_a_scorecard_run_writes_its_own_store_and_never_the_live_one(tmp_path: Path) -> None:
    live_db = tmp_path / "var" / "sortloop.db"
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"kind": "simulator", "max_frames": 120},
        "model": {"path": str(ROOT / "models" / "sortloop-default.onnx"), "watch_registry": False},
        "store": {"url": f"sqlite:///{live_db}", "evidence_dir": str(tmp_path / "var" / "evidence"),
                  "runs_dir": str(tmp_path / "var" / "runs")}}))
    out = CliRunner().invoke(cli_app, ["run", "--config", str(config), "--headless", "--fast", "--duration", "60"])
    assert out.exit_code == 0, out.output
    assert not live_db.exists()
    (folder,) = (tmp_path / "var" / "runs").iterdir()
    assert "scorecard" in folder.name and f"run {folder.name} (scorecard)" in out.output
    con = sqlite3.connect(folder / "sortloop.db")
    try:
        runs = con.execute("SELECT run_id, kind, ended_at IS NOT NULL FROM runs").fetchall()
        unowned = con.execute("SELECT COUNT(*) FROM items WHERE run_id IS NOT ?", (folder.name,)).fetchone()
    finally:
        con.close()
    assert runs == [(folder.name, "scorecard", 1)] and unowned == (0,)



def test_items_recorded_before_runs_survive_the_migration_and_count_as_live(tmp_path: Path) -> None:
    from alembic import command

    from station.store.engine import alembic_config, make_engine, parse_url

    db = tmp_path / "old.db"
    engine = make_engine(parse_url(f"sqlite:///{db}"))
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005")
    engine.dispose()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO items (item_id, station_id, track_id, frame_index, crossed_at, decided_at, class_name, "
                "stream, hazard, confidence, votes, observations, reason, detail, x1, y1, x2, y2, model_version, bin) "
                "VALUES ('old', 'station-1', 1, 1, 0, ?, 'can', 'metal', NULL, 0.9, '{}', 8, 'ok', '', 0, 0, 1, 1, "
                "'m', 'metal')", (PERIOD.since + 60,))
    con.commit()
    con.close()
    store = Store.open(f"sqlite:///{db}", tmp_path / "ev")
    r = build_report(store, TAX, PERIOD, ReportConfig(), station="station-1")
    store.close()
    assert (r.totals.items, r.totals.diverted_items) == (1, 1)
