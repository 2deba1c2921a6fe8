"""Read-only queries behind reports, /impact and the engineer view. Counts come from ``Store.tally`` (the one
grouped query behind /api/throughput too); hazard handling and corrections are read here. Every query takes an
``ItemScope``: reports read one station's live runs only (``station.runs``).

Items are counted per **outlet**: a hazardous item (a hazard kind set: loose batteries, phones and laptops with
their batteries, biohazards) counts under ``hazard`` whatever its material stream, so it is never "diverted";
every other item under its stream."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select

from station.store import ItemScope, Store, TallyRow
from station.store.models import AlarmRow, Correction, Item, QuarantineEntry
from station.store.repository import scope_conditions
from station.taxonomy import Stream

HAZARD = "hazard"
OUTLETS = (*(s.value for s in Stream), HAZARD)
"""Where the report counts an item: its stream, or ``hazard`` for a hazardous item."""


@dataclass(frozen=True)
class HourOutlet:
    start: float
    outlet: str
    items: int
    kg: float


@dataclass(frozen=True)
class HazardEvent:
    """An item decided with a hazard; ``handled`` when it was quarantined or its hazard alarm acknowledged."""

    item_id: str
    decided_at: float
    kind: str
    handled: bool


def outlet_of(row: TallyRow) -> str:
    return HAZARD if row.hazard is not None else row.stream.value


def _per_outlet(rows: Iterable[TallyRow], masses: Mapping[str, float]) -> list[HourOutlet]:
    acc: dict[tuple[float, str], tuple[int, float]] = {}
    for r in rows:
        key = (r.bucket_start, outlet_of(r))
        n, kg = acc.get(key, (0, 0.0))
        acc[key] = (n + r.items, kg + r.items * (masses.get(r.class_name, 0.0) if r.class_name else 0.0))
    return [HourOutlet(start, outlet, n, kg) for (start, outlet), (n, kg) in sorted(acc.items())]


def hourly_outlets(store: Store, since: float, until: float, masses: Mapping[str, float],
                   scope: ItemScope) -> list[HourOutlet]:
    """Items and kg per outlet per hour of ``[since, until)``, hours counted from ``since``."""
    return _per_outlet(store.tally(since, until, 3600, origin=since, scope=scope), masses)


def outlet_totals(rows: Iterable[HourOutlet]) -> dict[str, tuple[int, float]]:
    """(items, kg) per outlet, summed over the buckets of ``rows``."""
    out: dict[str, tuple[int, float]] = {}
    for r in rows:
        n, kg = out.get(r.outlet, (0, 0.0))
        out[r.outlet] = (n + r.items, kg + r.kg)
    return out


def period_outlets(store: Store, since: float, until: float, masses: Mapping[str, float],
                   scope: ItemScope) -> dict[str, tuple[int, float]]:
    """(items, kg) per outlet over the whole of ``[since, until)``: one bucket, one query."""
    span = max(1, int(until - since) + 1)
    return outlet_totals(_per_outlet(store.tally(since, until, span, origin=since, scope=scope), masses))


def hazard_events(store: Store, since: float, until: float, scope: ItemScope) -> list[HazardEvent]:
    quarantined = exists().where(QuarantineEntry.item_id == Item.item_id)
    acknowledged = exists().where(and_(AlarmRow.item_id == Item.item_id, AlarmRow.kind.like("hazard.%"),
                                       AlarmRow.acknowledged_at.is_not(None)))
    stmt = (select(Item.item_id, Item.decided_at, Item.hazard, or_(quarantined, acknowledged))
            .where(Item.hazard.is_not(None), Item.decided_at >= since, Item.decided_at < until,
                   *scope_conditions(scope))
            .order_by(Item.decided_at))
    with store.engine.connect() as conn:
        return [HazardEvent(i, float(t), str(h), bool(ok)) for i, t, h, ok in conn.execute(stmt)]


def correction_times(store: Store, since: float, until: float, scope: ItemScope) -> list[float]:
    """When each correction in ``[since, until)`` was made (undone ones and confirmations left out), of items in
    ``scope`` or of missed items (no item: made at the console of the live station)."""
    of_scope = exists().where(Item.item_id == Correction.item_id, *scope_conditions(scope))
    stmt = select(Correction.created_at).where(Correction.undone.is_(False), Correction.kind != "confirm",
                                               Correction.created_at >= since, Correction.created_at < until,
                                               or_(Correction.item_id.is_(None), of_scope))
    with store.engine.connect() as conn:
        return [float(t) for t in conn.scalars(stmt)]


def first_item_time(store: Store, scope: ItemScope) -> float | None:
    with store.engine.connect() as conn:
        t = conn.scalar(select(func.min(Item.decided_at)).where(*scope_conditions(scope)))
    return None if t is None else float(t)
