"""Durable record of the station: SQLAlchemy 2 tables, Alembic migrations, the ``Store`` repository."""

from station.store.records import (
    ActuationRecord,
    AlarmRecord,
    DuplicateError,
    FinalStatusError,
    ItemFilter,
    ItemRecord,
    ItemScope,
    JsonValue,
    ModelRecord,
    NotFoundError,
    Page,
    ReconcileResult,
    RunKind,
    RunRecord,
    StoreError,
    TallyRow,
    ThroughputRow,
)
from station.store.repository import Store

__all__ = [
    "ActuationRecord",
    "AlarmRecord",
    "DuplicateError",
    "FinalStatusError",
    "ItemFilter",
    "ItemRecord",
    "ItemScope",
    "JsonValue",
    "ModelRecord",
    "NotFoundError",
    "Page",
    "ReconcileResult",
    "RunKind",
    "RunRecord",
    "Store",
    "StoreError",
    "TallyRow",
    "ThroughputRow",
]
