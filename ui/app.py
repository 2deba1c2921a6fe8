"""The operator console: a Gradio app mounted at /ui of the station's FastAPI app, behind our own login.

``mount_console(web_app, station, cfg)`` is what ``ui.cli`` registers in ``station.cli.CONSOLE_HOOKS``. It adds
the login form and session endpoints (``ui.auth``), the console API (corrections, hazards, review), the
static files, a gate that refuses the console on a non-loopback address while no admin exists, and the
Gradio Blocks with one tab per view, shown by role. Every handler checks the role again on the server.

Tab builders get ``user_state``: a ``gr.State`` holding the logged-in ``ui.auth.ConsoleUser`` (username,
role, ``can(perm)``), set when the page loads; ``build_reports_tab`` / ``build_engineer_tab`` (in
``ui.reports`` / ``ui.engineer``) are called as ``builder(ctx, user_state)``.
"""

# No ``from __future__ import annotations``: Gradio reads the handlers' annotations at run time.
import html
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from station.access import PASSWORD_PAGE
from station.config import StationConfig
from station.taxonomy import load_taxonomy
from ui import corrections, hazard, review
from ui.admin import build_admin_tab
from ui.auth import (
    Auth,
    AuthError,
    ConsoleUser,
    PasswordChangeRequiredError,
    Perm,
    SessionExpiredError,
    request_user,
)
from ui.auth import router as auth_router
from ui.context import ConsoleContext
from ui.downloads import KEEP_S, DownloadGate, sweep
from ui.operator import build_operator_tab
from ui.repo import ConsoleRepo
from ui.settings import Console, ConsoleSettings, load_settings

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
HEAD = "<script src='/console/static/console.js' defer></script>"
# (tab label, elem id, permission that shows it)
TABS = (("Operator", "operator", Perm.OPERATE), ("Hazards", "hazards", Perm.QUARANTINE_LOG),
        ("Review", "review", Perm.REVIEW), ("Reports", "reports", Perm.REPORTS),
        ("Engineer", "engineer", Perm.ENGINEER), ("Admin", "admin", Perm.USERS))
CONSOLE_PATHS = ("/ui", "/login", "/api/console", "/console/", PASSWORD_PAGE)


class ConsoleSetupError(RuntimeError):
    """The console cannot be mounted as configured; the message names the setting and the fix."""


def static_text(name: str) -> str:
    return (STATIC / name).read_text()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


REFUSED = ("<!doctype html><title>console refused</title><h1>Console refused</h1><p>No admin account exists and "
           "the station listens on a network address ({host}). Create the first admin on the station with "
           "<code>sortloop users create-admin</code>, then reload. (No default password exists.)</p>")


