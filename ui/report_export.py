"""A report as CSV, as charts (PNG, matplotlib's Agg canvas) and as the PDF a neighbourhood council reads each
month (reportlab, built-in Helvetica only, so nothing is fetched and any PDF reader shows it)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import asdict
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

from ui.reports import Report, fmt_kg, fmt_share, shift_summary

STREAM_COLOURS = {"electronics": "#4c72b0", "plastic": "#dd8452", "metal": "#8c8c8c", "textile": "#c44e52",
                  "residual": "#55a868", "manual": "#b8b8b8", "hazard": "#e8a33d"}
HOURLY_CHART_DAYS = 7
"""Periods up to this many days also get an items-per-hour chart (beyond, hours are too thin to read)."""


CSV_COLUMNS = ("level", "start", "label", "stream", "metric", "value")


def to_csv(report: Report) -> str:
    """Long format, one number per row: ``level,start,label,stream,metric,value``.

    Levels: total, stream, hazard (label = kind), hour, shift, day. Hour/shift/day rows carry ``items`` and
    ``kg`` per stream (``hazard``: hazardous items, apart from the material streams), and ``hazards_found``,
    ``hazards_handled``, ``corrections`` with an empty stream.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    start = datetime.fromtimestamp(report.since, ZoneInfo(report.timezone)).isoformat()
    label = report.period_label
    for metric, value in asdict(report.totals).items():
        w.writerow(("total", start, label, "", metric, "" if value is None else value))
    for s in report.streams:
        w.writerow(("stream", start, label, s.stream, "items", s.items))
        w.writerow(("stream", start, label, s.stream, "kg", s.kg))
    for kind, n in report.hazards_by_kind.items():
        w.writerow(("hazard", start, kind, "", "hazards_found", n))
    for b in report.buckets:
        w.writerow((b.level, b.start, b.label, b.stream, "items", b.items))
        w.writerow((b.level, b.start, b.label, b.stream, "kg", b.kg))
    for a in report.activity:
        for metric in ("hazards_found", "hazards_handled", "corrections"):
            w.writerow((a.level, a.start, a.label, "", metric, getattr(a, metric)))
    return buf.getvalue()


def chart_level(report: Report) -> str:
    """Hours for a report of up to two days, days beyond."""
    return "hour" if (report.until - report.since) <= 2 * 86_400 + 3600 else "day"


def _grid(report: Report, level: str) -> list[tuple[str, str]]:
    """(bucket start as in the report's rows, tick label) for every hour or day of the period."""
    tz = ZoneInfo(report.timezone)
    if level == "hour":
        starts = [datetime.fromtimestamp(report.since + k * 3600, tz)
                  for k in range(round((report.until - report.since) / 3600))]
        fmt = "%H:00" if report.period_start == report.period_end else "%m-%d %Hh"
        return [(t.isoformat(), t.strftime(fmt)) for t in starts]
    first, last = date.fromisoformat(report.period_start), date.fromisoformat(report.period_end)
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    return [(datetime.combine(d, dtime(0), tzinfo=tz).isoformat(), d.strftime("%m-%d")) for d in days]


def chart_png(report: Report, level: str | None = None) -> bytes:
    """Stacked bars: items per stream in each hour or day of the period (one filled step outline per stream, so
    a month of hours draws as fast as a day)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    level = level or chart_level(report)
    grid = _grid(report, level)
    index = {start: i for i, (start, _) in enumerate(grid)}
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(grid))
    for b in report.rows(level):
        if b.start in index:
            counts[b.stream][index[b.start]] += b.items
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    bottom = [0] * len(grid)
    edges = [k - 0.5 for k in range(len(grid) + 1)]
    for stream, colour in STREAM_COLOURS.items():
        if stream in counts:
            top = [a + b for a, b in zip(bottom, counts[stream], strict=True)]
            ax.stairs(top, edges, baseline=bottom, fill=True, color=colour, label=stream)
            bottom = top
    step = max(1, len(grid) // 16)
    ax.set_xticks(range(0, len(grid), step), [lab for _, lab in grid][::step], rotation=45, ha="right",
                  fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(ylabel="items", title=f"Items per {level} and stream, {report.period_label}")
    if counts:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def save_charts(report: Report, out_dir: Path) -> list[Path]:
    """Write items_per_hour.png (and items_per_day.png for longer periods; a period longer than
    ``HOURLY_CHART_DAYS`` days gets the daily chart only) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    days = round((report.until - report.since) / 86_400)
    levels = ["hour"] if chart_level(report) == "hour" else ["day", "hour"][:1 + (days <= HOURLY_CHART_DAYS)]
    paths = []
    for level in levels:
        path = out_dir / f"items_per_{level}.png"
        path.write_bytes(chart_png(report, level))
        paths.append(path)
    return paths


