"""Console accounts, roles and sessions: argon2 password hashes, server-side sessions, permissions.

One login serves the Gradio console (through ``gr.mount_gradio_app(auth_dependency=…)``) and the console's
API write endpoints (through ``Auth.dependency``). Every check happens on the server; hiding a tab is only
a courtesy. The login form lives at ``/login`` (see ``router``). Sessions are server-side
(``station.store.access``): logout, a password or role change, disabling and an admin's revoke end them at
once. Logins go through ``ui.login``'s back-off and bounded hash pool. After an admin's password reset the
next login leads to ``/password`` (choose a new one) and nothing else answers until then.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from string import Template
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from station.access import COOKIE, PASSWORD_PAGE, principal_of
from station.config import SecurityConfig
from station.store.models import ROLES
from ui.login import BusyError, HashPool, LoginGuard, ThrottledError
from ui.passwords import check_login, hash_password, verify_password
from ui.repo import ConsoleRepo, UserRecord
from ui.users import MIN_PASSWORD, UserAdmin, WeakPasswordError, check_password

__all__ = ["MIN_PASSWORD", "Auth", "ConsoleUser", "Perm", "WeakPasswordError", "check_password", "hash_password",
           "verify_password"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"


class Perm(StrEnum):
    OPERATE = "operate"
    REVIEW = "review"
    QUARANTINE_LOG = "quarantine_log"
    EXPORT = "export"
    RESOLVE = "resolve"
    REPORTS = "reports"
    ENGINEER = "engineer"
    USERS = "users"


P = Perm
GRANTS: dict[str, frozenset[Perm]] = {
    "operator": frozenset({P.OPERATE, P.REVIEW, P.QUARANTINE_LOG}),
    "engineer": frozenset({P.OPERATE, P.REVIEW, P.QUARANTINE_LOG, P.EXPORT, P.RESOLVE, P.REPORTS, P.ENGINEER}),
    "manager": frozenset({P.QUARANTINE_LOG, P.REPORTS}),
    "admin": frozenset(Perm),
}
# A correction by a higher rank wins a conflict (see ui.corrections.resolve).
RANK = {"operator": 1, "manager": 1, "engineer": 2, "admin": 3}
DOING = {
    P.OPERATE: "correct items or acknowledge hazards", P.REVIEW: "use the review queue",
    P.QUARANTINE_LOG: "read the quarantine log", P.EXPORT: "export corrections as a dataset",
    P.RESOLVE: "resolve conflicting corrections", P.REPORTS: "open reports", P.ENGINEER: "open the engineer view",
    P.USERS: "manage users",
}


class AuthError(Exception):
    """Base of the console's refusals; ``status`` is the HTTP status to answer with."""

    status = 401


class LoginFailedError(AuthError):
    pass


class NotLoggedInError(AuthError):
    pass


class SessionExpiredError(NotLoggedInError):
    pass


class ForbiddenError(AuthError):
    status = 403


class PasswordChangeRequiredError(ForbiddenError):
    """An admin reset the password: the user must choose a new one (at ``/password``) first."""


@dataclass(frozen=True)
class ConsoleUser:
    """The logged-in user as the views see it (what ``user_state`` holds)."""

    username: str
    role: str

    def can(self, perm: Perm | str) -> bool:
        return Perm(perm) in GRANTS.get(self.role, frozenset())

    @property
    def rank(self) -> int:
        return RANK.get(self.role, 0)


def roles_with(perm: Perm) -> list[str]:
    return [r for r in ROLES if perm in GRANTS[r]]


def forbidden(user: ConsoleUser, perm: Perm) -> ForbiddenError:
    return ForbiddenError(f"forbidden (403): role {user.role} may not {DOING[perm]}; that needs "
                          f"{' or '.join(roles_with(perm))}")


