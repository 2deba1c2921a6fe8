"""Pydantic schemas of the web API (kept apart from the database tables of ``station.store.models``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from station.events import ActuationStatus, Reason, Severity
from station.store import ActuationRecord, AlarmRecord, ItemRecord, Page, ThroughputRow
from station.taxonomy import Stream

Bucket = Literal["hour", "shift", "day"]
BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "shift": 8 * 3600, "day": 86_400}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActuationOut(_Out):
    actuation_id: str
    bin: str
    channel: int = Field(description="Actuator channel of the bin's ejector.")
    fire_at: float = Field(description="Source-clock seconds at which the item reaches its ejector.")
    fire_at_ticks: int | None = Field(description="Encoder count at the ejector, when the source has one.")
    fire_at_wall: float = Field(description="Wall-clock estimate of the same moment (epoch seconds).")
    status: ActuationStatus
    attempts: int
    updated_at: float
    detail: str

    @classmethod
    def from_record(cls, r: ActuationRecord) -> ActuationOut:
        return cls(actuation_id=r.actuation_id, bin=r.bin, channel=r.channel, fire_at=r.fire_at,
                   fire_at_ticks=r.fire_at_ticks, fire_at_wall=r.fire_at_wall, status=r.status,
                   attempts=r.attempts, updated_at=r.updated_at, detail=r.detail)


class ItemOut(_Out):
    item_id: str
    station_id: str
    track_id: int
    frame_index: int
    crossed_at: float = Field(description="Source-clock seconds at which the item crossed the decision line.")
    crossed_ticks: int | None
    decided_at: float = Field(description="Wall-clock time of the decision (epoch seconds).")
    class_name: str | None = Field(description="Winning class, or null when no class could be given.")
    stream: Stream
    hazard: str | None
    confidence: float = Field(description="Vote share of the winning class (0..1), after the crop classifier's "
                              "second look where one was consulted.")
    votes: dict[str, float] = Field(description="The track's confidence-weighted class votes.")
    crop_scores: dict[str, float] = Field(description="The crop classifier's class probabilities on the evidence "
                                          "crop (empty when none was consulted).")
    classifier_version: str | None = Field(description="Version of the crop classifier consulted, if any.")
    observations: int = Field(description="Frames in which the item's track was seen.")
    reason: Reason
    detail: str
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels, in the crossing frame.")
    model_version: str
    bin: str
    crop_url: str | None = Field(description="Evidence JPEG of the item, when one was saved.")
    actuation: ActuationOut | None

    @classmethod
    def from_record(cls, r: ItemRecord) -> ItemOut:
        return cls(
            item_id=r.item_id, station_id=r.station_id, track_id=r.track_id, frame_index=r.frame_index,
            crossed_at=r.crossed_at, crossed_ticks=r.crossed_ticks, decided_at=r.decided_at,
            class_name=r.class_name, stream=r.stream, hazard=r.hazard, confidence=r.confidence, votes=r.votes,
            observations=r.observations, reason=r.reason, detail=r.detail, box=list(r.box),
            model_version=r.model_version, bin=r.bin, crop_scores=r.crop_scores,
            classifier_version=r.classifier_version,
            crop_url=None if r.crop_path is None else f"/api/items/{r.item_id}/crop",
            actuation=None if r.actuation is None else ActuationOut.from_record(r.actuation),
        )


class ItemPage(_Out):
    items: list[ItemOut]
    total: int = Field(description="Items matching the filters, over all pages.")
    page: int
    page_size: int
    pages: int

    @classmethod
    def from_page(cls, p: Page[ItemRecord]) -> ItemPage:
        return cls(items=[ItemOut.from_record(i) for i in p.items], total=p.total, page=p.page,
                   page_size=p.page_size, pages=p.pages)


class ThroughputOut(_Out):
    bucket_start: float = Field(description="Start of the bucket (epoch seconds).")
    bucket_end: float
    stream: Stream
    items: int
    kg: float | None = Field(description="Mass from the taxonomy's mean class masses.")

    @classmethod
    def from_row(cls, r: ThroughputRow) -> ThroughputOut:
        return cls(bucket_start=r.bucket_start, bucket_end=r.bucket_start + r.bucket_s, stream=r.stream,
                   items=r.items, kg=r.kg)


class ThroughputReport(_Out):
    since: float
    until: float
    bucket: Bucket
    bucket_s: int
    rows: list[ThroughputOut] = Field(description="One row per bucket and stream that has items.")


class AlarmOut(_Out):
    alarm_id: str
    kind: str
    message: str
    severity: Severity
    item_id: str | None
    raised_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None
    active: bool

    @classmethod
    def from_record(cls, r: AlarmRecord) -> AlarmOut:
        return cls(alarm_id=r.alarm_id, kind=r.kind, message=r.message, severity=r.severity, item_id=r.item_id,
                   raised_at=r.raised_at, acknowledged_at=r.acknowledged_at, acknowledged_by=r.acknowledged_by,
                   active=r.active)


class AckRequest(_Out):
    by: str | None = Field(None, min_length=1, max_length=64, description="Ignored since 0.2: the "
                           "acknowledgement is recorded under the caller's login or service token name.")


class LivenessOut(_Out):
    """What ``/health`` tells an anonymous caller: alive or not, no figures."""

    ok: bool = Field(description="Running and the source delivers frames (HTTP 200); otherwise 503.")


class HealthOut(_Out):
    ok: bool = Field(description="Not failing (HTTP 200: status ok or degraded); otherwise 503.")
    status: Literal["ok", "degraded", "failing"] = Field(
        "ok", description="The health model: ok; degraded (a restarting worker, drops, slow commands, actuator "
        "link down); failing (not running, source lost, fail-safe, a dead or stuck worker, the store refusing "
        "writes).")
    reasons: list[str] = Field(default_factory=list, description="Codes of the current reasons, worst first "
                               "(e.g. failsafe.store, worker.act.dead); empty when ok.")
    spool: int = Field(0, description="Records, status changes and alarms waiting for the store.")
    missed_actuations: int = Field(0, description="Commands not sent since start (deadline passed, actuator "
                                   "failed, store refused); their items rode to the fail-safe bin.")
    corrupt_frames: int = Field(0, description="Frames the source could not decode (skipped) since start.")
    running: bool
    source_ok: bool
    model_version: str | None
    classifier_version: str | None = Field(None, description="The crop classifier in use, if any.")
    fps: float
    frames: int
    dropped: int
    decisions: int
    workers: dict[str, str] = Field(description="Worker name → state (e.g. running, restarting, dead).")
    last_error: str | None = Field(description="The current problems, worst first; null once their causes "
                                   "have cleared.")
    started_at: float | None
    uptime_s: float | None
