"""Between the station's payloads, the database rows and the records the store hands out."""

from __future__ import annotations

from station.events import Actuation, ActuationStatus, Alarm, Decision, Reason, Severity
from station.store.models import ActuationRow, AlarmRow, Item, ModelVersionRow, RunRow
from station.store.records import ActuationRecord, AlarmRecord, ItemRecord, ModelRecord, RunKind, RunRecord
from station.taxonomy import Stream


def item_row(d: Decision, bin_name: str, crop_path: str | None, run_id: str | None = None,
             ) -> Item:
    x1, y1, x2, y2 = (float(v) for v in d.box)
    return Item(
        item_id=d.item_id, station_id=d.station_id, run_id=run_id, track_id=int(d.track_id),
        frame_index=int(d.frame_index),
        crossed_at=float(d.crossed_at), crossed_ticks=None if d.crossed_ticks is None else int(d.crossed_ticks),
        decided_at=float(d.decided_at_wall), class_name=d.class_name, stream=Stream(d.stream).value,
        hazard=d.hazard, confidence=float(d.confidence), votes={k: float(v) for k, v in d.votes.items()},
        observations=int(d.observations), reason=Reason(d.reason).value, detail=d.detail,
        x1=x1, y1=y1, x2=x2, y2=y2, model_version=d.model_version, crop_path=crop_path, bin=bin_name,
        crop_scores={k: float(v) for k, v in d.crop_scores.items()} or None,
        classifier_version=d.classifier_version or None,
    )


def actuation_row(a: Actuation, now: float) -> ActuationRow:
    return ActuationRow(
        actuation_id=a.actuation_id, item_id=a.item_id, bin=a.bin, channel=int(a.channel),
        fire_at=float(a.fire_at), fire_at_ticks=None if a.fire_at_ticks is None else int(a.fire_at_ticks),
        fire_at_wall=float(a.fire_at_wall), status=ActuationStatus.PENDING.value, attempts=0,
        updated_at=now, detail="",
    )


def alarm_row(a: Alarm) -> AlarmRow:
    return AlarmRow(alarm_id=a.alarm_id, kind=a.kind, message=a.message, severity=Severity(a.severity).value,
                    item_id=a.item_id, raised_at=float(a.raised_at))


def actuation_record(r: ActuationRow) -> ActuationRecord:
    return ActuationRecord(
        actuation_id=r.actuation_id, item_id=r.item_id, bin=r.bin, channel=r.channel, fire_at=r.fire_at,
        fire_at_ticks=r.fire_at_ticks, fire_at_wall=r.fire_at_wall, status=ActuationStatus(r.status),
        attempts=r.attempts, updated_at=r.updated_at, detail=r.detail,
    )


def item_record(r: Item, act: ActuationRow | None) -> ItemRecord:
    return ItemRecord(
        item_id=r.item_id, station_id=r.station_id, track_id=r.track_id, frame_index=r.frame_index,
        crossed_at=r.crossed_at, crossed_ticks=r.crossed_ticks, decided_at=r.decided_at,
        class_name=r.class_name, stream=Stream(r.stream), hazard=r.hazard, confidence=r.confidence,
        votes=dict(r.votes), observations=r.observations, reason=Reason(r.reason), detail=r.detail,
        box=(r.x1, r.y1, r.x2, r.y2), model_version=r.model_version, crop_path=r.crop_path, bin=r.bin,
        actuation=None if act is None else actuation_record(act), crop_scores=dict(r.crop_scores or {}),
        classifier_version=r.classifier_version,
    )


def alarm_record(r: AlarmRow) -> AlarmRecord:
    return AlarmRecord(alarm_id=r.alarm_id, kind=r.kind, message=r.message, severity=Severity(r.severity),
                       item_id=r.item_id, raised_at=r.raised_at, acknowledged_at=r.acknowledged_at,
                       acknowledged_by=r.acknowledged_by)


def model_record(r: ModelVersionRow) -> ModelRecord:
    return ModelRecord(version=r.version, path=r.path, loaded_at=r.loaded_at, metadata=dict(r.meta),
                       active=r.active, kind="classifier" if r.kind == "classifier" else "detector")


def run_record(r: RunRow) -> RunRecord:
    kind: RunKind = "scorecard" if r.kind == "scorecard" else "bench" if r.kind == "bench" else "live"
    return RunRecord(run_id=r.run_id, station_id=r.station_id, kind=kind, started_at=r.started_at,
                     ended_at=r.ended_at, source=r.source)