class Auth:
    """Logs users in (through the back-off and the hash pool) and finds the user of a request."""

    def __init__(self, repo: ConsoleRepo, *, ttl_s: float, security: SecurityConfig | None = None,
                 secure: bool = False) -> None:
        self.repo, self.ttl_s, self.secure = repo, ttl_s, secure
        self.security = security or SecurityConfig()
        self.access = repo.access
        self.guard = LoginGuard(self.security)
        sec = self.security
        self.pool = HashPool(sec.hash_workers, sec.hash_queue, sec.hash_nice, sec.hash_interval_s)

    def login(self, username: str, password: str, address: str = "") -> tuple[ConsoleUser, str, bool]:
        """The user, a new session's cookie value and whether they must change their password first;
        ``LoginFailedError``, ``ThrottledError`` (wait) or ``BusyError`` (too many logins queued) otherwise."""
        self.guard.check(username, address)
        try:
            record = self.repo.get_user(username)
            # verified even for unknown users (a dummy hash), so timing does not tell which names exist
            stored = record.password_hash if record else None
            ok, rehashed = self.pool.run(check_login, stored, password)
        except BaseException:
            self.guard.release(username, address)
            raise
        if record is None or not ok:
            self.guard.failed(username, address)
            locked = self.access.login_failed(username, self.security.lock_after)
            self.access.audit("login.failed", username[:64], detail="account locked" if locked else "",
                              address=address)
            raise LoginFailedError("wrong user name or password")
        if record.locked or record.disabled:
            self.guard.release(username, address)  # the password was right: no failure to count
        if record.locked:
            raise LoginFailedError(f"account {username!r} is locked after too many failed logins; an admin can "
                                   f"unlock it (sortloop users unlock {username})")
        if record.disabled:
            raise LoginFailedError(f"account {username!r} is disabled; ask an admin")
        self.guard.succeeded(username, address)
        self.access.login_succeeded(username)
        if rehashed is not None:  # an older hash: stored again with today's parameters
            self.access.rehash(record.username, record.password_hash, rehashed)
        token = self.access.open_session(record.username, self.ttl_s, address)
        self.access.audit("login", record.username, detail=record.role, address=address)
        return ConsoleUser(record.username, record.role), token, record.must_change

    def change_password(self, username: str, current: str, new: str, address: str = "") -> str:
        """Check the current password (through the back-off and the pool), store the new one, end every
        session of the user and return a new session's cookie value."""
        if new == current:
            raise WeakPasswordError("the new password is the one you have; choose another")
        check_password(username, new)
        try:
            self.login(username, current, address)  # the same checks (back-off, lock) as a login
        except LoginFailedError:
            raise LoginFailedError("the current password is wrong") from None
        self.access.set_password(username, self.pool.run(hash_password, new), must_change=False)
        self.access.audit("user.password", username, username, "changed by the user", address)
        return self.access.open_session(username, self.ttl_s, address)

    def admin(self, user: ConsoleUser, address: str = "") -> UserAdmin:
        """User management as ``user`` (an admin), hashing on the pool."""
        self.require(user, Perm.USERS)
        return UserAdmin(self.repo, user.username, address, hasher=lambda p: self.pool.run(hash_password, p))

    def known(self, username: str) -> ConsoleUser:
        """The enabled user of that name (as the database says now)."""
        record: UserRecord | None = self.repo.get_user(username)
        if record is None or record.disabled or record.locked:
            raise NotLoggedInError(f"account {username!r} no longer exists or is disabled; log in again")
        return ConsoleUser(record.username, record.role)

    def user(self, conn: HTTPConnection) -> ConsoleUser:
        """The user of a request's live session (the gate's finding when it ran, else a lookup)."""
        principal = principal_of(conn)
        if principal is not None and principal.kind == "user" and not principal.must_change:
            return ConsoleUser(principal.name, principal.role)
        token = conn.cookies.get(COOKIE)
        if not token:
            raise NotLoggedInError("log in to use the console")
        check = self.access.check_session(token, self.security.session_idle_s)
        if check.session is None:
            if check.reason == "expired":
                raise SessionExpiredError("your session expired; log in again")
            raise NotLoggedInError("your session has ended (logout, a password or role change, or an admin "
                                   "ended it); log in again")
        if check.session.must_change:
            raise PasswordChangeRequiredError(f"an admin reset the password of {check.session.username!r}: "
                                              f"choose a new one at {PASSWORD_PAGE} first")
        return ConsoleUser(check.session.username, check.session.role)

    def username(self, request: Request) -> str | None:
        """Gradio's ``auth_dependency``: the user name of a valid session, else None (Gradio answers 401)."""
        try:
            return self.user(request).username
        except AuthError:
            return None

    def require(self, user: ConsoleUser, perm: Perm) -> ConsoleUser:
        if not user.can(perm):
            log.warning("refused: %s (%s) tried to %s", user.username, user.role, DOING[perm])
            raise forbidden(user, perm)
        return user

    def dependency(self, perm: Perm) -> Callable[[Request], ConsoleUser]:
        """A FastAPI dependency: the request's user, or 401 (not logged in / expired) or 403 (role)."""

        def current(request: Request) -> ConsoleUser:
            try:
                return self.require(self.user(request), perm)
            except AuthError as exc:
                raise HTTPException(exc.status, str(exc)) from None

        return current


