"""Reports, CSV/PDF/JSON, `sortloop report` and the public /impact page against direct SQL on a real SQLite
store seeded through ``Store.record`` with real decisions, alarms, quarantine entries and corrections."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import typer
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from station.config import StationConfig
from station.events import Actuation, Alarm, Decision, Reason, Severity, new_id
from station.store import Store
from station.taxonomy import Stream, Taxonomy, load_taxonomy
from ui.auth import ConsoleUser, ForbiddenError, NotLoggedInError
from ui.context import ConsoleContext
from ui.impact import impact_router
from ui.repo import ConsoleRepo, NewCorrection
from ui.report_cli import register_report_command
from ui.report_config import ReportConfig, ReportError, load_report_config
from ui.report_export import CSV_COLUMNS, stream_rows, to_csv, to_pdf, totals_rows
from ui.reports import DEFAULT_CONFIG, Period, Report, build_report, make_report

TAX = load_taxonomy()
TODAY = datetime.now(UTC).date()
PERIOD = Period(TODAY - timedelta(days=2), TODAY)
DIVERTED = {"electronics", "plastic", "metal", "textile"}
STATION = "station-1"
# (hours after the period start, class or None for an unclassified item)
ITEMS = [(0.2, "plastic"), (0.7, "battery"), (1.5, "can"), (5.9, "glass"), (6.0, "phone"), (6.5, None),
         (13.99, "textile"), (14.0, "laptop"), (21.5, "medical"), (22.1, "plastic"), (23.9, "battery"),
         (24.0, "paper"), (30.2, "cable"), (30.4, "battery"), (45.0, "metal"), (47.99, "can"),
         (50.0, "monitor"), (60.5, "plastic"), (71.9, "glass")]


@pytest.fixture(autouse=True)
def _downloads_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads the views write to fresh temporary folders land in the test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def decision(t: float, cls: str | None, **kw: object) -> Decision:
    stream = TAX.stream_of(cls) if cls else Stream.MANUAL
    values: dict[str, object] = {
        "item_id": new_id(), "station_id": "station-1", "track_id": 1, "frame_index": 10, "crossed_at": 1.0,
        "crossed_ticks": None, "class_name": cls, "stream": stream,
        "hazard": TAX.hazard_of(cls) if cls else None,
        "confidence": 0.9, "votes": {cls: 0.9} if cls else {}, "observations": 8,
        "reason": Reason.OK if cls else Reason.LOW_CONFIDENCE, "box": (1.0, 2.0, 30.0, 40.0),
        "model_version": "m-1", "decided_at_wall": t}
    values.update(kw)
    return Decision(**values)  # type: ignore[arg-type]


def record(store: Store, d: Decision) -> None:
    store.record(d, Actuation(new_id(), d.item_id, d.stream.value, 1, 2.0, None, d.decided_at_wall + 2))


@dataclass
class Seeded:
    store: Store
    db: Path
    ids: list[str]


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    db = tmp_path / "station.db"
    store = Store.open(f"sqlite:///{db}", tmp_path / "evidence")
    ids = []
    for hours, cls in ITEMS:
        d = decision(PERIOD.since + hours * 3600, cls)
        record(store, d)
        ids.append(d.item_id)
    record(store, decision(PERIOD.since - 1, "can"))  # just before the period
    record(store, decision(PERIOD.until, "phone"))  # the first second after it
    # a battery doubt: manual stream, hazard battery
    doubt = decision(PERIOD.since + 9 * 3600, "can", stream=Stream.MANUAL, hazard="battery",
                     reason=Reason.HAZARD_DOUBT)
    record(store, doubt)
    ids.append(doubt.item_id)
    _hazard_handling(store)
    _corrections(store, ids)
    yield Seeded(store, db, ids)
    store.close()


def _hazard_handling(store: Store) -> None:
    """One battery quarantined, one alarm acknowledged, the others open; a non-hazard alarm acknowledged."""
    hazards = [i for i in store.list_items(page_size=100).items
               if i.hazard and PERIOD.since <= i.decided_at < PERIOD.until]
    alarms = [Alarm(kind=f"hazard.{i.hazard}", message="hazard", severity=Severity.CRITICAL,
                    item_id=i.item_id) for i in hazards]
    for a in alarms:
        store.add_alarm(a)
    repo = ConsoleRepo(store)
    repo.quarantine(alarms[0].alarm_id, "Q1", "olga", {"gloves": True}, "battery")
    store.ack_alarm(alarms[1].alarm_id, by="olga")
    other = Alarm(kind="source.lost", message="camera", item_id=hazards[2].item_id)
    store.add_alarm(other)
    store.ack_alarm(other.alarm_id, by="olga")  # not a hazard alarm: does not make its item handled


def _corrections(store: Store, ids: list[str]) -> None:
    repo = ConsoleRepo(store)
    for k, (kind, before, after) in enumerate([("reclass", "plastic", "glass"), ("reclass", "can", "metal"),
                                               ("not_item", "cable", None), ("confirm", "glass", "glass"),
                                               ("reclass", "paper", "textile")]):
        c = repo.add_correction(NewCorrection(ids[k], "olga", "operator", kind, before, after, None, None))
    repo.undo(c.id)  # the last one is undone: it no longer counts


OUTLET = "CASE WHEN hazard IS NOT NULL THEN 'hazard' ELSE stream END"
"""Where a report counts an item: hazardous items apart, whatever their stream."""


def direct(db: Path, since: float, until: float, masses: dict[str, float]) -> dict[str, object]:
    """The same numbers straight from SQL."""
    con = sqlite3.connect(db)
    try:
        per_stream: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for stream, cls, n in con.execute(f"SELECT {OUTLET}, class_name, COUNT(*) FROM items WHERE "
                                          "decided_at >= ? AND decided_at < ? GROUP BY 1, class_name",
                                          (since, until)):
            per_stream[stream][0] += n
            per_stream[stream][1] += n * masses.get(cls, 0.0)
        found = con.execute("SELECT COUNT(*) FROM items WHERE hazard IS NOT NULL AND decided_at >= ? AND "
                            "decided_at < ?", (since, until)).fetchone()[0]
        handled = con.execute(
            "SELECT COUNT(*) FROM items i WHERE i.hazard IS NOT NULL AND i.decided_at >= ? "
            "AND i.decided_at < ? AND (EXISTS (SELECT 1 FROM quarantine_log q WHERE q.item_id = i.item_id) "
            "OR EXISTS (SELECT 1 FROM alarms a WHERE a.item_id = i.item_id AND a.kind LIKE 'hazard.%' "
            "AND a.acknowledged_at IS NOT NULL))",
            (since, until)).fetchone()[0]
        corrections = con.execute("SELECT COUNT(*) FROM corrections WHERE undone = 0 AND kind != 'confirm' "
                                  "AND created_at >= ? AND created_at < ?", (since, until)).fetchone()[0]
        hours = {(int(h), s): n for h, s, n in con.execute(
            f"SELECT CAST((decided_at - ?) / 3600 AS INTEGER), {OUTLET}, COUNT(*) FROM items "
            "WHERE decided_at >= ? AND decided_at < ? GROUP BY 1, 2", (since, since, until))}
    finally:
        con.close()
    return {"streams": dict(per_stream), "found": found, "handled": handled, "corrections": corrections,
            "hours": hours}


def masses(tax: Taxonomy = TAX) -> dict[str, float]:
    return {c.name: c.mass_kg for c in tax.classes}


def test_report_totals_equal_direct_sql(seeded: Seeded) -> None:
    r = build_report(seeded.store, TAX, PERIOD, ReportConfig(), station=STATION)
    db = direct(seeded.db, PERIOD.since, PERIOD.until, masses())
    streams: dict[str, list[float]] = db["streams"]  # type: ignore[assignment]
    assert {s.stream: s.items for s in r.streams if s.items} == {k: v[0] for k, v in streams.items()}
    kg = {s.stream: s.kg for s in r.streams if s.items}
    assert kg == pytest.approx({k: v[1] for k, v in streams.items()})
    t = r.totals
    assert t.items == len(ITEMS) + 1 == sum(v[0] for v in streams.values())
    assert t.kg == pytest.approx(sum(v[1] for v in streams.values()))
    assert t.diverted_items == sum(v[0] for k, v in streams.items() if k in DIVERTED)
    assert t.diverted_kg == pytest.approx(sum(v[1] for k, v in streams.items() if k in DIVERTED))
    assert t.diverted_share_items == pytest.approx(t.diverted_items / t.items)
    assert t.diverted_share_kg == pytest.approx(t.diverted_kg / t.kg)
    assert (t.hazards_found, t.hazards_handled, t.corrections) == \
        (db["found"], db["handled"], db["corrections"])
    assert (t.hazards_found, t.hazards_handled, t.corrections) == (7, 2, 3)
    assert r.hazards_by_kind == {"battery": 6, "biohazard": 1}
    assert t.hazards_kg == pytest.approx(streams["hazard"][1]) and streams["hazard"][0] == t.hazards_found


def test_hours_equal_sql_and_shifts_and_days_add_up(seeded: Seeded) -> None:
    r = build_report(seeded.store, TAX, PERIOD, ReportConfig(), station=STATION)
    db = direct(seeded.db, PERIOD.since, PERIOD.until, masses())
    hours = {(int((datetime.fromisoformat(b.start).timestamp() - PERIOD.since) // 3600), b.stream): b.items
             for b in r.rows("hour")}
    assert hours == db["hours"]
    for level in ("shift", "day"):
        per_stream = Counter[str]()
        for b in r.rows(level):
            per_stream[b.stream] += b.items
        assert dict(per_stream) == {s.stream: s.items for s in r.streams if s.items}, level
        activity = r.activity_rows(level)
        assert sum(a.hazards_found for a in activity) == r.totals.hazards_found
        assert sum(a.hazards_handled for a in activity) == r.totals.hazards_handled
        assert sum(a.corrections for a in activity) == r.totals.corrections
    assert len({b.label for b in r.rows("day")}) == 3


@pytest.mark.parametrize(("tz", "local", "shift", "day"), [
    ("UTC", "2024-05-01T03:00", "2024-04-30 night", "2024-05-01"),
    ("UTC", "2024-05-01T05:59", "2024-04-30 night", "2024-05-01"),
    ("UTC", "2024-05-01T06:00", "2024-05-01 early", "2024-05-01"),
    ("UTC", "2024-05-01T21:59", "2024-05-01 late", "2024-05-01"),
    ("UTC", "2024-05-01T22:00", "2024-05-01 night", "2024-05-01"),
    ("Europe/Berlin", "2024-05-01T23:30", "2024-05-01 night", "2024-05-01"),
    ("Europe/Berlin", "2024-05-02T00:30", "2024-05-01 night", "2024-05-02"),
    ("Europe/Berlin", "2024-05-02T13:10", "2024-05-02 early", "2024-05-02"),
])
def test_items_land_in_their_local_shift_and_day(tmp_path: Path, tz: str, local: str, shift: str,
                                                  day: str) -> None:
    from zoneinfo import ZoneInfo

    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "ev")
    t = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()
    record(store, decision(t, "plastic"))
    r = build_report(store, TAX, Period(date(2024, 4, 30), date(2024, 5, 2), tz), ReportConfig(timezone=tz),
                     station=STATION)
    store.close()
    assert [(b.label, b.items) for b in r.rows("shift")] == [(shift, 1)]
    assert [(b.label, b.items) for b in r.rows("day")] == [(day, 1)]
    assert r.activity_rows("shift") == []


def test_a_daylight_saving_day_has_23_hours(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "ev")
    period = Period(date(2024, 3, 31), date(2024, 3, 31), "Europe/Berlin")
    assert period.until - period.since == 23 * 3600
    for k in range(23):
        record(store, decision(period.since + k * 3600 + 60, "can"))
    r = build_report(store, TAX, period, ReportConfig(timezone="Europe/Berlin"), station=STATION)
    store.close()
    hours = r.rows("hour")
    assert len(hours) == 23 and len({b.start for b in hours}) == 23
    assert [(b.label, b.items) for b in r.rows("day")] == [("2024-03-31", 23)]
    assert sum(b.items for b in r.rows("shift")) == 23


@pytest.mark.parametrize(("data", "error"), [
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"shifts": [{"name": "a", "start": "06:00", "end": "18:00"},
                 {"name": "b", "start": "17:00", "end": "06:00"}]}, "in two"),
    ({"shifts": [{"name": "a", "start": "06:00", "end": "14:00"}]}, "in no shift"),
    ({"shifts": [{"name": "a", "start": "06:30", "end": "06:30"}]}, "whole local hour"),
    ({"shifts": [{"name": "a", "start": "00:00", "end": "12:00"}, {"name": "a", "start": "12:00",
                                                                   "end": "00:00"}]}, "repeat"),
    ({"diverted_streams": ["plastic", "residual"]}, "not diversion"),
    ({"mass_kg": {"plastic": 0}}, "must be > 0"),
    ({"colour": "green"}, "Extra inputs"),
])
def test_bad_reports_config_is_refused_with_its_path(tmp_path: Path, data: dict[str, object],
                                                     error: str) -> None:
    path = tmp_path / "reports.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ReportError, match=error) as info:
        load_report_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("start", "end", "error"), [
    ("2024-05-02", "2024-05-01", "before it starts"), ("2024-13-01", "2024-12-31", "YYYY-MM-DD"),
    ("yesterday", "2024-05-01", "YYYY-MM-DD")])
def test_bad_period_is_refused(start: str, end: str, error: str) -> None:
    with pytest.raises(ReportError, match=error):
        Period.parse(start, end)


def test_mass_overrides_change_kg_and_unknown_classes_are_refused(seeded: Seeded) -> None:
    r = build_report(seeded.store, TAX, PERIOD, ReportConfig(mass_kg={"plastic": 1.5}), station=STATION)
    plastic = next(s for s in r.streams if s.stream == "plastic")
    assert plastic.kg == pytest.approx(plastic.items * 1.5)
    with pytest.raises(ReportError, match="not in the taxonomy"):
        build_report(seeded.store, TAX, PERIOD, ReportConfig(mass_kg={"unobtainium": 1.0}), station=STATION)


def test_json_round_trips_and_csv_carries_the_same_numbers(seeded: Seeded, tmp_path: Path) -> None:
    r = build_report(seeded.store, TAX, PERIOD, ReportConfig(), station=STATION)
    assert Report.load(r.save(tmp_path / "r.json")) == r
    rows = list(csv.DictReader(io.StringIO(to_csv(r))))
    assert tuple(rows[0]) == CSV_COLUMNS
    totals = {row["metric"]: row["value"] for row in rows if row["level"] == "total"}
    assert int(totals["items"]) == r.totals.items and float(totals["kg"]) == pytest.approx(r.totals.kg)
    assert float(totals["diverted_share_items"]) == pytest.approx(r.totals.diverted_share_items)
    assert int(totals["hazards_handled"]) == r.totals.hazards_handled
    for level in ("hour", "shift", "day"):
        items = Counter[str]()
        for row in rows:
            if row["level"] == level and row["metric"] == "items":
                items[row["stream"]] += int(row["value"])
        assert dict(items) == {s.stream: s.items for s in r.streams if s.items}, level
        corrections = sum(int(row["value"]) for row in rows if row["level"] == level and
                          row["metric"] == "corrections")
        assert corrections == r.totals.corrections


def _pdf_string(text: str) -> bytes:
    return b"(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1") + b")"


def test_pdf_shows_the_reports_totals(seeded: Seeded) -> None:
    r = build_report(seeded.store, TAX, PERIOD, ReportConfig(), station=STATION)
    pdf = to_pdf(r, compress=False)
    assert pdf.startswith(b"%PDF") and b"/Subtype /Image" in pdf
    shown = [value for _, value in totals_rows(r)] + [v for row in stream_rows(r) for v in row]
    shown += [f"Period: {r.period_label} (UTC). Generated {r.generated_at}."]
    for text in shown:
        assert _pdf_string(text) in pdf, text
    assert _pdf_string(str(r.totals.items)) not in to_pdf(r)  # compressed: the check above is a real one


def test_report_command_gives_the_same_numbers(seeded: Seeded, tmp_path: Path) -> None:
    cfg = tmp_path / "station.yaml"
    store = {"url": f"sqlite:///{seeded.db}", "evidence_dir": str(tmp_path)}
    cfg.write_text(yaml.safe_dump({"store": store}))
    rcfg = tmp_path / "reports.yaml"
    rcfg.write_text("timezone: UTC\n")
    app = typer.Typer()
    register_report_command(app)
    app.command("noop")(lambda: None)  # a second command, so typer keeps `report` as a sub-command
    args = ["report", "--from", PERIOD.start.isoformat(), "--to", PERIOD.end.isoformat(),
            "--config", str(cfg), "--reports-config", str(rcfg)]
    runner = CliRunner()
    out = runner.invoke(app, [*args, "--format", "json"])
    assert out.exit_code == 0, out.output
    expected = build_report(seeded.store, TAX, PERIOD, ReportConfig(), station=STATION)
    got = Report.from_dict(json.loads(out.stdout))
    assert replace(got, generated_at="") == replace(expected, generated_at="")
    assert runner.invoke(app, [*args, "--format", "csv", "--out", str(tmp_path / "r.csv")]).exit_code == 0
    assert (tmp_path / "r.csv").read_text() == to_csv(replace(expected, generated_at=""))
    assert runner.invoke(app, [*args, "--format", "pdf", "--out", str(tmp_path / "r.pdf")]).exit_code == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    bad = runner.invoke(app, [*args[:2], "2999-01-01", *args[3:]])
    assert bad.exit_code == 2 and "before it starts" in bad.output
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path / 'none.db'}"}}))
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2 and "no station database" in missing.output
    assert not (tmp_path / "none.db").exists()


def context(store: Store) -> ConsoleContext:
    return ConsoleContext(config=StationConfig(), taxonomy=TAX, store=store)


def test_impact_page_is_public_and_shows_the_report_totals(seeded: Seeded) -> None:
    ctx = context(seeded.store)
    web = FastAPI()
    web.include_router(impact_router(ctx, cache_s=0))
    client = TestClient(web)
    rcfg = load_report_config(ctx.config.resolve(DEFAULT_CONFIG))
    period = Period(PERIOD.start, PERIOD.end, rcfg.timezone)
    t = build_report(seeded.store, TAX, period, rcfg, station=STATION).totals
    got = client.get("/impact.json", params={"from": str(PERIOD.start), "to": str(PERIOD.end)})
    assert got.status_code == 200
    body = got.json()
    assert (body["items"], body["diverted_items"], body["hazards_found"]) == (t.items, t.diverted_items,
                                                                             t.hazards_found)
    assert (body["kg"], body["diverted_kg"], body["diverted_share_items"], body["diverted_share_kg"]) == \
        pytest.approx((t.kg, t.diverted_kg, t.diverted_share_items, t.diverted_share_kg))
    everything = client.get("/impact.json").json()  # default: from the first item's day to today
    first = datetime.fromtimestamp(PERIOD.since - 1, rcfg.tz).date()
    assert everything["period_start"] == str(first)
    assert everything["items"] == build_report(seeded.store, TAX, Period(first, max(first, datetime.now(
        rcfg.tz).date()), rcfg.timezone), rcfg, station=STATION).totals.items
    page = client.get("/impact", params={"from": str(PERIOD.start), "to": str(PERIOD.end)})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in (f'<div class="big">{t.diverted_items}</div>', f"{t.diverted_kg:.1f} kg",
                 f"of all {t.items} items"):
        assert text in page.text
    assert client.get("/impact.json", params={"from": "2024-05-02", "to": "2024-05-01"}).status_code == 422


@pytest.mark.parametrize(("user", "error"), [
    (None, NotLoggedInError), (ConsoleUser("olga", "operator"), ForbiddenError),
    (("olga", "operator"), ForbiddenError), (ConsoleUser("mia", "manager"), None),
    ({"username": "ada", "role": "admin"}, None)])
def test_reports_tab_action_checks_the_role(seeded: Seeded, user: object,
                                            error: type[Exception] | None) -> None:
    ctx = context(seeded.store)
    if error is not None:
        with pytest.raises(error):
            make_report(ctx, user, str(PERIOD.start), str(PERIOD.end))
        return
    made = make_report(ctx, user, str(PERIOD.start), str(PERIOD.end))
    assert [p.suffix for p in made.files] == [".pdf", ".csv", ".json"]
    assert all(p.is_file() for p in made.files)
    assert Report.load(made.files[2]).totals == made.report.totals
    assert made.charts and made.charts[0].read_bytes().startswith(b"\x89PNG")


# (class, the outlet a report counts it under, whether it counts as diverted): hazardous items (loose batteries,
# phones and laptops with their battery, biohazards) are apart, whatever their material stream
OUTLETS = [("laptop", "hazard", False), ("phone", "hazard", False), ("battery", "hazard", False),
           ("medical", "hazard", False), ("keyboard", "electronics", True), ("can", "metal", True),
           ("textile", "textile", True), ("glass", "residual", False)]


@pytest.mark.parametrize(("cls", "outlet", "diverted"), OUTLETS)
def test_hazardous_items_are_reported_apart_from_diverted(tmp_path: Path, cls: str, outlet: str,
                                                          diverted: bool) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "ev")
    record(store, decision(PERIOD.since + 60, cls))
    r = build_report(store, TAX, PERIOD, ReportConfig(), station=STATION)
    mass = TAX.get(cls).mass_kg
    assert {s.stream: s.items for s in r.streams if s.items} == {outlet: 1}
    t = r.totals
    assert (t.diverted_items, t.diverted_kg) == ((1, mass) if diverted else (0, 0.0))
    hazardous = outlet == "hazard"
    assert (t.hazards_found, t.hazards_kg) == ((1, mass) if hazardous else (0, 0.0))
    ctx = context(store)
    web = FastAPI()
    web.include_router(impact_router(ctx, cache_s=0))
    client = TestClient(web)
    params = {"from": str(PERIOD.start), "to": str(PERIOD.end)}
    body = client.get("/impact.json", params=params).json()
    assert (body["diverted_items"], body["hazards_found"]) == (int(diverted), int(hazardous))
    assert body["hazards_kg"] == pytest.approx(mass if hazardous else 0.0)
    assert set(body["method"]) == {"items", "kg", "diverted", "hazards", "handled", "corrections"}
    page = client.get("/impact", params=params).text
    diverted_part, hazard_part = page.split("Hazardous items, apart")
    assert f'<div class="big">{int(diverted)}</div>' in diverted_part
    assert f'<div class="big">{int(hazardous)}</div>' in hazard_part.split("How each figure")[0]
    assert "Hazardous items are never counted as diverted" in page
    store.close()


def test_a_report_says_how_each_figure_is_computed(seeded: Seeded) -> None:
    r = build_report(seeded.store, TAX, PERIOD, ReportConfig(), station=STATION)
    assert set(r.method) == {"items", "kg", "diverted", "hazards", "handled", "corrections"}
    assert "electronics, plastic, metal, textile without a hazard" in r.method["diverted"]
    pdf = to_pdf(r, compress=False)
    assert _pdf_string("How each figure is computed") in pdf
    assert _pdf_string(": " + r.method["handled"]) in pdf


@pytest.mark.parametrize(("start", "end", "error"), [
    ("0001-01-01", "2024-05-01", "from: 0001-01-01 is out of range"),
    ("2024-05-01", "9999-12-31", "to: 9999-12-31 is out of range"),
    ("2024-05-01", "2024-02-30", "to: '2024-02-30' is not a day"),
    ("2024-05-01", "99999-01-01", "to: '99999-01-01' is not a day"),
    ("1970-01-01", "2999-12-31", "to: 1970-01-01 to 2999-12-31 is 376200 days; a report covers at most 366"),
])
def test_a_huge_or_impossible_period_names_its_field(seeded: Seeded, start: str, end: str, error: str) -> None:
    with pytest.raises(ReportError, match=error):
        build_report(seeded.store, TAX, Period.parse(start, end), ReportConfig(), station=STATION)
    with pytest.raises(ReportError, match=error):
        make_report(context(seeded.store), ConsoleUser("mia", "manager"), start, end)


def test_the_report_command_and_impact_page_name_the_field_of_a_bad_day(seeded: Seeded, tmp_path: Path) -> None:
    cfg = tmp_path / "station.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{seeded.db}", "evidence_dir": str(tmp_path)}}))
    app = typer.Typer()
    register_report_command(app)
    app.command("noop")(lambda: None)
    out = CliRunner().invoke(app, ["report", "--from", "2024-05-01", "--to", "9999-12-31", "--config", str(cfg)])
    assert out.exit_code == 2 and "to: 9999-12-31 is out of range" in out.output
    assert "date value out of range" not in out.output
    web = FastAPI()
    web.include_router(impact_router(context(seeded.store), cache_s=0))
    bad = TestClient(web).get("/impact.json", params={"from": "2024-05-01", "to": "9999-12-31"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "to"]
    assert "between 1970-01-01 and 2999-12-31" in bad.json()["detail"][0]["msg"]