class ConsoleGate:
    """ASGI gate in front of the console's paths: refuse them on a non-loopback address while no admin exists,
    and send a browser (``Accept: text/html``) without a valid session from /ui to the login form (saying
    why), or to the change-password step after an admin's reset. API clients get the policy's 401/403."""

    def __init__(self, app: ASGIApp, console: Console, host: str) -> None:
        self.app, self.console, self.host = app, console, host
        self.loopback = is_loopback(host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(CONSOLE_PATHS):
            await self.app(scope, receive, send)
            return
        if not self.loopback and not await run_in_threadpool(self.console.repo.has_admin):
            page = HTMLResponse(REFUSED.format(host=html.escape(self.host)), status_code=503)
            await page(scope, receive, send)
            return
        if scope["method"] == "GET" and path in ("/ui", "/ui/") and is_navigation(Request(scope)):
            where = await run_in_threadpool(self._detour, Request(scope))
            if where is not None:
                await RedirectResponse(where, status_code=303)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _detour(self, request: Request) -> str | None:
        """Where a browser opening the console goes instead: the login form (saying why) or the
        change-password step; None: on to the console."""
        try:
            self.console.auth.user(request)
        except SessionExpiredError:
            return "/login?e=expired&next=/ui/"
        except PasswordChangeRequiredError:
            return f"{PASSWORD_PAGE}?next=/ui/"
        except AuthError:
            return "/login?e=login&next=/ui/"
        return None


def is_navigation(request: Request) -> bool:
    """A person's browser opening a page (``Accept: text/html``, no bearer token), not a script or an API
    client: only that is redirected to the login form; everything else gets the policy's 401 or 403."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and not request.headers.get("authorization")


def _static_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/console/static/{name}")
    def static(name: str) -> FileResponse:
        path = STATIC / name
        if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
            raise HTTPException(404, f"no console file {name!r}")
        return FileResponse(path, media_type=STATIC_TYPES[path.suffix])

    return r


def make_console(web_app: FastAPI, station: Any, cfg: StationConfig, settings: ConsoleSettings) -> Console:
    store = station.store if station is not None else web_app.state.store
    taxonomy = station.taxonomy if station is not None else load_taxonomy(cfg.taxonomy_file())
    repo = ConsoleRepo(store)
    auth = Auth(repo, ttl_s=settings.session_ttl_s, security=cfg.security, secure=settings.cookie_secure)
    live = station.live if station is not None else getattr(web_app.state, "live", None)
    console = Console(ConsoleContext(cfg, taxonomy, store, station), repo, auth, settings, live)
    unknown = [c for c in console.shortcut_classes if c not in taxonomy]
    if unknown:
        raise ConsoleSetupError(f"shortcut_classes {unknown} are not taxonomy classes; choose from {taxonomy.names}")
    return console


def add_console_routes(web_app: FastAPI, console: Console) -> None:
    """Login, session and console API endpoints, static files and the gate (everything but the Gradio UI)."""
    from ui.audit import router as audit_router
    from ui.impact import impact_router
    from ui.password import router as password_router

    for router in (auth_router(console.auth), password_router(console.auth), corrections.router(console),
                   hazard.router(console), review.router(console), _static_router(), impact_router(console.ctx),
                   audit_router(console)):
        web_app.include_router(router)
    host = console.ctx.config.api.host
    web_app.add_middleware(DownloadGate, offers=console.ctx.downloads, user_of=console.auth.username)
    web_app.add_middleware(ConsoleGate, console=console, host=host)
    sweep()  # downloads left behind by an earlier run
    if not is_loopback(host) and not console.repo.has_admin():
        log.error("console refused on %s: no admin account; run `sortloop users create-admin`", host)


def mount_console(web_app: FastAPI, station: Any, cfg: StationConfig, *,
                  settings: ConsoleSettings | None = None) -> Console:
    """Mount the console at /ui of ``web_app`` (the app of ``station.api.create_app``), with its login and API."""
    import gradio as gr

    console = make_console(web_app, station, cfg, settings or load_settings())
    add_console_routes(web_app, console)
    gr.mount_gradio_app(web_app, build_console(console), path="/ui", auth_dependency=console.auth.username,
                        css=static_text("console.css"), head=HEAD, footer_links=[], show_error=True)
    web_app.state.console = console
    return console


def console_hook(web_app: Any, station: Any, cfg: StationConfig) -> None:
    """The function ``ui.cli`` registers in ``station.cli.CONSOLE_HOOKS``."""
    mount_console(web_app, station, cfg)


def _header(user: ConsoleUser) -> str:
    return (f"<div class='sl-header'><b>sortloop console</b><span>signed in as <b id='whoami'>"
            f"{html.escape(user.username)}</b> ({user.role})<a href='/logout' id='logout'>Log out</a></span></div>")


def build_console(console: Console) -> "gr.Blocks":
    """The console's Blocks: header, hazard banner, and the tabs (all hidden until the user's role is known)."""
    import gradio as gr

    # Gradio's copies of downloads: checked every 10 minutes, removed after an hour
    with gr.Blocks(title="sortloop console", analytics_enabled=False, delete_cache=(600, int(KEEP_S))) as demo:
        user_state = gr.State(None)
        timer = gr.Timer(console.settings.poll_s)
        header = gr.HTML("", js_on_load=None, elem_id="console-header")
        banner = gr.HTML(hazard.banner_html([]), js_on_load=static_text("banner.js"), elem_id="hazard-banner")
        banner_seen = gr.State("")
        tabs: list[Any] = []
        with gr.Tabs() as tab_set:
            for label, key, _ in TABS:
                with gr.Tab(label, id=key, visible=False, elem_id=f"tab-{key}") as tab:
                    _build_tab(console, key, user_state, timer, tab)
                tabs.append(tab)

        def on_load(request: gr.Request) -> list[Any]:
            user = request_user(console.auth, request)
            allowed = [key for _, key, perm in TABS if user.can(perm)]
            shown = [gr.Tab(visible=user.can(perm)) for _, _, perm in TABS]
            return [user, _header(user), gr.Tabs(selected=allowed[0] if allowed else None), *shown]

        def on_tick(seen: str, request: gr.Request) -> tuple[Any, Any]:
            try:
                request_user(console.auth, request)
            except AuthError:
                return gr.skip(), gr.skip()
            page = hazard.banner_html(hazard.active_hazards(console))
            return (gr.skip(), seen) if page == seen else (page, page)

        demo.load(on_load, None, [user_state, header, tab_set, *tabs])
        timer.tick(on_tick, banner_seen, [banner, banner_seen])
    return demo


def _build_tab(console: Console, key: str, user_state: "gr.State", timer: "gr.Timer", tab: "gr.Tab") -> None:
    if key == "operator":
        build_operator_tab(console, user_state, timer)
    elif key == "hazards":
        hazard.build_hazard_tab(console, user_state, timer)
    elif key == "review":
        review.build_review_tab(console, user_state, tab)
    elif key == "reports":
        from ui.reports import build_reports_tab

        build_reports_tab(console.ctx, user_state)
    elif key == "admin":
        build_admin_tab(console, user_state)
    else:
        from ui.engineer import build_engineer_tab

        build_engineer_tab(console.ctx, user_state)
