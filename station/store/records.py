"""What the store hands out: plain frozen dataclasses, never ORM objects."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from station.events import Actuation, ActuationStatus, Reason, Severity
from station.taxonomy import Stream

T = TypeVar("T")

ModelKind = Literal["detector", "classifier"]
RunKind = Literal["live", "scorecard", "bench"]
JsonScalar = str | int | float | bool | None
JsonValue = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]


class StoreError(RuntimeError):
    """The store cannot do what was asked; the message names the row and the fix."""


class NotFoundError(StoreError, LookupError):
    """No row with that id."""


class DuplicateError(StoreError):
    """The row is already stored (a retry of a write that had gone through)."""


class FinalStatusError(StoreError):
    """An actuation that was sent or missed cannot change its status."""


@dataclass(frozen=True)
class ActuationRecord:
    actuation_id: str
    item_id: str
    bin: str
    channel: int
    fire_at: float
    fire_at_ticks: int | None
    fire_at_wall: float
    status: ActuationStatus
    attempts: int
    updated_at: float
    detail: str

    def to_actuation(self) -> Actuation:
        return Actuation(self.actuation_id, self.item_id, self.bin, self.channel, self.fire_at,
                         self.fire_at_ticks, self.fire_at_wall)


@dataclass(frozen=True)
class ItemRecord:
    """A recorded decision with its bin, evidence crop (relative to the evidence folder) and actuation."""

    item_id: str
    station_id: str
    track_id: int
    frame_index: int
    crossed_at: float
    crossed_ticks: int | None
    decided_at: float
    class_name: str | None
    stream: Stream
    hazard: str | None
    confidence: float
    votes: dict[str, float]
    observations: int
    reason: Reason
    detail: str
    box: tuple[float, float, float, float]
    model_version: str
    crop_path: str | None
    bin: str
    actuation: ActuationRecord | None = None
    crop_scores: dict[str, float] = field(default_factory=dict)
    """The crop classifier's class probabilities on the evidence crop (empty: not consulted)."""
    classifier_version: str | None = None


@dataclass(frozen=True)
class AlarmRecord:
    alarm_id: str
    kind: str
    message: str
    severity: Severity
    item_id: str | None
    raised_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None

    @property
    def active(self) -> bool:
        return self.acknowledged_at is None


@dataclass(frozen=True)
class ModelRecord:
    version: str
    path: str
    loaded_at: float
    metadata: dict[str, JsonValue]
    active: bool
    kind: ModelKind = "detector"


@dataclass(frozen=True)
class ItemFilter:
    """Filters of ``Store.list_items``; ``None`` means "any". Times are wall-clock epoch seconds."""

    stream: Stream | None = None
    class_name: str | None = None
    hazard: str | None = None
    reason: Reason | None = None
    since: float | None = None
    until: float | None = None
    station_id: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run of the station: ``live`` (the station at work), ``scorecard`` (a scored simulator run) or
    ``bench`` (a benchmark); ``ended_at`` None while it runs (or when it never stopped cleanly)."""

    run_id: str
    station_id: str
    kind: RunKind
    started_at: float
    ended_at: float | None
    source: str


@dataclass(frozen=True)
class ItemScope:
    """Which items a report reads: one station's items of runs of ``run_kinds`` (items recorded before runs were
    kept, ``run_id`` NULL, count as live). ``None`` means "any"."""

    station_id: str | None = None
    run_kinds: tuple[RunKind, ...] | None = ("live",)


@dataclass(frozen=True)
class TallyRow:
    """Items of one stream, class and hazard decided in ``[bucket_start, bucket_start + bucket_s)``."""

    bucket_start: float
    bucket_s: int
    stream: Stream
    class_name: str | None
    hazard: str | None
    items: int


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


@dataclass(frozen=True)
class ThroughputRow:
    """Items of one stream decided in ``[bucket_start, bucket_start + bucket_s)``; ``kg`` needs masses."""

    bucket_start: float
    bucket_s: int
    stream: Stream
    items: int
    kg: float | None


@dataclass(frozen=True)
class ReconcileResult:
    """Start-up reconciliation: what to send again and what was given up."""

    resend: list[Actuation] = field(default_factory=list)
    missed: int = 0
    """Pending commands whose fire time passed while the station was down, now ``missed``."""
    in_doubt: int = 0
    """Commands left ``sending`` (the actuator may or may not have them), now ``missed``, never re-sent."""
