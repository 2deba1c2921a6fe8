"""Reports on a month of a busy station: generate N items (default 200,000) into a fresh store, then time each
report query and page build (the impact totals and page, the report itself, CSV, PDF, charts, the Reports tab's
whole action). A benchmark, run by hand; figures in docs/reports.md.

    .venv/bin/python bench/reports.py --items 200000 --days 30

Items are spread over the month with a day/night rhythm, classes drawn by a fixed mix (hazardous ones about 6 %),
every hazard item alarmed (half acknowledged, a tenth quarantined), 1 % corrected; a tenth of the items belong
to a scorecard run in the same store, so the live-runs filter does real work.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from station.config import StationConfig  # noqa: E402
from station.store import Store  # noqa: E402
from station.store.models import AlarmRow, Correction, Item, QuarantineEntry, RunRow  # noqa: E402
from station.taxonomy import load_taxonomy  # noqa: E402

MIX = {"plastic": 30, "can": 14, "metal": 6, "paper": 12, "glass": 8, "textile": 8, "cable": 4, "keyboard": 2,
       "mouse": 2, "pcb": 2, "e_device": 2, "monitor": 1, "battery": 3, "phone": 2, "laptop": 1}
STATION = "station-1"


def _row(rng: random.Random, t: float, cls: str | None, run_id: str, tax: object) -> dict[str, object]:
    stream = tax.stream_of(cls).value if cls else "manual"  # type: ignore[attr-defined]
    return {"item_id": uuid.uuid4().hex, "station_id": STATION, "run_id": run_id, "track_id": rng.randrange(10**6),
            "frame_index": 0, "crossed_at": t, "crossed_ticks": None, "decided_at": t, "class_name": cls,
            "stream": stream, "hazard": tax.hazard_of(cls) if cls else None,  # type: ignore[attr-defined]
            "confidence": 0.9, "votes": {cls: 0.9} if cls else {}, "observations": 8,
            "reason": "ok" if cls else "low_confidence", "detail": "", "x1": 0.0, "y1": 0.0, "x2": 10.0,
            "y2": 10.0, "model_version": "bench", "crop_scores": None, "classifier_version": None,
            "crop_path": None, "bin": stream}


def generate(store: Store, n: int, since: float, days: int, seed: int) -> dict[str, int]:
    """``n`` items over ``days`` days from ``since`` (a tenth in a scorecard run), alarms, quarantine, corrections."""
    rng, tax = random.Random(seed), load_taxonomy()
    classes, weights = [*MIX, None], [*MIX.values(), 3]
    live, card = "bench-live", "bench-scorecard"
    items, alarms, quarantine, corrections = [], [], [], []
    for k in range(n):
        hour = rng.choices(range(24), weights=[1 if h < 6 or h >= 22 else 6 for h in range(24)])[0]
        t = since + rng.randrange(days) * 86_400 + hour * 3600 + rng.random() * 3600
        row = _row(rng, t, rng.choices(classes, weights)[0], card if k % 10 == 9 else live, tax)
        items.append(row)
        if row["hazard"] is not None:
            ack = rng.random() < 0.5
            alarms.append({"alarm_id": uuid.uuid4().hex, "kind": f"hazard.{row['hazard']}", "message": "hazard",
                           "severity": "critical", "item_id": row["item_id"], "raised_at": t,
                           "acknowledged_at": t + 30 if ack else None, "acknowledged_by": "olga" if ack else None})
            if rng.random() < 0.1:
                quarantine.append({"id": uuid.uuid4().hex, "item_id": row["item_id"], "hazard_type": row["hazard"],
                                   "container": "Q1", "handled_by": "olga", "handled_at": t + 60,
                                   "checklist": {"gloves": True}})
        if rng.random() < 0.01:
            corrections.append({"id": uuid.uuid4().hex, "item_id": row["item_id"], "username": "olga",
                                "role": "operator", "created_at": t + 5, "kind": "reclass",
                                "before_class": row["class_name"], "after_class": "metal", "box": None,
                                "frame_path": None, "undone": False})
    with store.engine.begin() as conn:
        conn.execute(insert(RunRow), [{"run_id": r, "station_id": STATION, "kind": kind, "started_at": since,
                                        "ended_at": since + days * 86_400, "source": "simulator"}
                                       for r, kind in ((live, "live"), (card, "scorecard"))])
        for table, rows in ((Item, items), (AlarmRow, alarms), (QuarantineEntry, quarantine),
                            (Correction, corrections)):
            for i in range(0, len(rows), 20_000):
                conn.execute(insert(table), rows[i:i + 20_000])
    return {"items": len(items), "alarms": len(alarms), "quarantined": len(quarantine),
            "corrections": len(corrections)}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, best) wall seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def measure(store: Store, days: int, first: datetime, repeat: int, out: Path) -> dict[str, tuple[float, float]]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from ui.auth import ConsoleUser
    from ui.context import ConsoleContext
    from ui.impact import impact_router
    from ui.report_export import save_charts, to_csv, to_pdf
    from ui.reports import Period, ReportConfig, build_report, compute_totals, make_report

    tax, rcfg = load_taxonomy(), ReportConfig()
    period = Period(first.date(), (first + timedelta(days=days - 1)).date())
    ctx = ConsoleContext(config=StationConfig(), taxonomy=tax, store=store)
    web = FastAPI()
    web.include_router(impact_router(ctx, cache_s=0))
    client = TestClient(web)
    params = {"from": str(period.start), "to": str(period.end)}
    report = build_report(store, tax, period, rcfg, station=STATION)
    steps: dict[str, Callable[[], object]] = {
        "impact totals (compute_totals)": lambda: compute_totals(store, period, rcfg, rcfg.masses(tax),
                                                                 station=STATION),
        "GET /impact.json": lambda: client.get("/impact.json", params=params),
        "GET /impact (page)": lambda: client.get("/impact", params=params),
        "build_report": lambda: build_report(store, tax, period, rcfg, station=STATION),
        "to_csv": lambda: to_csv(report),
        "to_pdf (with its chart)": lambda: to_pdf(report),
        "save_charts": lambda: save_charts(report, out / "charts"),
        "Reports tab action (report + CSV + PDF + JSON + charts)":
            lambda: make_report(ctx, ConsoleUser("mia", "manager"), str(period.start), str(period.end)),
    }
    to_pdf(report)  # matplotlib's and reportlab's first-use set-up is not a report's cost
    return {name: timed(fn, repeat) for name, fn in steps.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="Folder for the store (default: a fresh temporary one).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sortloop-bench-reports-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(out)  # the Reports tab's downloads land here too
        first = datetime(2026, 11, 1, tzinfo=UTC)
        store = Store.open(f"sqlite:///{out / 'reports.db'}", out / "evidence")
        t0 = time.perf_counter()
        counts = generate(store, args.items, first.timestamp(), args.days, args.seed)
        generated_s = time.perf_counter() - t0
        figures = measure(store, args.days, first, args.repeat, out)
        store.close()
    print(f"generated {json.dumps(counts)} over {args.days} days in {generated_s:.1f} s")
    print(f"{'step':<60}{'median s':>10}{'best s':>10}")
    for name, (median, best) in figures.items():
        print(f"{name:<60}{median:>10.3f}{best:>10.3f}")
    print(json.dumps({"items": counts["items"], "days": args.days,
                      "seconds": {k: round(v[0], 3) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
