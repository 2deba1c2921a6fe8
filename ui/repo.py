"""The console's database access: users, the session key, corrections and the quarantine log.

Built on the station ``Store``'s engine and tables (``station.store.models``); every method opens its own
short transaction, like the ``Store``. What comes out are frozen dataclasses, never ORM rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from station.events import new_id
from station.store import NotFoundError, Store, StoreError
from station.store.access import AccessRepo, UserExistsError
from station.store.models import AlarmRow, Correction, Item, QuarantineEntry, User

__all__ = ["ConsoleRepo", "UserExistsError", "UserRecord"]


class AlreadyAcknowledgedError(StoreError):
    """The alarm was acknowledged by someone else first."""


@dataclass(frozen=True)
class UserRecord:
    username: str
    role: str
    created_at: float
    disabled: bool
    password_hash: str
    locked: bool = False
    must_change: bool = False


@dataclass(frozen=True)
class CorrectionRecord:
    """One stored correction; ``box`` is in pixels of the image at ``frame_path`` (evidence-relative)."""

    id: str
    item_id: str | None
    username: str
    role: str | None
    created_at: float
    kind: str
    before_class: str | None
    after_class: str | None
    box: tuple[float, float, float, float] | None
    frame_path: str | None
    undone: bool


@dataclass(frozen=True)
class NewCorrection:
    """What ``ConsoleRepo.add_correction`` stores (validated by ``ui.corrections`` first)."""

    item_id: str | None
    username: str
    role: str
    kind: str
    before_class: str | None
    after_class: str | None
    box: tuple[float, float, float, float] | None
    frame_path: str | None


@dataclass(frozen=True)
class QuarantineRecord:
    id: str
    item_id: str
    hazard_type: str
    container: str
    handled_by: str
    handled_at: float
    checklist: dict[str, bool]


def _user(row: User) -> UserRecord:
    return UserRecord(row.username, row.role, row.created_at, row.disabled, row.password_hash, row.locked,
                      bool(row.must_change_password))


def _correction(row: Correction) -> CorrectionRecord:
    box = None if row.box is None else (float(row.box[0]), float(row.box[1]), float(row.box[2]), float(row.box[3]))
    return CorrectionRecord(row.id, row.item_id, row.username, row.role, row.created_at, row.kind,
                            row.before_class, row.after_class, box, row.frame_path, row.undone)


def _quarantine(row: QuarantineEntry) -> QuarantineRecord:
    return QuarantineRecord(row.id, row.item_id, row.hazard_type, row.container, row.handled_by, row.handled_at,
                            {str(k): bool(v) for k, v in row.checklist.items()})


class ConsoleRepo:
    """Console tables over the station's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.access = AccessRepo(store)
        self._session = sessionmaker(store.engine, expire_on_commit=False)

    # -- users -----------------------------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, role: str, must_change: bool = False) -> UserRecord:
        self.access.add_user(username, password_hash, role, must_change)
        record = self.get_user(username)
        assert record is not None
        return record

    def get_user(self, username: str) -> UserRecord | None:
        with self._session() as s:
            row = s.get(User, username)
            return None if row is None else _user(row)

    def users(self) -> list[UserRecord]:
        with self._session() as s:
            return [_user(r) for r in s.scalars(select(User).order_by(User.username)).all()]

    def has_admin(self) -> bool:
        stmt = select(func.count()).select_from(User).where(User.role == "admin", User.disabled.is_(False))
        with self._session() as s:
            return bool(s.scalar(stmt))

    # -- corrections -----------------------------------------------------------------------------

    def add_correction(self, c: NewCorrection) -> CorrectionRecord:
        row = Correction(id=new_id(), item_id=c.item_id, username=c.username, role=c.role, created_at=time.time(),
                         kind=c.kind, before_class=c.before_class, after_class=c.after_class,
                         box=None if c.box is None else [float(v) for v in c.box], frame_path=c.frame_path,
                         undone=False)
        with self._session.begin() as s:
            s.add(row)
        return _correction(row)

    def corrections(self, item_ids: Iterable[str] | None = None, *, include_undone: bool = False,
                    kinds: Sequence[str] | None = None) -> list[CorrectionRecord]:
        """Corrections, oldest first; of some items only when ``item_ids`` is given."""
        stmt = select(Correction).order_by(Correction.created_at, Correction.id)
        if item_ids is not None:
            stmt = stmt.where(Correction.item_id.in_(list(item_ids)))
        if not include_undone:
            stmt = stmt.where(Correction.undone.is_(False))
        if kinds is not None:
            stmt = stmt.where(Correction.kind.in_(list(kinds)))
        with self._session() as s:
            return [_correction(r) for r in s.scalars(stmt).all()]

    def corrections_by_item(self, item_ids: Iterable[str]) -> dict[str, list[CorrectionRecord]]:
        out: dict[str, list[CorrectionRecord]] = {}
        for c in self.corrections(item_ids):
            if c.item_id is not None:
                out.setdefault(c.item_id, []).append(c)
        return out

    def recent_corrections(self, username: str, limit: int) -> list[CorrectionRecord]:
        """The user's ``limit`` latest corrections, newest first, undone ones included."""
        stmt = (select(Correction).where(Correction.username == username)
                .order_by(Correction.created_at.desc(), Correction.id.desc()).limit(limit))
        with self._session() as s:
            return [_correction(r) for r in s.scalars(stmt).all()]

    def undo(self, correction_id: str) -> CorrectionRecord:
        with self._session.begin() as s:
            row = s.get(Correction, correction_id)
            if row is None:
                raise NotFoundError(f"correction {correction_id} is not in the store")
            row.undone = True
            return _correction(row)

    def count_corrections(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).select_from(Correction)) or 0)

    # -- hazards ---------------------------------------------------------------------------------

    def quarantine(self, alarm_id: str, container: str, handled_by: str, checklist: Mapping[str, bool],
                   hazard_type: str) -> QuarantineRecord:
        """Log the item of a hazard alarm as quarantined and acknowledge the alarm, in one transaction."""
        with self._session.begin() as s:
            alarm = s.get(AlarmRow, alarm_id)
            if alarm is None:
                raise NotFoundError(f"alarm {alarm_id} is not in the store; pick an active hazard alarm")
            if alarm.acknowledged_at is not None:
                raise AlreadyAcknowledgedError(f"alarm {alarm_id} was acknowledged by {alarm.acknowledged_by}; "
                                               "nothing to do")
            if alarm.item_id is None or s.get(Item, alarm.item_id) is None:
                raise NotFoundError(f"alarm {alarm_id} names no recorded item; acknowledge it on the alarms page")
            now = time.time()
            row = QuarantineEntry(id=new_id(), item_id=alarm.item_id, hazard_type=hazard_type, container=container,
                                  handled_by=handled_by, handled_at=now, checklist=dict(checklist))
            s.add(row)
            alarm.acknowledged_at, alarm.acknowledged_by = now, handled_by
        return _quarantine(row)

    def quarantine_log(self, limit: int = 200) -> list[QuarantineRecord]:
        """Quarantined items, newest first."""
        stmt = select(QuarantineEntry).order_by(QuarantineEntry.handled_at.desc(), QuarantineEntry.id).limit(limit)
        with self._session() as s:
            return [_quarantine(r) for r in s.scalars(stmt).all()]
