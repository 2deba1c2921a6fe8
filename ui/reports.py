"""Reports over a period: items and estimated kg per stream per hour, shift and day; the share of intake
diverted from residual; hazardous items apart (found, kg, handled); corrections. One ``build_report`` feeds the
console's Reports tab, ``sortloop report`` (CSV, JSON, PDF) and the public /impact page, so all give the same
numbers. Every report reads one station's live runs only (never scorecard or benchmark runs), and says how each
figure is computed (``method_notes``).

Shifts, time zone, mass overrides and the diverted streams come from ``configs/reports.yaml`` (optional).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from station.store import ItemScope, Store
from station.taxonomy import Taxonomy
from ui import report_queries as q
from ui.access import require
from ui.auth import Perm
from ui.downloads import download_dir
from ui.report_config import DEFAULT_CONFIG, ReportConfig, ReportError, hour_of, load_report_config

if TYPE_CHECKING:
    from ui.context import ConsoleContext

log = logging.getLogger(__name__)

LEVELS = ("hour", "shift", "day")
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
MAX_DAYS = 366
"""The longest report (a year); /impact's totals may span more."""
__all__ = ["DEFAULT_CONFIG", "Period", "Report", "ReportConfig", "ReportError", "build_report",
           "build_reports_tab", "compute_totals", "load_report_config"]


# --------------------------------------------------------------------------------------------- period


@dataclass(frozen=True)
class Period:
    """Whole local days ``start`` … ``end`` (both included) in time zone ``tz``."""

    start: date
    end: date
    tz: str = "UTC"

    def __post_init__(self) -> None:
        for name, day in (("from", self.start), ("to", self.end)):
            if not FIRST_DAY <= day <= LAST_DAY:
                raise ReportError(f"{name}: {day} is out of range; pick a day between {FIRST_DAY} and {LAST_DAY}")
        if self.end < self.start:
            raise ReportError(f"period ends ({self.end}) before it starts ({self.start}); swap from and to")

    @classmethod
    def parse(cls, start: str, end: str, tz: str = "UTC") -> Period:
        return cls(_day("from", start), _day("to", end), tz)

    def check_length(self, max_days: int = MAX_DAYS) -> Period:
        """The period itself, refused (naming ``to``) when longer than ``max_days`` days."""
        days = (self.end - self.start).days + 1
        if days > max_days:
            raise ReportError(f"to: {self.start} to {self.end} is {days} days; a report covers at most {max_days} "
                              "days (a year): split it")
        return self

    def _midnight(self, d: date) -> float:
        return datetime.combine(d, dtime(0), tzinfo=ZoneInfo(self.tz)).timestamp()

    @property
    def since(self) -> float:
        return self._midnight(self.start)

    @property
    def until(self) -> float:
        return self._midnight(self.end + timedelta(days=1))

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


def _day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ReportError(f"{name}: {text!r} is not a day; write it as YYYY-MM-DD ({exc})") from None


# --------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class StreamRow:
    stream: str
    items: int
    kg: float


@dataclass(frozen=True)
class BucketRow:
    """Items and kg of one stream in one hour, shift or day (``start``: local ISO time)."""

    level: str
    start: str
    label: str
    stream: str
    items: int
    kg: float


@dataclass(frozen=True)
class ActivityRow:
    """Hazards found (and of those, handled) among items decided in the bucket; corrections made in it."""

    level: str
    start: str
    label: str
    hazards_found: int
    hazards_handled: int
    corrections: int


@dataclass(frozen=True)
class Totals:
    items: int
    kg: float
    diverted_items: int
    """Items of the diverted streams without a hazard (a hazardous item is never counted as diverted)."""
    diverted_kg: float
    diverted_share_items: float | None
    """Diverted items ÷ all items (None: no items)."""
    diverted_share_kg: float | None
    hazards_found: int
    """Items decided with a hazard (any stream): the ``hazard`` outlet, apart from diverted material."""
    hazards_kg: float
    hazards_handled: int
    corrections: int


