"""The station's store: decisions, actuations, alarms and models, with crash reconciliation.

Every public method opens its own short transaction, so one ``Store`` serves the pipeline and the web
app's threads at once. What comes out are the dataclasses of ``station.store.records``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Engine, Update, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from station.events import Actuation, ActuationStatus, Alarm, Decision
from station.store import convert
from station.store.engine import floor_nonneg, make_engine, make_private, migrate, parse_url, sqlite_file
from station.store.evidence import crop_relpath, write_jpeg
from station.store.models import ActuationRow, AlarmRow, Item, ModelVersionRow
from station.store.records import (
    AlarmRecord,
    DuplicateError,
    FinalStatusError,
    ItemFilter,
    ItemRecord,
    JsonValue,
    ModelKind,
    ModelRecord,
    NotFoundError,
    Page,
    ReconcileResult,
    StoreError,
    ThroughputRow,
)
from station.taxonomy import Stream

if TYPE_CHECKING:
    from station.config import StationConfig

log = logging.getLogger(__name__)

S = ActuationStatus
# Allowed status changes. A command that was sent or given up (missed) never moves again, so a
# reconciled command cannot be fired after all.
TRANSITIONS: dict[ActuationStatus, frozenset[ActuationStatus]] = {
    S.PENDING: frozenset({S.PENDING, S.SENDING, S.SENT, S.FAILED, S.MISSED}),
    S.SENDING: frozenset({S.SENDING, S.SENT, S.FAILED, S.MISSED}),
    S.FAILED: frozenset({S.FAILED, S.SENDING, S.SENT, S.MISSED}),
    S.SENT: frozenset({S.SENT}),
    S.MISSED: frozenset({S.MISSED}),
}
MAX_PAGE_SIZE = 1000


class Store:
    """Repository over the station database and its evidence folder. Build it with ``Store.open``."""

    def __init__(self, engine: Engine, evidence_dir: Path, crop_quality: int = 85) -> None:
        self.engine = engine
        self.evidence_dir = evidence_dir
        self.crop_quality = crop_quality
        self._session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, evidence_dir: Path, *, crop_quality: int = 85, busy_timeout_s: float = 10.0) -> Store:
        """Connect, create the folders and migrate the database to the newest schema."""
        engine = make_engine(parse_url(url), round(busy_timeout_s * 1000))
        evidence_dir = Path(evidence_dir)
        evidence_dir.mkdir(parents=True, exist_ok=True)
        migrate(engine)
        make_private(engine.url, evidence_dir)
        return cls(engine, evidence_dir, crop_quality)

    @classmethod
    def from_config(cls, config: StationConfig) -> Store:
        """Open the store a station config names; a relative SQLite path is taken from the repository root."""
        url = parse_url(config.store.url)
        path = sqlite_file(url)
        if path is not None and not path.is_absolute():
            url = url.set(database=str(config.resolve(str(path))))
        return cls.open(url.render_as_string(hide_password=False), config.resolve(config.store.evidence_dir),
                        crop_quality=config.store.crop_quality, busy_timeout_s=config.store.busy_timeout_s)

    def sibling(self, busy_timeout_s: float) -> Store:
        """The same store over its own connections that wait at most ``busy_timeout_s`` for a SQLite lock
        (alarms from threads that must not stall); the store itself where that does not apply."""
        if sqlite_file(self.engine.url) is None:
            return self
        return Store(make_engine(self.engine.url, round(busy_timeout_s * 1000)), self.evidence_dir, self.crop_quality)

    def close(self) -> None:
        self.engine.dispose()

    # -- decisions and actuations ----------------------------------------------------------------

    def record(self, decision: Decision, actuation: Actuation, status: ActuationStatus = ActuationStatus.PENDING,
               detail: str = "", item_bin: str | None = None) -> None:
        """Make a decision durable: write its crop, then commit the item and its actuation together.

        ``status`` other than pending records a command that will not be sent (a decision kept in the spool
        while the store was away); ``item_bin`` is then where the item went instead of the actuation's bin.
        """
        if actuation.item_id != decision.item_id:
            raise StoreError(f"actuation {actuation.actuation_id} is for item {actuation.item_id}, not "
                             f"{decision.item_id}; route the decision again")
        crop = self._write_crop(decision)
        try:
            with self._session.begin() as s:
                s.add(convert.item_row(decision, item_bin or actuation.bin, crop))
                s.flush()
                row = convert.actuation_row(actuation, time.time())
                row.status, row.detail = status.value, detail
                s.add(row)
        except IntegrityError as exc:
            raise DuplicateError(f"item {decision.item_id} or actuation {actuation.actuation_id} is already "
                                 "recorded; every decision needs a fresh item_id and actuation_id") from exc
        except Exception:
            self._drop_crop(crop)  # no evidence file without its row
            raise

    def _write_crop(self, decision: Decision) -> str | None:
        if decision.crop is None or decision.crop.size == 0:
            return None
        rel = crop_relpath(decision.item_id, decision.decided_at_wall)
        write_jpeg(self.evidence_dir / rel, decision.crop, self.crop_quality)
        return rel

    def _drop_crop(self, rel: str | None) -> None:
        if rel is None:
            return
        try:
            (self.evidence_dir / rel).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the crop %s of an unrecorded item: %s", rel, exc)

    def mark_actuation(self, actuation_id: str, status: ActuationStatus, detail: str = "",
                       item_bin: str | None = None) -> None:
        """Move an actuation to ``status``; ``sending`` counts an attempt. Sent and missed are final.
        ``item_bin`` records where the item went instead (a command that failed or came too late)."""
        with self._session.begin() as s:
            row = s.get(ActuationRow, actuation_id)
            if row is None:
                raise NotFoundError(f"actuation {actuation_id} is not in the store; record it first")
            current = ActuationStatus(row.status)
            if status not in TRANSITIONS[current]:
                raise FinalStatusError(f"actuation {actuation_id} is {current.value}; it cannot become "
                                       f"{status.value} (a command that was sent or missed is final)")
            row.status = status.value
            row.updated_at = time.time()
            if status is ActuationStatus.SENDING and current is not ActuationStatus.SENDING:
                row.attempts += 1
            if detail:
                row.detail = detail
            if item_bin is not None:
                s.execute(update(Item).where(Item.item_id == row.item_id).values(bin=item_bin),
                          execution_options={"synchronize_session": False})

    def reconcile(self, now_wall: float, station_id: str | None = None,
                  failsafe_bin: str | None = None) -> ReconcileResult:
        """After a restart: resend future pending commands, give up past ones and never resend ``sending``.

        ``station_id`` limits it to one station's items where several stations share a database; with
        ``failsafe_bin`` the items whose command is given up are recorded as gone there (their real bin).
        """
        scope = self._station_scope(station_id)
        in_doubt_where = [ActuationRow.status == S.SENDING.value]
        missed_where = [ActuationRow.status == S.PENDING.value, ActuationRow.fire_at_wall <= now_wall]
        with self._session.begin() as s:
            if failsafe_bin is not None:
                given_up = select(ActuationRow.item_id).where(*scope, *missed_where)  # never sent: not in doubt
                s.execute(update(Item).where(Item.item_id.in_(given_up)).values(bin=failsafe_bin),
                          execution_options={"synchronize_session": False})
            in_doubt = self._set_missed(s, scope, "in doubt after a restart: the actuator may have it; "
                                        "never re-sent", *in_doubt_where)
            missed = self._set_missed(s, scope, "its fire time passed while the station was down", *missed_where)
            rows = s.scalars(select(ActuationRow).where(
                ActuationRow.status == S.PENDING.value, ActuationRow.fire_at_wall > now_wall, *scope,
            ).order_by(ActuationRow.fire_at_wall)).all()
            resend = [convert.actuation_record(r).to_actuation() for r in rows]
        log.info("reconciled: %d to resend, %d missed, %d in doubt", len(resend), missed, in_doubt)
        return ReconcileResult(resend=resend, missed=missed, in_doubt=in_doubt)

    @staticmethod
    def _station_scope(station_id: str | None) -> list[ColumnElement[bool]]:
        if station_id is None:
            return []
        return [ActuationRow.item_id.in_(select(Item.item_id).where(Item.station_id == station_id))]

    @staticmethod
    def _set_missed(s: Session, scope: Sequence[ColumnElement[bool]], detail: str,
                    *where: ColumnElement[bool]) -> int:
        stmt: Update = update(ActuationRow).where(*where, *scope).values(
            status=S.MISSED.value, updated_at=time.time(), detail=detail)
        result: Any = s.execute(stmt, execution_options={"synchronize_session": False})
        return int(result.rowcount)

    def actuation_counts(self) -> dict[str, int]:
        """Number of actuations per status (every status present, zero included)."""
        with self._session() as s:
            rows = s.execute(select(ActuationRow.status, func.count()).group_by(ActuationRow.status)).all()
        counts = {status.value: 0 for status in ActuationStatus}
        counts.update({status: int(n) for status, n in rows})
        return counts

    # -- items -----------------------------------------------------------------------------------

    def item_ids(self) -> set[str]:
        with self._session() as s:
            return set(s.scalars(select(Item.item_id)).all())

    def get_item(self, item_id: str) -> ItemRecord | None:
        with self._session() as s:
            row = s.get(Item, item_id)
            if row is None:
                return None
            acts = _latest_actuations(s, [item_id])
        return convert.item_record(row, acts.get(item_id))

    def crop_file(self, item_id: str) -> Path | None:
        """The evidence JPEG of an item, or None when it has none (or the file is gone)."""
        item = self.get_item(item_id)
        if item is None or item.crop_path is None:
            return None
        path = self.evidence_dir / item.crop_path
        return path if path.is_file() else None

    def list_items(self, filter: ItemFilter | None = None, page: int = 1, page_size: int = 50) -> Page[ItemRecord]:
        """Items matching ``filter``, newest first; ``page`` counts from 1."""
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page={page}, page_size={page_size}: page must be ≥ 1 and page_size in "
                             f"1..{MAX_PAGE_SIZE}")
        conds = _item_conditions(filter or ItemFilter())
        with self._session() as s:
            total = int(s.scalar(select(func.count()).select_from(Item).where(*conds)) or 0)
            rows = s.scalars(select(Item).where(*conds).order_by(Item.decided_at.desc(), Item.item_id)
                             .offset((page - 1) * page_size).limit(page_size)).all()
            acts = _latest_actuations(s, [r.item_id for r in rows])
        items = [convert.item_record(r, acts.get(r.item_id)) for r in rows]
        return Page(items=items, total=total, page=page, page_size=page_size)

    def throughput(self, since: float, until: float, bucket_s: int = 3600,
                   mass_kg: Mapping[str, float] | None = None, origin: float = 0.0) -> list[ThroughputRow]:
        """Items (and kg, given class masses) per stream and time bucket in ``[since, until)``.

        Buckets are ``bucket_s`` long and aligned to ``origin`` (epoch seconds; 0 = UTC midnight), so a
        shift report can start at 06:00. Buckets without items are left out.
        """
        if until <= since or bucket_s <= 0:
            raise ValueError(f"throughput: need since < until and bucket_s > 0 (got since={since}, "
                             f"until={until}, bucket_s={bucket_s})")
        base = since - (since - origin) % bucket_s
        bucket = floor_nonneg((Item.decided_at - literal(base)) / literal(float(bucket_s))).label("bucket")
        stmt = (select(bucket, Item.stream, Item.class_name, func.count())
                .where(Item.decided_at >= since, Item.decided_at < until)
                .group_by(bucket, Item.stream, Item.class_name))
        with self._session() as s:
            rows = s.execute(stmt).all()
        return _throughput_rows(((int(b), st, cls, int(n)) for b, st, cls, n in rows), base, bucket_s, mass_kg)

    # -- alarms ----------------------------------------------------------------------------------

    def add_alarm(self, alarm: Alarm) -> None:
        try:
            with self._session.begin() as s:
                s.add(convert.alarm_row(alarm))
        except IntegrityError as exc:
            raise DuplicateError(f"alarm {alarm.alarm_id} is already stored") from exc

    def ack_alarm(self, alarm_id: str, by: str) -> AlarmRecord:
        """Acknowledge an alarm (the first acknowledgement stays); returns it."""
        with self._session.begin() as s:
            row = s.get(AlarmRow, alarm_id)
            if row is None:
                raise NotFoundError(f"alarm {alarm_id} is not in the store; list alarms at /api/alarms")
            if row.acknowledged_at is None:
                row.acknowledged_at = time.time()
                row.acknowledged_by = by
            return convert.alarm_record(row)

    def get_alarm(self, alarm_id: str) -> AlarmRecord | None:
        with self._session() as s:
            row = s.get(AlarmRow, alarm_id)
            return None if row is None else convert.alarm_record(row)

    def active_alarms(self) -> list[AlarmRecord]:
        return self.alarms(active_only=True)

    def alarms(self, active_only: bool = False, limit: int = 200) -> list[AlarmRecord]:
        """Alarms, newest first."""
        stmt = select(AlarmRow).order_by(AlarmRow.raised_at.desc(), AlarmRow.alarm_id).limit(limit)
        if active_only:
            stmt = stmt.where(AlarmRow.acknowledged_at.is_(None))
        with self._session() as s:
            return [convert.alarm_record(r) for r in s.scalars(stmt).all()]

    # -- models ----------------------------------------------------------------------------------

    def record_model(self, version: str, path: str, metadata: Mapping[str, JsonValue],
                     kind: ModelKind = "detector") -> ModelRecord:
        """Note that ``version`` is now the loaded model of its kind (the only active one of that kind)."""
        with self._session.begin() as s:
            s.execute(update(ModelVersionRow).where(ModelVersionRow.kind == kind).values(active=False),
                      execution_options={"synchronize_session": False})
            row = s.get(ModelVersionRow, version) or ModelVersionRow(version=version)
            row.path, row.loaded_at, row.meta, row.active = str(path), time.time(), dict(metadata), True
            row.kind = kind
            s.add(row)
            return convert.model_record(row)

    def active_model(self, kind: ModelKind = "detector") -> ModelRecord | None:
        """The loaded model of ``kind`` (the detector by default), or None."""
        with self._session() as s:
            row = s.scalars(select(ModelVersionRow).where(ModelVersionRow.active.is_(True),
                                                          ModelVersionRow.kind == kind)).first()
            return None if row is None else convert.model_record(row)


def _item_conditions(f: ItemFilter) -> list[ColumnElement[bool]]:
    pairs: list[tuple[Any, object]] = [
        (Item.stream, f.stream), (Item.class_name, f.class_name), (Item.hazard, f.hazard),
        (Item.reason, f.reason), (Item.station_id, f.station_id),
    ]
    conds: list[ColumnElement[bool]] = [col == str(value) for col, value in pairs if value is not None]
    if f.since is not None:
        conds.append(Item.decided_at >= f.since)
    if f.until is not None:
        conds.append(Item.decided_at < f.until)
    return conds


def _latest_actuations(s: Session, item_ids: list[str]) -> dict[str, ActuationRow]:
    if not item_ids:
        return {}
    rows = s.scalars(select(ActuationRow).where(ActuationRow.item_id.in_(item_ids))
                     .order_by(ActuationRow.fire_at_wall)).all()
    return {r.item_id: r for r in rows}  # the latest one wins


def _throughput_rows(groups: Iterable[tuple[int, str, str | None, int]], base: float, bucket_s: int,
                     mass_kg: Mapping[str, float] | None) -> list[ThroughputRow]:
    totals: dict[tuple[int, str], tuple[int, float]] = {}
    for index, stream, class_name, n in groups:
        items, kg = totals.get((index, stream), (0, 0.0))
        mass = mass_kg.get(class_name, 0.0) if mass_kg is not None and class_name is not None else 0.0
        totals[(index, stream)] = (items + n, kg + n * mass)
    return [ThroughputRow(bucket_start=base + index * bucket_s, bucket_s=bucket_s, stream=Stream(stream),
                          items=items, kg=None if mass_kg is None else round(kg, 6))
            for (index, stream), (items, kg) in sorted(totals.items())]
