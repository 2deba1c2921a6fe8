"""``/password``: a user changes their own password. After an admin's reset the login leads here, and until
the new password is set every other route refuses the session (``station.access``: 403 "password change
required"; the console's page sends a browser here). A change ends every session of the user and opens a
new one for this browser."""

from __future__ import annotations

import functools
import html
from string import Template
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from station.access import COOKIE, principal_of
from ui.auth import (
    MIN_PASSWORD,
    STATIC,
    Auth,
    LoginFailedError,
    _safe_next,
    refused_login,
    with_session,
)
from ui.login import BusyError, ThrottledError
from ui.users import WeakPasswordError

FIRST = "An admin reset your password. Choose a new one to continue."


@functools.cache
def _template() -> Template:
    return Template((STATIC / "password.html").read_text())


def password_page(username: str, message: str, *, next_url: str = "/ui/", error: bool = False,
                  status: int = 200) -> HTMLResponse:
    body = _template().substitute(message=html.escape(message), next=html.escape(next_url, quote=True),
                                  kind="error" if error else "notice", hidden="" if message else "hidden",
                                  username=html.escape(username), minimum=MIN_PASSWORD)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _who(request: Request) -> tuple[str, bool]:
    """(user name, must change) of the request's session, as the access gate found it."""
    principal = principal_of(request)
    if principal is None or principal.kind != "user":  # the gate admits only logged-in users here
        return "", False
    return principal.name, principal.must_change


def router(auth: Auth) -> APIRouter:
    r = APIRouter(tags=["console auth"])

    @r.get("/password", response_class=HTMLResponse)
    def password_form(request: Request, next: str | None = None) -> HTMLResponse:
        name, must = _who(request)
        return password_page(name, FIRST if must else "", next_url=_safe_next(next))

    @r.post("/password", response_class=HTMLResponse)
    async def password_submit(request: Request, current: Annotated[str, Form(max_length=1024)],
                              new: Annotated[str, Form(max_length=1024)],
                              confirm: Annotated[str, Form(max_length=1024)],
                              next: Annotated[str, Form(max_length=2048)] = "/ui/") -> Response:
        name, _ = _who(request)
        target = _safe_next(next)
        if not name or not request.cookies.get(COOKIE):
            return RedirectResponse("/login?e=login", status_code=303)
        if new != confirm:
            return password_page(name, "The two new passwords differ; type the same one twice.", next_url=target,
                                 error=True, status=400)
        address = request.client.host if request.client else ""
        try:
            token = await run_in_threadpool(auth.change_password, name, current, new, address)
        except WeakPasswordError as exc:
            return password_page(name, f"Not changed: {exc}.", next_url=target, error=True, status=400)
        except (LoginFailedError, ThrottledError, BusyError) as exc:
            return await refused_login(auth, exc, password_page(name, f"Not changed: {exc}.", next_url=target,
                                                                  error=True))
        return with_session(auth, request, RedirectResponse(target, status_code=303), token)

    return r
