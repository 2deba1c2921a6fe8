"""Database tables (SQLAlchemy 2 declarative). Portable: SQLite by default, PostgreSQL where shared.

Conventions: ids are ``String(32)`` (uuid4 hex); every time is a ``Float`` of epoch seconds (wall clock,
``time.time()``) except ``crossed_at`` / ``fire_at``, which are seconds on the source's clock. These classes
stay inside ``station.store``: the rest of the station sees the dataclasses of ``station.store.records``.
Changing a table means a new numbered migration under ``migrations/versions/``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from station.events import ActuationStatus
from station.store.records import JsonValue

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(32)
ROLES = ("operator", "engineer", "manager", "admin")
TOKEN_SCOPES = ("metrics", "read", "ack")
CORRECTION_KINDS = ("reclass", "not_item", "missed_item", "confirm")
RUN_KINDS = ("live", "scorecard", "bench")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RunRow(Base):
    """One run of the station (migration 0006): live, a scored simulator run or a benchmark."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(_one_of("kind", RUN_KINDS), name="kind"),)

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(512), default="")


class Item(Base):
    """One physical item, decided when it crossed the decision line."""

    __tablename__ = "items"
    # reports and /impact (migration 0007): one station's items of a period, grouped without reading the table
    __table_args__ = (Index("ix_items_report", "station_id", "decided_at", "run_id", "stream", "class_name",
                            "hazard"),)

    item_id: Mapped[str] = mapped_column(ID, primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.run_id"), index=True)
    """The run that decided it (migration 0006); None: recorded before runs were kept."""
    track_id: Mapped[int] = mapped_column(Integer)
    frame_index: Mapped[int] = mapped_column(BigInteger)
    crossed_at: Mapped[float] = mapped_column(Float)
    crossed_ticks: Mapped[int | None] = mapped_column(BigInteger)
    decided_at: Mapped[float] = mapped_column(Float, index=True)
    class_name: Mapped[str | None] = mapped_column(String(64), index=True)
    stream: Mapped[str] = mapped_column(String(32), index=True)
    hazard: Mapped[str | None] = mapped_column(String(32), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    votes: Mapped[dict[str, float]] = mapped_column(JSON)
    observations: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    crop_scores: Mapped[dict[str, float] | None] = mapped_column(JSON)
    """The crop classifier's class probabilities on the evidence crop (None: not consulted)."""
    classifier_version: Mapped[str | None] = mapped_column(String(128))
    crop_path: Mapped[str | None] = mapped_column(String(512))
    bin: Mapped[str] = mapped_column(String(64))


class ActuationRow(Base):
    """An ejector command and how far it got (see ``station.events.ActuationStatus``)."""

    __tablename__ = "actuations"
    __table_args__ = (CheckConstraint(_one_of("status", tuple(s.value for s in ActuationStatus)), name="status"),)

    actuation_id: Mapped[str] = mapped_column(ID, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.item_id"), index=True)
    bin: Mapped[str] = mapped_column(String(64))
    channel: Mapped[int] = mapped_column(Integer)
    fire_at: Mapped[float] = mapped_column(Float)
    fire_at_ticks: Mapped[int | None] = mapped_column(BigInteger)
    fire_at_wall: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")


class AlarmRow(Base):
    __tablename__ = "alarms"

    alarm_id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    item_id: Mapped[str | None] = mapped_column(ID, index=True)
    """Index (migration 0007): a report finds each hazard's acknowledged alarm without scanning all alarms."""
    raised_at: Mapped[float] = mapped_column(Float, index=True)
    acknowledged_at: Mapped[float | None] = mapped_column(Float, index=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))


class ModelVersionRow(Base):
    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    loaded_at: Mapped[float] = mapped_column(Float)
    meta: Mapped[dict[str, JsonValue]] = mapped_column("metadata", JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[str] = mapped_column(String(16), default="detector", server_default="detector")
    """'detector' or 'classifier' (the crop classifier): one active model of each kind."""


class User(Base):
    """Operator console account (the console's logic lives in ``ui``)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Wrong passwords in a row (migration 0004); at ``security.lock_after`` the account is locked."""
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """Locked after too many failed logins, until an admin unlocks it (``sortloop users unlock``)."""
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """Set by an admin's password reset (migration 0005): the next login leads to the change-password step."""


class Correction(Base):
    """An operator's correction of a decision: feeds relabelling and retraining.

    ``item_id`` is None for a missed item (one the station never decided). ``role`` is the author's role
    when the correction was made (a higher role's answer wins a conflict); ``box`` is in pixels of the
    image at ``frame_path`` (relative to the evidence folder). Migration 0002 added ``role``, ``confirm``
    and the nullable ``item_id``.
    """

    __tablename__ = "corrections"
    __table_args__ = (CheckConstraint(_one_of("kind", CORRECTION_KINDS), name="kind"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    item_id: Mapped[str | None] = mapped_column(ForeignKey("items.item_id"), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    before_class: Mapped[str | None] = mapped_column(String(64))
    after_class: Mapped[str | None] = mapped_column(String(64))
    box: Mapped[list[float] | None] = mapped_column(JSON)
    frame_path: Mapped[str | None] = mapped_column(String(512))
    undone: Mapped[bool] = mapped_column(Boolean, default=False)


class QuarantineEntry(Base):
    """A hazardous item put into a quarantine container, with the checklist the operator followed."""

    __tablename__ = "quarantine_log"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.item_id"), index=True)
    hazard_type: Mapped[str] = mapped_column(String(32))
    container: Mapped[str] = mapped_column(String(64))
    handled_by: Mapped[str] = mapped_column(String(64))
    handled_at: Mapped[float] = mapped_column(Float)
    checklist: Mapped[dict[str, bool]] = mapped_column(JSON)


class ApiSession(Base):
    """A server-side login session (migration 0004). Only the SHA-256 of the cookie's random token is kept,
    so reading the database does not give a usable cookie; deleting the row ends the session at once."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(64), default="")


class ServiceToken(Base):
    """A machine's bearer token with one scope (metrics, read or ack); only its SHA-256 is kept."""

    __tablename__ = "service_tokens"
    __table_args__ = (CheckConstraint(_one_of("scope", TOKEN_SCOPES), name="scope"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class AuditEntry(Base):
    """One security-relevant event: logins, failed logins, role changes, token use, revocations …"""

    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(64), default="")


class ConsoleSecret(Base):
    """Secrets the console keeps in the database (e.g. the session signing key), created on first use."""

    __tablename__ = "console_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)