def request_user(auth: Auth, request: object, perm: Perm | None = None) -> ConsoleUser:
    """The user of a Gradio event (``gr.Request.username``, set through the auth dependency), checked for
    ``perm``; raises ``NotLoggedInError`` or ``ForbiddenError``."""
    username = getattr(request, "username", None)
    if not username:
        raise NotLoggedInError("log in to use the console")
    user = auth.known(str(username))
    return user if perm is None else auth.require(user, perm)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


NOTICES = {
    "expired": "Your session expired. Please log in again.",
    "login": "Please log in to use the console.",
    "out": "You are logged out.",
}


@functools.cache
def _login_template() -> Template:
    return Template((STATIC / "login.html").read_text())


def login_page(message: str, *, next_url: str = "/ui/", error: bool = False, status: int = 200,
               username: str = "") -> HTMLResponse:
    page = _login_template()
    body = page.substitute(message=html.escape(message), next=html.escape(next_url, quote=True),
                           kind="error" if error else "notice", hidden="" if message else "hidden",
                           username=html.escape(username, quote=True))
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def with_session(auth: Auth, request: Request, response: Response, token: str) -> Response:
    """``response`` setting the session cookie (``Secure`` over TLS or when configured)."""
    secure = auth.secure or request.url.scheme == "https"
    response.set_cookie(COOKIE, token, max_age=int(auth.ttl_s), httponly=True, samesite="lax", secure=secure,
                        path="/")
    return response


async def refused_login(auth: Auth, exc: Exception, page: HTMLResponse) -> HTMLResponse:
    """``page`` with the status of a refused login; a throttled or busy one after the tarpit, with
    Retry-After."""
    status, wait = _refusal(exc)
    if status != 401:  # slow a flood down without holding a thread: it waits as a coroutine
        await asyncio.sleep(min(wait, auth.security.login_tarpit_s))
    page.status_code = status
    if wait:
        page.headers["Retry-After"] = str(wait)
    return page


def _refusal(exc: Exception) -> tuple[int, int]:
    """(HTTP status, Retry-After seconds or 0) of a refused login."""
    if isinstance(exc, ThrottledError):
        return 429, max(1, round(exc.retry_after_s))
    if isinstance(exc, BusyError):
        return 503, 5
    return 401, 0


def router(auth: Auth) -> APIRouter:
    """``/login`` (form), ``/logout`` and ``/auth/session`` (who am I; 401 with the reason otherwise)."""
    r = APIRouter(tags=["console auth"])

    @r.get("/login", response_class=HTMLResponse)
    def login_form(next: str | None = None, e: str | None = None) -> HTMLResponse:
        message = NOTICES.get(e or "", "")
        if not auth.repo.users():
            message = "No account exists yet. Create the first admin on the station: sortloop users create-admin"
        return login_page(message, next_url=_safe_next(next), error=e == "expired")

    @r.post("/login", response_class=HTMLResponse)
    async def login_submit(request: Request, username: Annotated[str, Form(max_length=256)],
                           password: Annotated[str, Form(max_length=1024)],
                           next: Annotated[str, Form(max_length=2048)] = "/ui/") -> Response:
        name, address = username.strip(), request.client.host if request.client else ""
        try:
            user, token, must_change = await run_in_threadpool(auth.login, name, password, address)
        except (LoginFailedError, ThrottledError, BusyError) as exc:
            log.info("login refused for %r from %s: %s", name[:64], address, exc)
            return await refused_login(auth, exc, login_page(f"Login refused: {exc}.", next_url=_safe_next(next),
                                                               error=True, username=name[:64]))
        log.info("%s (%s) logged in", user.username, user.role)
        target = _safe_next(next)
        if must_change:  # an admin reset the password: the change-password step comes first
            target = f"{PASSWORD_PAGE}?{urlencode({'next': target})}"
        return with_session(auth, request, RedirectResponse(target, status_code=303), token)

    @r.api_route("/logout", methods=["GET", "POST"])
    def logout(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        if token and auth.access.end_session(token):
            principal = principal_of(request)
            auth.access.audit("logout", principal.name if principal else "?",
                              address=request.client.host if request.client else "")
        response = RedirectResponse("/login?e=out", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @r.get("/auth/session")
    def session(request: Request) -> JSONResponse:
        try:
            user = auth.user(request)
        except AuthError as exc:
            reason = "expired" if isinstance(exc, SessionExpiredError) else "login"
            return JSONResponse({"detail": str(exc), "reason": reason}, status_code=401)
        return JSONResponse({"username": user.username, "role": user.role,
                             "permissions": sorted(p.value for p in GRANTS[user.role])})

    return r