def totals_rows(report: Report) -> list[tuple[str, str]]:
    """The totals table of the PDF (and the console), as printed strings."""
    t = report.totals
    return [("Items sorted", str(t.items)),
            ("Estimated mass (kg)", fmt_kg(t.kg)),
            ("Diverted from residual (items)", f"{t.diverted_items} ({fmt_share(t.diverted_share_items)})"),
            ("Diverted from residual (kg)", f"{fmt_kg(t.diverted_kg)} ({fmt_share(t.diverted_share_kg)})"),
            ("Hazardous items, apart (items)", str(t.hazards_found)),
            ("Hazardous items, apart (kg)", fmt_kg(t.hazards_kg)),
            ("Hazardous items handled", str(t.hazards_handled)),
            ("Operator corrections", str(t.corrections))]


def stream_rows(report: Report) -> list[tuple[str, str, str, str]]:
    total = report.totals.items
    return [(s.stream, str(s.items), fmt_kg(s.kg), fmt_share(s.items / total if total else None))
            for s in report.streams]


def to_pdf(report: Report, *, compress: bool = True, chart: bytes | None = None) -> bytes:
    """The report as a PDF: title, period, totals, per-stream and per-shift tables, chart (``chart``: the PNG
    ``chart_png(report)`` already drew, e.g. the first of ``save_charts``; drawn here when None)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    grid = TableStyle([("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("FONTSIZE", (0, 0), (-1, -1), 9),
                       ("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("ALIGN", (1, 0), (-1, -1), "RIGHT")])
    plain = TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                        ("FONTSIZE", (0, 0), (-1, -1), 10)])
    title = f"Sorting and diversion report{' - ' + report.station if report.station else ''}"
    story = [Paragraph(title, styles["Title"]),
             Paragraph(f"Period: {report.period_label} ({report.timezone}). Generated {report.generated_at}.",
                       styles["Normal"]), Spacer(1, 0.4 * cm),
             Paragraph("Totals", styles["Heading2"]), Table(totals_rows(report), style=plain, hAlign="LEFT"),
             Paragraph("Per stream", styles["Heading2"]),
             Table([("Stream", "Items", "Est. kg", "Share of items"), *stream_rows(report)], style=grid,
                   hAlign="LEFT")]
    shifts = shift_summary(report)
    if shifts:
        story += [Paragraph("Per shift (whole period)", styles["Heading2"]),
                  Table([("Shift", "Items", "Est. kg"), *((n, str(i), fmt_kg(kg)) for n, i, kg in shifts)],
                        style=grid, hAlign="LEFT")]
    story += [Spacer(1, 0.4 * cm), Image(io.BytesIO(chart or chart_png(report)), width=17 * cm, height=7.6 * cm),
              Paragraph("How each figure is computed", styles["Heading2"]),
              *(Paragraph(f"<b>{name}</b>: {text}", styles["Normal"]) for name, text in report.method.items())]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, title=title, author="sortloop", pageCompression=int(compress),
                            leftMargin=2 * cm, rightMargin=2 * cm, topMargin=2 * cm, bottomMargin=2 * cm)
    doc.build(story)
    return buf.getvalue()