def method_notes(diverted_streams: Iterable[str]) -> dict[str, str]:
    """How each figure is computed, in words: shown by the Reports tab, the PDF and /impact."""
    streams = ", ".join(diverted_streams)
    return {
        "items": "Items the station decided in the period, its live runs only (scorecard and benchmark runs "
                 "are kept apart).",
        "kg": "Estimated: each item counts the mean mass of its class (configs/reports.yaml mass_kg, else the "
              "taxonomy); items the station could not classify count 0 kg.",
        "diverted": f"Items sorted to {streams} without a hazard; share = diverted ÷ all items (by weight: "
                    "diverted kg ÷ all kg). Hazardous items are never counted as diverted.",
        "hazards": "Items decided with a hazard (loose batteries, phones and laptops with their battery, "
                   "biohazards), a battery in doubt included: sent to the hazard bin or to a person, reported "
                   "apart from the material streams.",
        "handled": "Hazardous items put in quarantine or whose hazard alarm was acknowledged.",
        "corrections": "Operator corrections made in the period; undone ones and confirmations left out.",
    }


@dataclass
class Report:
    """A period's report; ``to_dict``/``from_dict`` round-trip through JSON."""

    station: str
    period_start: str
    period_end: str
    timezone: str
    since: float
    until: float
    totals: Totals
    streams: list[StreamRow]
    hazards_by_kind: dict[str, int]
    buckets: list[BucketRow]
    activity: list[ActivityRow]
    diverted_streams: list[str]
    method: dict[str, str] = field(default_factory=dict)
    """How each figure is computed (``method_notes``)."""
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def period_label(self) -> str:
        return f"{self.period_start} to {self.period_end}"

    def rows(self, level: str) -> list[BucketRow]:
        return [b for b in self.buckets if b.level == level]

    def activity_rows(self, level: str) -> list[ActivityRow]:
        return [a for a in self.activity if a.level == level]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_json(self) -> str:
        """One line (the C encoder: a month of hourly rows in milliseconds; ``indent`` would take a second)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Report:
        raw: dict[str, object] = dict(data)
        try:
            raw["totals"] = Totals(**raw["totals"])  # type: ignore[arg-type]
            raw["streams"] = [StreamRow(**r) for r in raw["streams"]]  # type: ignore[attr-defined]
            raw["buckets"] = [BucketRow(**r) for r in raw["buckets"]]  # type: ignore[attr-defined]
            raw["activity"] = [ActivityRow(**r) for r in raw["activity"]]  # type: ignore[attr-defined]
            return cls(**raw)  # type: ignore[arg-type]
        except (KeyError, TypeError) as exc:
            raise ReportError(f"not a sortloop report ({exc}); make it again with `sortloop report`") from exc

    def save(self, path: Path) -> Path:
        Path(path).write_text(self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> Report:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def table(self) -> str:
        """Printable totals, per-stream and per-shift tables."""
        t = self.totals
        lines = [f"Report {self.station} {self.period_label} ({self.timezone})",
                 f"items {t.items}  kg {fmt_kg(t.kg)}  diverted {t.diverted_items} items "
                 f"({fmt_share(t.diverted_share_items)}), {fmt_kg(t.diverted_kg)} kg "
                 f"({fmt_share(t.diverted_share_kg)})",
                 f"hazardous (apart) {t.hazards_found} items, {fmt_kg(t.hazards_kg)} kg  handled {t.hazards_handled}  "
                 f"corrections {t.corrections}", "",
                 f"{'stream':<12}{'items':>10}{'kg':>12}"]
        lines += [f"{s.stream:<12}{s.items:>10}{fmt_kg(s.kg):>12}" for s in self.streams]
        lines += ["", f"{'shift':<12}{'items':>10}{'kg':>12}"]
        lines += [f"{name:<12}{n:>10}{fmt_kg(kg):>12}" for name, n, kg in shift_summary(self)]
        return "\n".join(lines)


def fmt_kg(kg: float) -> str:
    return f"{kg:.1f}"


def fmt_share(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f} %"


def shift_summary(report: Report) -> list[tuple[str, int, int | float]]:
    """(shift name, items, kg) summed over the period, in config order of first appearance."""
    acc: dict[str, list[float]] = {}
    for b in report.rows("shift"):
        name = b.label.split(" ", 1)[1]
        a = acc.setdefault(name, [0, 0.0])
        a[0] += b.items
        a[1] += b.kg
    return [(name, int(n), round(kg, 3)) for name, (n, kg) in acc.items()]


# -------------------------------------------------------------------------------------------- buckets


@dataclass(frozen=True)
class _Key:
    level: str
    start: str
    label: str


class _Bucketer:
    """Maps an epoch time to its hour, shift and day bucket (local time, shifts on whole hours)."""

    def __init__(self, period: Period, cfg: ReportConfig) -> None:
        self.since, self.tz = period.since, cfg.tz
        self.shift_of = cfg.shift_ofhour_of()
        self._keys: dict[float, list[_Key]] = {}

    def keys(self, t: float) -> list[_Key]:
        hour_start = self.since + (t - self.since) // 3600 * 3600
        found = self._keys.get(hour_start)
        if found is None:
            found = self._keys[hour_start] = self._hour_keys(hour_start)
        return found

    def _hour_keys(self, hour_start: float) -> list[_Key]:
        local = datetime.fromtimestamp(hour_start, self.tz)
        out = [_Key("hour", local.isoformat(), local.strftime("%Y-%m-%d %H:00"))]
        shift = self.shift_of.get(local.hour)
        if shift is not None:
            early = shift.wraps and local.hour < hour_of(shift.end)  # past midnight: it began yesterday
            day = local.date() - timedelta(days=1) if early else local.date()
            start = datetime.combine(day, dtime(hour_of(shift.start)), tzinfo=self.tz)
            out.append(_Key("shift", start.isoformat(), f"{day.isoformat()} {shift.name}"))
        midnight = datetime.combine(local.date(), dtime(0), tzinfo=self.tz)
        out.append(_Key("day", midnight.isoformat(), local.date().isoformat()))
        return out


def _stream_buckets(rows: Iterable[q.HourOutlet], bucketer: _Bucketer) -> list[BucketRow]:
    acc: dict[tuple[_Key, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for r in rows:
        for key in bucketer.keys(r.start):
            a = acc[(key, r.outlet)]
            a[0] += r.items
            a[1] += r.kg
    return [BucketRow(k.level, k.start, k.label, stream, int(n), round(kg, 6))
            for (k, stream), (n, kg) in sorted(acc.items(), key=lambda kv: (LEVELS.index(kv[0][0].level),
                                                                            kv[0][0].start, kv[0][1]))]


def _activity(hazards: list[q.HazardEvent], corrections: list[float],
              bucketer: _Bucketer) -> list[ActivityRow]:
    acc: dict[_Key, list[int]] = defaultdict(lambda: [0, 0, 0])
    for h in hazards:
        for key in bucketer.keys(h.decided_at):
            acc[key][0] += 1
            acc[key][1] += h.handled
    for t in corrections:
        for key in bucketer.keys(t):
            acc[key][2] += 1
    return [ActivityRow(k.level, k.start, k.label, *v)
            for k, v in sorted(acc.items(), key=lambda kv: (LEVELS.index(kv[0].level), kv[0].start))]


# ------------------------------------------------------------------------------------------------ build


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole > 0 else None


def _totals(per_outlet: dict[str, tuple[int, float]], hazards: list[q.HazardEvent], n_corrections: int,
            cfg: ReportConfig) -> tuple[Totals, list[StreamRow], dict[str, int]]:
    streams = [StreamRow(name, n, round(kg, 6))
               for name, (n, kg) in ((o, per_outlet.get(o, (0, 0.0))) for o in q.OUTLETS)]
    diverted = {s.value for s in cfg.diverted_streams}
    items, kg = sum(s.items for s in streams), sum(s.kg for s in streams)
    d_items = sum(s.items for s in streams if s.stream in diverted)
    d_kg = sum(s.kg for s in streams if s.stream in diverted)
    h_kg = per_outlet.get(q.HAZARD, (0, 0.0))[1]
    by_kind: dict[str, int] = defaultdict(int)
    for h in hazards:
        by_kind[h.kind] += 1
    totals = Totals(items, round(kg, 6), d_items, round(d_kg, 6), _share(d_items, items), _share(d_kg, kg),
                    len(hazards), round(h_kg, 6), sum(h.handled for h in hazards), n_corrections)
    return totals, streams, dict(sorted(by_kind.items()))


def compute_totals(store: Store, period: Period, cfg: ReportConfig, masses: dict[str, float], *, station: str,
                   ) -> tuple[Totals, list[StreamRow], dict[str, int]]:
    """Period totals, per-outlet totals and hazards by kind of ``station``'s live runs (what /impact shows;
    the report's own totals)."""
    scope = ItemScope(station_id=station)
    return _totals(q.period_outlets(store, period.since, period.until, masses, scope),
                   q.hazard_events(store, period.since, period.until, scope),
                   len(q.correction_times(store, period.since, period.until, scope)), cfg)


