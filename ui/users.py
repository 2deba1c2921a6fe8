"""User management, one piece of code for the ``sortloop users`` commands and the console's Admin tab: add,
disable, enable, reset a password (the user must choose a new one at the next login), change a role, unlock,
list and end sessions. Every change is audited under the actor's name and ends the user's sessions; the last
enabled admin cannot be disabled or demoted (nobody could manage users then).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from station.store import NotFoundError
from station.store.access import SessionRecord, UserExistsError
from station.store.models import ROLES
from ui.passwords import hash_password
from ui.repo import ConsoleRepo, UserRecord

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 10


class UserChangeError(ValueError):
    """A user change that cannot be made; the message names the user and the fix."""


class WeakPasswordError(UserChangeError):
    pass


def check_password(username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPasswordError(f"password too short ({len(password)} characters); use at least {MIN_PASSWORD}")
    if password.lower() == username.lower():
        raise WeakPasswordError("password equals the user name; choose another")


def temporary_password() -> str:
    """A random password an admin hands over; the user must replace it at the first login."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class UserRow:
    """A user as the Admin tab and ``users list`` show it."""

    username: str
    role: str
    state: str  # enabled | disabled | locked
    must_change: bool
    sessions: int
    created_at: float


class UserAdmin:
    """User changes made by ``actor`` (an admin's user name, or ``cli:<login>``), audited."""

    def __init__(self, repo: ConsoleRepo, actor: str, address: str = "",
                 hasher: Callable[[str], str] = hash_password) -> None:
        self.repo, self.access, self.actor, self.address, self.hasher = repo, repo.access, actor, address, hasher

    def _audit(self, action: str, target: str, detail: str = "") -> None:
        self.access.audit(action, self.actor, target, detail, self.address)

    def _user(self, username: str) -> UserRecord:
        record = self.repo.get_user(username)
        if record is None:
            raise UserChangeError(f"user {username!r} does not exist; list users with `sortloop users list`")
        return record

    def _keep_an_admin(self, username: str) -> None:
        """Refuse a change that would leave no enabled admin."""
        admins = [u for u in self.repo.users() if u.role == "admin" and not u.disabled]
        if [u.username for u in admins] == [username]:
            raise UserChangeError(f"{username!r} is the last enabled admin; make another admin first")

    def rows(self) -> list[UserRow]:
        count: dict[str, int] = {}
        for s in self.access.sessions():
            count[s.username] = count.get(s.username, 0) + 1
        return [UserRow(u.username, u.role, "disabled" if u.disabled else "locked" if u.locked else "enabled",
                        u.must_change, count.get(u.username, 0), u.created_at) for u in self.repo.users()]

    def sessions(self, username: str | None = None) -> list[SessionRecord]:
        return self.access.sessions(username or None)

    def add(self, username: str, role: str, password: str | None = None) -> str:
        """Add a user; returns the password. Without one a temporary password is made, which the user must
        change at the first login."""
        if not NAME.fullmatch(username):
            raise UserChangeError(f"user name {username!r} is not allowed; use 1-64 letters, digits or . _ @ - "
                                  "(starting with a letter or digit)")
        if role not in ROLES:
            raise UserChangeError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
        chosen = password if password is not None else temporary_password()
        check_password(username, chosen)
        try:
            self.repo.add_user(username, self.hasher(chosen), role, must_change=password is None)
        except UserExistsError as exc:
            raise UserChangeError(str(exc)) from None
        self._audit("user.add", username, role)
        return chosen

    def set_role(self, username: str, role: str) -> None:
        if role not in ROLES:
            raise UserChangeError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
        if self._user(username).role == "admin" and role != "admin":
            self._keep_an_admin(username)
        self.access.set_role(username, role)
        self._audit("user.role", username, role)

    def disable(self, username: str) -> None:
        if self._user(username).role == "admin":
            self._keep_an_admin(username)
        self.access.set_disabled(username, True)
        self._audit("user.disable", username)

    def enable(self, username: str) -> None:
        self._user(username)
        self.access.set_disabled(username, False)
        self._audit("user.enable", username)

    def reset_password(self, username: str, password: str | None = None) -> str:
        """A new password (a temporary one when none is given); the user must change it at the next login.
        Ends their sessions and lifts a lock. Returns the password to hand over."""
        self._user(username)
        chosen = password if password is not None else temporary_password()
        check_password(username, chosen)
        self.access.set_password(username, self.hasher(chosen), must_change=True)
        self._audit("user.password", username, "reset; must change at next login")
        return chosen

    def unlock(self, username: str) -> None:
        self._user(username)
        self.access.unlock(username)
        self._audit("user.unlock", username)

    def end_sessions(self, username: str) -> int:
        self._user(username)
        ended = self.access.end_sessions(username)
        self._audit("session.revoke", username, f"{ended} sessions")
        return ended

    def end_session(self, session_id: str) -> str:
        """End one session by its id (from ``sessions``); returns its user name."""
        try:
            username = self.access.end_session_id(session_id.strip())
        except NotFoundError as exc:
            raise UserChangeError(str(exc)) from None
        self._audit("session.revoke", username, session_id.strip())
        return username
