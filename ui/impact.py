"""The public impact page: what the station kept out of residual waste, and the hazardous items it caught, apart.
``/impact`` (HTML) and ``/impact.json``, read-only and without login, with the report's totals
(``ui.reports.compute_totals``: this station's live runs only) and how each figure is computed."""

from __future__ import annotations

import html
import threading
import time
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from station.store import ItemScope
from ui.context import ConsoleContext
from ui.report_queries import first_item_time
from ui.reports import (
    DEFAULT_CONFIG,
    FIRST_DAY,
    LAST_DAY,
    Period,
    ReportConfig,
    ReportError,
    compute_totals,
    fmt_kg,
    fmt_share,
    load_report_config,
    method_notes,
)

CACHE_HEADERS = {"Cache-Control": "public, max-age=60"}


def _sane_day(day: date | None) -> date | None:
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"a day between {FIRST_DAY} and {LAST_DAY}")
    return day


From = Annotated[date | None, Query(alias="from", description="First day (YYYY-MM-DD); default: the first "
                                    "recorded item's day."), AfterValidator(_sane_day)]
To = Annotated[date | None, Query(description="Last day, included (YYYY-MM-DD); default: today."),
               AfterValidator(_sane_day)]


class ImpactOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station: str
    period_start: date = Field(description="First day of the period (local time).")
    period_end: date = Field(description="Last day of the period, included.")
    timezone: str
    items: int = Field(description="Items the station decided in the period.")
    kg: float = Field(description="Their estimated mass (kg), from mean masses per class.")
    diverted_items: int = Field(description="Items sorted to a material stream instead of residual, hazardous "
                                "items left out.")
    diverted_kg: float = Field(description="Their estimated mass (kg).")
    diverted_share_items: float | None = Field(description="Diverted items ÷ all items (null: no items).")
    diverted_share_kg: float | None = Field(description="Diverted kg ÷ all kg (null: no kg).")
    hazards_found: int = Field(description="Hazardous items (batteries, phones and laptops with their battery, "
                               "biohazards) caught on the belt: apart from diverted material.")
    hazards_kg: float = Field(description="Their estimated mass (kg).")
    diverted_streams: list[str] = Field(description="Streams that count as diverted.")
    method: dict[str, str] = Field(description="How each figure is computed (items, kg, diverted, hazards …).")
    generated_at: float


def _period(ctx: ConsoleContext, rcfg: ReportConfig, start: date | None, end: date | None) -> Period:
    """The asked period; by default all time: from the first recorded item's day to today."""
    today = datetime.now(rcfg.tz).date()
    if start is None:
        first = first_item_time(ctx.store, ItemScope(station_id=ctx.config.station_id))
        start = today if first is None else datetime.fromtimestamp(first, rcfg.tz).date()
    return Period(start, end or max(today, start), rcfg.timezone)


class _Impact:
    """Computes (and briefly caches) the totals: the page is public and may be hit often."""

    def __init__(self, ctx: ConsoleContext, cache_s: float) -> None:
        self.ctx, self.cache_s = ctx, cache_s
        self.rcfg = load_report_config(ctx.config.resolve(DEFAULT_CONFIG))
        self.masses = self.rcfg.masses(ctx.taxonomy)
        self._cache: dict[tuple[date | None, date | None], tuple[float, ImpactOut]] = {}
        self._lock = threading.Lock()

    def get(self, start: date | None, end: date | None) -> ImpactOut:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get((start, end))
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        try:
            out = self._compute(start, end)
        except ReportError as exc:
            raise HTTPException(422, str(exc)) from None
        with self._lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[(start, end)] = (now, out)
        return out

    def _compute(self, start: date | None, end: date | None) -> ImpactOut:
        period = _period(self.ctx, self.rcfg, start, end)
        station = self.ctx.config.station_id
        t, _, _ = compute_totals(self.ctx.store, period, self.rcfg, self.masses, station=station)
        diverted = [s.value for s in self.rcfg.diverted_streams]
        return ImpactOut(station=station, period_start=period.start, period_end=period.end,
                         timezone=period.tz, items=t.items, kg=t.kg, diverted_items=t.diverted_items,
                         diverted_kg=t.diverted_kg, diverted_share_items=t.diverted_share_items,
                         diverted_share_kg=t.diverted_share_kg, hazards_found=t.hazards_found,
                         hazards_kg=t.hazards_kg, diverted_streams=diverted, method=method_notes(diverted),
                         generated_at=time.time())


def impact_router(ctx: ConsoleContext, *, cache_s: float = 30.0) -> APIRouter:
    """``GET /impact`` and ``GET /impact.json``; include it outside the console's login."""
    router = APIRouter(tags=["impact"])
    impact = _Impact(ctx, cache_s)

    @router.get("/impact.json", response_model=ImpactOut)
    def impact_json(start: From = None, to: To = None) -> ImpactOut:
        """Diverted items, kg and share of the period (the same totals as the report)."""
        return impact.get(start, to)

    @router.get("/impact", response_class=HTMLResponse)
    def impact_page(start: From = None, to: To = None) -> HTMLResponse:
        """A small public page of the same totals."""
        return HTMLResponse(render_html(impact.get(start, to)), headers=CACHE_HEADERS)

    return router


def render_html(o: ImpactOut) -> str:
    e = html.escape
    facts = [(str(o.diverted_items), "items kept out of residual waste", "diverted"),
             (f"{fmt_kg(o.diverted_kg)} kg", "estimated weight diverted to recycling streams", "kg"),
             (fmt_share(o.diverted_share_items),
              f"of all {o.items} items sorted ({fmt_share(o.diverted_share_kg)} by weight)", "items")]
    hazards = [(str(o.hazards_found), "hazardous items (batteries, phones and laptops with their battery) caught "
                "and kept out of the material streams", "hazards"),
               (f"{fmt_kg(o.hazards_kg)} kg", "estimated weight of those hazardous items, not counted as "
                "diverted", "kg")]
    cards, hazard_cards = _cards(facts), _cards(hazards, "hazard")
    notes = "\n".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in o.method.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sorting impact - {e(o.station)}</title>
<style>
 body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:52rem;padding:0 1rem;color:#222}}
 .cards{{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:1rem;margin:1.5rem 0}}
 .card{{border:1px solid #ddd;border-radius:.5rem;padding:1rem;background:#f7faf7}}
 .big{{font-size:2rem;font-weight:700;color:#2e7d32}} small{{color:#666}}
 .hazard{{background:#fdf6ec}} .hazard .big{{color:#b26a00}} .method{{color:#444;font-size:.9rem}}
</style></head>
<body>
<h1>What our sorting station kept out of the residual bin</h1>
<p>Station <b>{e(o.station)}</b>, {e(o.period_start.isoformat())} to {e(o.period_end.isoformat())}
 ({e(o.timezone)}).</p>
<h2>Diverted to recycling</h2>
<div class="cards">
{cards}
</div>
<h2>Hazardous items, apart</h2>
<div class="cards">
{hazard_cards}
</div>
<h2>How each figure is computed</h2>
<ul class="method">
{notes}
</ul>
<p><small>Data: <a href="/impact.json">/impact.json</a>.</small></p>
</body></html>
"""


def _cards(facts: list[tuple[str, str, str]], css: str = "") -> str:
    """One card per (figure, what it is, its method note's key)."""
    e = html.escape
    cls = f"card {css}".strip()
    return "\n".join(f'<div class="{cls}" title="see: {e(key)}"><div class="big">{e(v)}</div><div>{e(t)}</div></div>'
                     for v, t, key in facts)
