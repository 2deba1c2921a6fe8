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

from sqlalchemy import ColumnElement, Engine, Update, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from station.events import Actuation, ActuationStatus, Alarm, Decision
from station.store import convert
from station.store.engine import floor_nonneg, make_engine, make_private, migrate, parse_url, sqlite_file
from station.store.evidence import crop_relpath, write_jpeg
from station.store.models import ActuationRow, AlarmRow, Item, ModelVersionRow, RunRow
from station.store.records import (
    AlarmRecord,
    DuplicateError,
    FinalStatusError,
    ItemFilter,
    ItemRecord,
    ItemScope,
    JsonValue,
    ModelKind,
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
        self.run_id: str | None = None
        """The run that items recorded now belong to (``begin_run``); None: no run begun."""

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
        twin = Store(make_engine(self.engine.url, round(busy_timeout_s * 1000)), self.evidence_dir, self.crop_quality)
        twin.run_id = self.run_id
        return twin

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ------------------------------------------------------------------------------------

    def begin_run(self, run_id: str, kind: RunKind, station_id: str, source: str = "") -> RunRecord:
        """Record that run ``run_id`` of ``kind`` starts; items recorded from now on carry its id."""
        row = RunRow(run_id=run_id, station_id=station_id, kind=kind, started_at=time.time(), ended_at=None,
                     source=source[:512])
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError as exc:
            raise DuplicateError(f"run {run_id} is already recorded; every run needs a fresh run id") from exc
        self.run_id = run_id
        return convert.run_record(row)

    def end_run(self) -> None:
        """Note when the current run ended (nothing when no run was begun)."""
        if self.run_id is None:
            return
        with self._session.begin() as s:
            s.execute(update(RunRow).where(RunRow.run_id == self.run_id).values(ended_at=time.time()),
                      execution_options={"synchronize_session": False})

    def runs(self, station_id: str | None = None) -> list[RunRecord]:
        """Runs recorded in this store (of one station, given ``station_id``), oldest first."""
        stmt = select(RunRow).order_by(RunRow.started_at, RunRow.run_id)
        if station_id is not None:
            stmt = stmt.where(RunRow.station_id == station_id)
        with self._session() as s:
            return [convert.run_record(r) for r in s.scalars(stmt).all()]

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
                s.add(convert.item_row(decision, item_bin or actuation.bin, crop, self.run_id))
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
                   mass_kg: Mapping[str, float] | None = None, origin: float = 0.0,
                   scope: ItemScope | None = None) -> list[ThroughputRow]:
        """Items (and kg, given class masses) per stream and time bucket in ``[since, until)``: ``tally``
        summed over classes and hazards. Buckets without items are left out."""
        rows = self.tally(since, until, bucket_s, origin, scope)
        return _throughput_rows(rows, mass_kg)

    def tally(self, since: float, until: float, bucket_s: int = 3600, origin: float = 0.0,
              scope: ItemScope | None = None) -> list[TallyRow]:
        """Items per time bucket, stream, class and hazard in ``[since, until)`` (``scope``: which items; None:
        every item of the store). One grouped query, the one behind throughput, reports and /impact.

        Buckets are ``bucket_s`` long and aligned to ``origin`` (epoch seconds; 0 = UTC midnight), so a
        shift report can start at 06:00. Buckets without items are left out.
        """
        if until <= since or bucket_s <= 0:
            raise ValueError(f"throughput: need since < until and bucket_s > 0 (got since={since}, "
                             f"until={until}, bucket_s={bucket_s})")
        base = since - (since - origin) % bucket_s
        bucket = floor_nonneg((Item.decided_at - literal(base)) / literal(float(bucket_s))).label("bucket")
        stmt = (select(bucket, Item.stream, Item.class_name, Item.hazard, func.count())
                .where(Item.decided_at >= since, Item.decided_at < until, *scope_conditions(scope))
                .group_by(bucket, Item.stream, Item.class_name, Item.hazard))
        with self._session() as s:
            rows = s.execute(stmt).all()
        return sorted((TallyRow(base + int(b) * bucket_s, bucket_s, Stream(st), cls, hz, int(n))
                       for b, st, cls, hz, n in rows),
                      key=lambda r: (r.bucket_start, r.stream.value, r.class_name or "", r.hazard or ""))

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


def scope_conditions(scope: ItemScope | None) -> list[ColumnElement[bool]]:
    """SQL conditions on ``items`` for ``scope`` (none for None); items without a run count as live."""
    if scope is None:
        return []
    conds: list[ColumnElement[bool]] = []
    if scope.station_id is not None:
        conds.append(Item.station_id == scope.station_id)
    if scope.run_kinds is not None:
        in_runs = Item.run_id.in_(select(RunRow.run_id).where(RunRow.kind.in_(scope.run_kinds)))
        conds.append(or_(Item.run_id.is_(None), in_runs) if "live" in scope.run_kinds else in_runs)
    return conds


def _throughput_rows(rows: Iterable[TallyRow], mass_kg: Mapping[str, float] | None) -> list[ThroughputRow]:
    totals: dict[tuple[float, int, Stream], tuple[int, float]] = {}
    for r in rows:
        items, kg = totals.get((r.bucket_start, r.bucket_s, r.stream), (0, 0.0))
        mass = mass_kg.get(r.class_name, 0.0) if mass_kg is not None and r.class_name is not None else 0.0
        totals[(r.bucket_start, r.bucket_s, r.stream)] = (items + r.items, kg + r.items * mass)
    return [ThroughputRow(bucket_start=start, bucket_s=bucket_s, stream=stream, items=items,
                          kg=None if mass_kg is None else round(kg, 6))
            for (start, bucket_s, stream), (items, kg) in sorted(totals.items(), key=lambda kv: (kv[0][0],
                                                                                                   kv[0][2].value))]
