"""Read-only queries behind reports and the engineer view that ``Store`` does not offer (hazard handling,
corrections, quarantine). Throughput itself comes from ``Store.throughput``, the same as /api/throughput."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select

from station.store import Store
from station.store.models import AlarmRow, Correction, Item, QuarantineEntry


@dataclass(frozen=True)
class HourStream:
    start: float
    stream: str
    items: int
    kg: float


@dataclass(frozen=True)
class HazardEvent:
    """An item decided with a hazard; ``handled`` when it was quarantined or its hazard alarm acknowledged."""

    item_id: str
    decided_at: float
    kind: str
    handled: bool


def hourly_streams(store: Store, since: float, until: float, masses: Mapping[str, float]) -> list[HourStream]:
    """Items and kg per stream per hour of ``[since, until)``, hours counted from ``since``."""
    rows = store.throughput(since, until, 3600, mass_kg=masses, origin=since)
    return [HourStream(r.bucket_start, r.stream.value, r.items, r.kg or 0.0) for r in rows]


def stream_totals(store: Store, since: float, until: float, masses: Mapping[str, float],
                  ) -> dict[str, tuple[int, float]]:
    """(items, kg) per stream over the whole of ``[since, until)``: one bucket, one query."""
    span = max(1, math.ceil(until - since))
    rows = store.throughput(since, until, span, mass_kg=masses, origin=since)
    out: dict[str, tuple[int, float]] = {}
    for r in rows:
        n, kg = out.get(r.stream.value, (0, 0.0))
        out[r.stream.value] = (n + r.items, kg + (r.kg or 0.0))
    return out


def hazard_events(store: Store, since: float, until: float) -> list[HazardEvent]:
    quarantined = exists().where(QuarantineEntry.item_id == Item.item_id)
    acknowledged = exists().where(and_(AlarmRow.item_id == Item.item_id, AlarmRow.kind.like("hazard.%"),
                                       AlarmRow.acknowledged_at.is_not(None)))
    stmt = (select(Item.item_id, Item.decided_at, Item.hazard, or_(quarantined, acknowledged))
            .where(Item.hazard.is_not(None), Item.decided_at >= since, Item.decided_at < until)
            .order_by(Item.decided_at))
    with store.engine.connect() as conn:
        return [HazardEvent(i, float(t), str(h), bool(ok)) for i, t, h, ok in conn.execute(stmt)]


def correction_times(store: Store, since: float, until: float) -> list[float]:
    """When each correction in ``[since, until)`` was made (undone ones and confirmations left out)."""
    stmt = select(Correction.created_at).where(Correction.undone.is_(False), Correction.kind != "confirm",
                                               Correction.created_at >= since, Correction.created_at < until)
    with store.engine.connect() as conn:
        return [float(t) for t in conn.scalars(stmt)]


def first_item_time(store: Store) -> float | None:
    with store.engine.connect() as conn:
        t = conn.scalar(select(func.min(Item.decided_at)))
    return None if t is None else float(t)
