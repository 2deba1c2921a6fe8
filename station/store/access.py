"""Access records: server-side sessions, service tokens, the audit log and failed-login counts.

Sessions and tokens are random strings handed out once; the database keeps only their SHA-256, so a copy
of the database gives no usable cookie or token. Ending a session deletes its row: the next request with
that cookie is refused at once. Every method opens its own short transaction, like ``Store``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from station.events import new_id
from station.store.models import ROLES, TOKEN_SCOPES, ApiSession, AuditEntry, ServiceToken, User
from station.store.records import NotFoundError, StoreError
from station.store.repository import Store

TOKEN_PREFIX = "slt_"  # noqa: S105 (a marker that says "service token", not a secret)
AUDIT_TOKEN_USE_S = 3600.0  # a token's use is audited at most once an hour (a scraper calls every 15 s)
TOUCH_EVERY_S = 15.0  # last_seen is written at most this often per session (idle timeout granularity)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserExistsError(StoreError):
    """A user with that name exists already."""


class TokenExistsError(StoreError):
    """A service token of that name exists already."""


@dataclass(frozen=True)
class SessionRecord:
    """A live session; ``id`` is the first 12 hex digits of its hash (what admins see and end)."""

    id: str
    username: str
    role: str
    created_at: float
    last_seen: float
    expires_at: float
    address: str
    must_change: bool = False
    """The user must choose a new password (after an admin's reset) before anything else."""


@dataclass(frozen=True)
class SessionCheck:
    """The outcome of looking a cookie up: the session, or why there is none (``expired`` or ``unknown``)."""

    session: SessionRecord | None
    reason: str = ""


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    scope: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True)
class AuditRecord:
    id: str
    at: float
    actor: str
    action: str
    target: str
    detail: str
    address: str


def _token(row: ServiceToken) -> TokenRecord:
    return TokenRecord(row.id, row.name, row.scope, row.created_at, row.last_used_at, row.revoked_at)