def build_report(store: Store, taxonomy: Taxonomy, period: Period, cfg: ReportConfig | None = None, *,
                 station: str) -> Report:
    """The report of ``period`` for ``station``'s live runs (see module doc); at most ``MAX_DAYS`` days."""
    cfg = cfg or ReportConfig(timezone=period.tz)
    if cfg.timezone != period.tz:
        raise ReportError(f"period is in {period.tz} but the reports config in {cfg.timezone}; use one zone")
    period.check_length()
    masses = cfg.masses(taxonomy)
    since, until, scope = period.since, period.until, ItemScope(station_id=station)
    hazards = q.hazard_events(store, since, until, scope)
    corrections = q.correction_times(store, since, until, scope)
    hourly = q.hourly_outlets(store, since, until, masses, scope)
    totals, streams, by_kind = _totals(q.outlet_totals(hourly), hazards, len(corrections), cfg)
    bucketer = _Bucketer(period, cfg)
    diverted = [s.value for s in cfg.diverted_streams]
    return Report(station=station, period_start=period.start.isoformat(), period_end=period.end.isoformat(),
                  timezone=period.tz, since=since, until=until, totals=totals, streams=streams,
                  hazards_by_kind=by_kind, buckets=_stream_buckets(hourly, bucketer),
                  activity=_activity(hazards, corrections, bucketer), diverted_streams=diverted,
                  method=method_notes(diverted))


# ------------------------------------------------------------------------------------------ console tab


@dataclass(frozen=True)
class ReportFiles:
    """A report made in the console, with its downloads (CSV, PDF, JSON) and charts."""

    report: Report
    files: list[Path]
    charts: list[Path]


def make_report(ctx: ConsoleContext, user: object, start: str, end: str) -> ReportFiles:
    """The Reports tab's action: check the permission, build the report, write CSV, PDF, JSON and charts."""
    from ui.report_export import save_charts, to_csv, to_pdf

    require(user, Perm.REPORTS)
    rcfg = load_report_config(ctx.config.resolve(DEFAULT_CONFIG))
    period = Period.parse(start.strip(), end.strip(), rcfg.timezone)
    report = build_report(ctx.store, ctx.taxonomy, period, rcfg, station=ctx.config.station_id)
    out = download_dir("sortloop-report-")  # a folder Gradio may serve downloads from
    stem = f"report_{period.start}_{period.end}"
    charts = save_charts(report, out)  # the first is the PDF's chart: drawn once
    (out / f"{stem}.csv").write_text(to_csv(report))
    (out / f"{stem}.pdf").write_bytes(to_pdf(report, chart=charts[0].read_bytes()))
    report.save(out / f"{stem}.json")
    files = [out / f"{stem}.{ext}" for ext in ("pdf", "csv", "json")]
    return ReportFiles(report, files, charts)