class AccessRepo:
    """Sessions, tokens, audit and login failures over the station's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._session = sessionmaker(store.engine, expire_on_commit=False)

    # -- sessions --------------------------------------------------------------------------------

    def open_session(self, username: str, ttl_s: float, address: str = "", now: float | None = None) -> str:
        """A new session for ``username`` lasting at most ``ttl_s``; returns the cookie value (shown once)."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        with self._session.begin() as s:
            s.execute(delete(ApiSession).where(ApiSession.expires_at < now - 86_400))
            s.add(ApiSession(token_hash=digest(token), username=username, created_at=now, last_seen=now,
                             expires_at=now + ttl_s, address=address[:64]))
        return token

    def check_session(self, token: str, idle_s: float, now: float | None = None) -> SessionCheck:
        """The session of a cookie if it is live (not ended, not past its absolute or idle timeout, its user
        enabled and not locked); touches its last-seen time."""
        now = time.time() if now is None else now
        key = digest(token)
        with self._session.begin() as s:
            row = s.get(ApiSession, key)
            if row is None:
                return SessionCheck(None, "unknown")
            if row.expires_at <= now or now - row.last_seen > idle_s:
                return SessionCheck(None, "expired")  # the row stays a day, to say "expired" not "unknown"
            user = s.get(User, row.username)
            if user is None or user.disabled or user.locked:
                s.delete(row)
                return SessionCheck(None, "unknown")
            if now - row.last_seen >= TOUCH_EVERY_S:
                row.last_seen = now
            return SessionCheck(SessionRecord(key[:12], row.username, user.role, row.created_at, row.last_seen,
                                              row.expires_at, row.address, bool(user.must_change_password)))

    def end_session(self, token: str) -> bool:
        with self._session.begin() as s:
            row = s.get(ApiSession, digest(token))
            if row is not None:
                s.delete(row)
            return row is not None

    def end_session_id(self, session_id: str) -> str:
        """End the session whose id (hash prefix, ≥ 8 digits) is given; returns its user name."""
        if len(session_id) < 8 or any(c not in "0123456789abcdef" for c in session_id):
            raise NotFoundError(f"session id {session_id!r} is not one; give at least 8 hex digits of one")
        with self._session.begin() as s:
            rows = s.scalars(select(ApiSession).where(ApiSession.token_hash.startswith(session_id))).all()
            if len(rows) != 1:
                raise NotFoundError(f"{len(rows)} sessions match {session_id!r}; list them with `sortloop users "
                                    "sessions`")
            s.delete(rows[0])
            return rows[0].username

    def end_sessions(self, username: str) -> int:
        """End every session of ``username`` (logout everywhere, password or role change, disable)."""
        with self._session.begin() as s:
            rows = s.scalars(select(ApiSession).where(ApiSession.username == username)).all()
            for row in rows:
                s.delete(row)
            return len(rows)

    def sessions(self, username: str | None = None, now: float | None = None) -> list[SessionRecord]:
        now = time.time() if now is None else now
        stmt = (select(ApiSession, User.role).join(User, User.username == ApiSession.username)
                .where(ApiSession.expires_at > now).order_by(ApiSession.created_at))
        if username is not None:
            stmt = stmt.where(ApiSession.username == username)
        with self._session() as s:
            return [SessionRecord(r.token_hash[:12], r.username, role, r.created_at, r.last_seen, r.expires_at,
                                  r.address) for r, role in s.execute(stmt).all()]

    # -- users -----------------------------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, role: str, must_change: bool = False) -> None:
        """A new enabled user; ``UserExistsError`` when the name is taken. ``must_change``: the first login
        leads to the change-password step (a password an admin chose)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
        try:
            with self._session.begin() as s:
                s.add(User(username=username, password_hash=password_hash, role=role, created_at=time.time(),
                           disabled=False, failed_logins=0, locked=False, must_change_password=must_change))
        except IntegrityError as exc:
            raise UserExistsError(f"user {username!r} exists already; choose another name") from exc

    def _change_user(self, username: str, **values: object) -> None:
        with self._session.begin() as s:
            if s.get(User, username) is None:
                raise NotFoundError(f"user {username!r} does not exist; list users with `sortloop users list`")
            s.execute(update(User).where(User.username == username).values(**values))
            s.execute(delete(ApiSession).where(ApiSession.username == username))

    def set_role(self, username: str, role: str) -> None:
        """Change a user's role and end their sessions (the new role applies from the next login)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
        self._change_user(username, role=role)

    def set_disabled(self, username: str, disabled: bool) -> None:
        self._change_user(username, disabled=disabled)

    def set_password(self, username: str, password_hash: str, must_change: bool = False) -> None:
        """A new password hash; ends the user's sessions and lifts a lock. ``must_change`` (an admin's reset):
        the next login leads to the change-password step before anything else."""
        self._change_user(username, password_hash=password_hash, failed_logins=0, locked=False,
                          must_change_password=must_change)

    def rehash(self, username: str, old_hash: str, new_hash: str) -> None:
        """The same password hashed with today's parameters (at a good login); sessions stay. Nothing
        changes when the password changed meanwhile."""
        with self._session.begin() as s:
            s.execute(update(User).where(User.username == username, User.password_hash == old_hash)
                      .values(password_hash=new_hash))

    def unlock(self, username: str) -> None:
        self._change_user(username, failed_logins=0, locked=False)

    def login_failed(self, username: str, lock_after: int) -> bool:
        """Count a wrong password for an existing user; True when the account is (now) locked."""
        with self._session.begin() as s:
            user = s.get(User, username)
            if user is None:
                return False
            user.failed_logins += 1
            if user.failed_logins >= lock_after:
                user.locked = True
            return user.locked

    def login_succeeded(self, username: str) -> None:
        with self._session.begin() as s:
            s.execute(update(User).where(User.username == username, User.failed_logins != 0)
                      .values(failed_logins=0))

    def is_locked(self, username: str) -> bool:
        with self._session() as s:
            user = s.get(User, username)
            return bool(user is not None and user.locked)

    # -- service tokens --------------------------------------------------------------------------

    def create_token(self, name: str, scope: str) -> tuple[TokenRecord, str]:
        """A new token; returns its record and the secret (shown once, only its hash is kept)."""
        if scope not in TOKEN_SCOPES:
            raise ValueError(f"scope {scope!r} is unknown; use one of {', '.join(TOKEN_SCOPES)}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ServiceToken(id=new_id(), name=name, token_hash=digest(secret), scope=scope, created_at=time.time(),
                           last_used_at=None, revoked_at=None)
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError as exc:
            raise TokenExistsError(f"a token named {name!r} exists already; choose another name") from exc
        return _token(row), secret

    def check_token(self, secret: str, now: float | None = None) -> TokenRecord | None:
        """The live token of a bearer secret (its last-use time updated), else None."""
        now = time.time() if now is None else now
        with self._session.begin() as s:
            row = s.scalars(select(ServiceToken).where(ServiceToken.token_hash == digest(secret))).first()
            if row is None or row.revoked_at is not None:
                return None
            if row.last_used_at is None or now - row.last_used_at >= AUDIT_TOKEN_USE_S:
                s.add(AuditEntry(id=new_id(), at=now, actor=f"token:{row.name}", action="token.use",
                                 target=row.name, detail=row.scope, address=""))
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY_S:
                row.last_used_at = now
            return _token(row)

    def revoke_token(self, name: str) -> TokenRecord:
        with self._session.begin() as s:
            row = s.scalars(select(ServiceToken).where(ServiceToken.name == name)).first()
            if row is None:
                raise NotFoundError(f"no token named {name!r}; list them with `sortloop tokens list`")
            row.revoked_at = row.revoked_at or time.time()
            return _token(row)

    def tokens(self) -> list[TokenRecord]:
        with self._session() as s:
            return [_token(r) for r in s.scalars(select(ServiceToken).order_by(ServiceToken.name)).all()]

    # -- audit -----------------------------------------------------------------------------------

    def audit(self, action: str, actor: str, target: str = "", detail: str = "", address: str = "") -> None:
        with self._session.begin() as s:
            s.add(AuditEntry(id=new_id(), at=time.time(), actor=actor[:64], action=action[:32], target=target[:128],
                             detail=detail, address=address[:64]))

    def audit_log(self, limit: int = 500, action: str | None = None) -> list[AuditRecord]:
        """Audit entries, newest first."""
        stmt = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id).limit(limit)
        if action is not None:
            stmt = stmt.where(AuditEntry.action == action)
        with self._session() as s:
            return [AuditRecord(r.id, r.at, r.actor, r.action, r.target, r.detail, r.address)
                    for r in s.scalars(stmt).all()]