def summary_markdown(r: Report) -> str:
    t = r.totals
    return (f"### {r.period_label} ({r.timezone})\n"
            f"**{t.items}** items, **{fmt_kg(t.kg)} kg** (estimated) · diverted from residual: "
            f"**{t.diverted_items}** items ({fmt_share(t.diverted_share_items)}), "
            f"**{fmt_kg(t.diverted_kg)} kg** ({fmt_share(t.diverted_share_kg)}) · hazardous items (apart from "
            f"diverted) **{t.hazards_found}**, **{fmt_kg(t.hazards_kg)} kg**, handled **{t.hazards_handled}** · "
            f"corrections **{t.corrections}**\n\n" + "\n".join(f"- *{k}*: {v}" for k, v in r.method.items()))


def bucket_table(r: Report, level: str) -> tuple[list[str], list[list[object]]]:
    """Wide table of one level: bucket, items per stream, total items and kg, hazards and corrections."""
    streams = list(q.OUTLETS)
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for b in r.rows(level):
        row = rows[b.label]
        row[b.stream] += b.items
        row["items"] += b.items
        row["kg"] += b.kg
    for a in r.activity_rows(level):
        row = rows[a.label]
        row["hazards found"], row["handled"] = a.hazards_found, a.hazards_handled
        row["corrections"] = a.corrections
    head = [level, *streams, "items", "kg", "hazards found", "handled", "corrections"]
    body: list[list[object]] = [[label, *(int(v[s]) for s in streams), int(v["items"]), round(v["kg"], 1),
                                 int(v["hazards found"]), int(v["handled"]), int(v["corrections"])]
                                for label, v in sorted(rows.items())]
    return head, body


def build_reports_tab(ctx: ConsoleContext, user_state: Any) -> None:
    """The Reports tab (managers, admins): period, totals, tables per hour/shift/day, chart, CSV/PDF/JSON."""
    import gradio as gr
    import pandas as pd

    from ui.auth import AuthError

    today = datetime.now(load_report_config(ctx.config.resolve(DEFAULT_CONFIG)).tz).date()
    with gr.Row():
        start = gr.Textbox(label="From (YYYY-MM-DD)", value=today.replace(day=1).isoformat())
        end = gr.Textbox(label="To, included (YYYY-MM-DD)", value=today.isoformat())
        go = gr.Button("Make report", variant="primary")
    summary = gr.Markdown()
    level = gr.Radio(list(LEVELS), value="day", label="Throughput per")
    table = gr.Dataframe(label="Throughput", interactive=False, wrap=True)
    streams = gr.Dataframe(label="Per stream", interactive=False)
    with gr.Row():
        chart = gr.Image(label="Items per stream", type="filepath")
        files = gr.File(label="Downloads (PDF, CSV, JSON)", file_count="multiple")
    held = gr.State(None)

    def frame(r: Report, lv: str) -> pd.DataFrame:
        head, body = bucket_table(r, lv)
        return pd.DataFrame(body, columns=head)

    def on_make(a: str, b: str, lv: str, user: Any) -> tuple[object, ...]:
        try:
            made = make_report(ctx, user, a, b)
        except (AuthError, ReportError) as exc:
            raise gr.Error(str(exc)) from None
        r = made.report
        per_stream = pd.DataFrame([(s.stream, s.items, round(s.kg, 1)) for s in r.streams],
                                  columns=["stream", "items", "kg"])
        who = require(user, Perm.REPORTS).username  # Gradio serves these to this user only (ui.downloads)
        offer = ctx.downloads.offer
        return (summary_markdown(r), frame(r, lv), per_stream, offer(made.charts[0], who, once=False),
                [offer(p, who, once=False) for p in made.files], r)

    def on_level(lv: str, r: Report | None, user: Any) -> pd.DataFrame:
        try:
            require(user, Perm.REPORTS)
        except AuthError as exc:
            raise gr.Error(str(exc)) from None
        return frame(r, lv) if r is not None else pd.DataFrame()

    go.click(on_make, [start, end, level, user_state], [summary, table, streams, chart, files, held])
    level.change(on_level, [level, held, user_state], table)
