"""One access policy for every route of the station's web app, and the gate that enforces it.

``POLICY`` maps each route (method and path template, as FastAPI declares it; a mount by its prefix) to
the principals it admits: the console roles (operator, engineer, manager, admin), service tokens by scope
(``token:metrics``, ``token:read``, ``token:ack``), or anyone (``PUBLIC``). ``AccessGate`` finds the route
a request is for, identifies the caller (a session cookie, or ``Authorization: Bearer`` with a service
token) and answers 401 (nobody identified) or 403 (not admitted) before the route runs. A route missing
from the policy is refused to everyone (and ``unguarded_routes`` names it, so the route × role test fails).
The console's paths are listed here too, as plain strings: the station still imports nothing from ``ui``.
Every response also gets the security headers (CSP with frame-ancestors, nosniff, referrer policy).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from station.store.access import AccessRepo

log = logging.getLogger(__name__)

COOKIE = "sortloop_session"
ROLES = ("operator", "engineer", "manager", "admin")
SCOPES = ("token:metrics", "token:read", "token:ack")
PRINCIPALS = ROLES + SCOPES


@dataclass(frozen=True)
class Principal:
    """Who a request is from: a user (``kind`` user, ``role`` their role) or a service token (``kind`` token,
    ``role`` ``token:<scope>``)."""

    name: str
    role: str
    kind: str = "user"
    must_change: bool = False
    """An admin reset the user's password: only the change-password step (and public routes) answer."""


@dataclass(frozen=True)
class Rule:
    """Who may call a route; ``public``: anyone, logged in or not."""

    allow: frozenset[str]
    public: bool = False
    doing: str = "use this route"
    before_change: bool = False
    """Also open to a user who must change their password first (the change-password step itself)."""

    def admits(self, principal: Principal | None) -> bool:
        return self.public or (principal is not None and principal.role in self.allow)


def rule(doing: str, *who: str, before_change: bool = False) -> Rule:
    unknown = set(who) - set(PRINCIPALS)
    if unknown:
        raise ValueError(f"unknown principals {sorted(unknown)}; use {PRINCIPALS}")
    return Rule(frozenset(who), doing=doing, before_change=before_change)


PUBLIC = Rule(frozenset(), public=True)
SIGNED_IN = rule("use the station's pages", *ROLES)
READ = rule("read items and throughput", *ROLES, "token:read")
LIVE = rule("watch the live view", *ROLES, "token:read")
ALARMS = rule("read alarms", *ROLES, "token:read", "token:ack")
ACK = rule("acknowledge alarms", "operator", "engineer", "admin", "token:ack")
METRICS = rule("read metrics", "engineer", "admin", "token:metrics")
OPERATE = rule("correct items or acknowledge hazards", "operator", "engineer", "admin")
REVIEW = rule("use the review queue", "operator", "engineer", "admin")
QUARANTINE_LOG = rule("read the quarantine log", *ROLES)
EXPORT = rule("export corrections as a dataset", "engineer", "admin")
ADMIN = rule("read the audit log", "admin")
OWN_PASSWORD = rule("change your own password", *ROLES, before_change=True)
PASSWORD_PAGE = "/password"  # noqa: S105 (a page's path, not a password)

# (method, path template) -> rule; method "*" for a mount (every method under that prefix).
POLICY: dict[tuple[str, str], Rule] = {
    # the station (station.api)
    ("GET", "/health"): PUBLIC,  # anonymous: liveness only; figures need a role or a read token
    ("GET", "/"): SIGNED_IN,
    ("GET", "/metrics"): METRICS,
    ("GET", "/live.mjpg"): LIVE,
    ("GET", "/live.jpg"): LIVE,
    ("GET", "/api/items"): READ,
    ("GET", "/api/items/{item_id}"): READ,
    ("GET", "/api/items/{item_id}/crop"): READ,
    ("GET", "/api/throughput"): READ,
    ("GET", "/api/alarms"): ALARMS,
    ("POST", "/api/alarms/{alarm_id}/ack"): ACK,
    ("GET", "/openapi.json"): SIGNED_IN,
    ("GET", "/docs"): SIGNED_IN,
    ("GET", "/docs/oauth2-redirect"): SIGNED_IN,
    ("GET", "/redoc"): SIGNED_IN,
    ("GET", "/docs/assets/{name}"): PUBLIC,
    # the console (ui): login, its API, downloads, static files and the Gradio app
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/logout"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/auth/session"): SIGNED_IN,
    ("GET", "/password"): OWN_PASSWORD,
    ("POST", "/password"): OWN_PASSWORD,
    ("GET", "/console/static/{name}"): PUBLIC,
    ("GET", "/console/beep.wav"): PUBLIC,
    ("POST", "/api/console/corrections"): OPERATE,
    ("POST", "/api/console/corrections/undo"): OPERATE,
    ("GET", "/api/console/corrections"): REVIEW,
    ("POST", "/api/console/frames"): OPERATE,
    ("GET", "/console/frames/{frame_id}.jpg"): OPERATE,
    ("GET", "/api/console/export"): EXPORT,
    ("POST", "/api/console/hazards/{alarm_id}/ack"): OPERATE,
    ("GET", "/api/console/quarantine.csv"): QUARANTINE_LOG,
    ("GET", "/api/console/review"): REVIEW,
    ("GET", "/api/console/audit"): ADMIN,
    ("GET", "/api/console/audit.csv"): ADMIN,
    ("GET", "/impact"): PUBLIC,  # unless security.public_impact is false: then SIGNED_IN
    ("GET", "/impact.json"): PUBLIC,
    ("*", "/ui"): SIGNED_IN,  # Gradio: every tab handler checks the role again on the server
}
IMPACT_PATHS = ("/impact", "/impact.json")

CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self' ws: wss:; worker-src 'self' blob:; object-src 'none'; "
       "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


@dataclass(frozen=True)
class DeclaredRoute:
    """A route as the app declares it: methods (``*`` for a mount) and path template."""

    methods: tuple[str, ...]
    path: str


def declared_routes(routes: Iterable[BaseRoute], prefix: str = "") -> list[DeclaredRoute]:
    """Every route of an app, routers included through ``include_router`` flattened (FastAPI may keep them
    as one entry per router)."""
    out: list[DeclaredRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI's lazily included router
            context = getattr(route, "include_context", None)
            out += declared_routes(inner.routes, prefix + str(getattr(context, "prefix", "") or ""))
        elif isinstance(route, Mount):
            out.append(DeclaredRoute(("*",), prefix + route.path))
        elif getattr(route, "path", None) is not None:
            methods = sorted(m for m in (getattr(route, "methods", None) or {"GET"}) if m != "HEAD")
            out.append(DeclaredRoute(tuple(methods), prefix + str(getattr(route, "path", ""))))
    return out


def unguarded_routes(routes: Iterable[BaseRoute], policy: Mapping[tuple[str, str], Rule] = POLICY) -> list[str]:
    """'METHOD path' of every declared route that has no rule in ``policy`` (must be empty)."""
    return [f"{m} {r.path}" for r in declared_routes(routes) for m in r.methods if (m, r.path) not in policy]


def access_table(policy: Mapping[tuple[str, str], Rule] = POLICY) -> str:
    """The policy as a Markdown table (docs/security.md carries it; a test keeps the two equal)."""
    who = ("anonymous", *PRINCIPALS)
    lines = ["| route | " + " | ".join(w.removeprefix("token:") + (" token" if w.startswith("token:") else "")
                                      for w in who) + " |", "|---" * (len(who) + 1) + "|"]
    for (method, path), r in policy.items():
        cells = ["✓" if r.public or w in r.allow else "" for w in who]
        lines.append(f"| `{'ANY' if method == '*' else method} {path}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Matcher:
    """Finds the policy rule of a request by its method and path (the policy's templates compiled)."""

    def __init__(self, policy: Mapping[tuple[str, str], Rule]) -> None:
        self.routes = [(m, compile_path(p)[0], r) for (m, p), r in policy.items() if m != "*"]
        self.mounts = [(p.rstrip("/"), r) for (m, p), r in policy.items() if m == "*"]

    def rule(self, method: str, path: str) -> tuple[Rule | None, bool]:
        """(rule, known path): the rule for ``method path``; with no rule, whether another method has one
        (the app then answers 405)."""
        method = "GET" if method == "HEAD" else method
        known = False
        for m, regex, found in self.routes:
            if regex.match(path):
                if m == method:
                    return found, True
                known = True
        for prefix, found in self.mounts:
            if path == prefix or path.startswith(prefix + "/"):
                return found, True
        return None, known


class AccessGate:
    """ASGI middleware: the policy before every route, and the security headers on every response."""

    def __init__(self, app: ASGIApp, *, repo: AccessRepo, idle_s: float, public_impact: bool = True,
                 policy: Mapping[tuple[str, str], Rule] = POLICY) -> None:
        self.app, self.repo, self.idle_s = app, repo, idle_s
        rules = dict(policy)
        if not public_impact:
            rules.update({("GET", p): SIGNED_IN for p in IMPACT_PATHS})
        self.matcher = Matcher(rules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        if COOKIE in conn.cookies or "authorization" in conn.headers:
            principal, reason = await run_in_threadpool(self.identify, conn)
        else:  # nobody to look up: no thread hop (a login flood is mostly such requests)
            principal, reason = None, "login"
        scope.setdefault("state", {})["principal"] = principal
        refusal = self.refusal(scope, principal, reason)
        if refusal is not None:
            await self._refuse(scope, receive, send, *refusal)
            return
        await self.app(scope, receive, _with_headers(send))

    def identify(self, conn: HTTPConnection) -> tuple[Principal | None, str]:
        """The caller and, when none, why (``expired`` session or ``login``)."""
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = self.repo.check_token(auth[7:].strip())
            return (None, "token") if token is None else (Principal(token.name, f"token:{token.scope}", "token"), "")
        cookie = conn.cookies.get(COOKIE)
        if not cookie:
            return None, "login"
        check = self.repo.check_session(cookie, self.idle_s)
        if check.session is None:
            return None, "expired" if check.reason == "expired" else "login"
        s = check.session
        return Principal(s.username, s.role, must_change=s.must_change), ""

    def refusal(self, scope: Scope, principal: Principal | None, reason: str) -> tuple[int, str, str] | None:
        """(status, detail, reason) when the policy refuses the request, else None."""
        method, path = scope.get("method", "GET"), scope.get("path", "")
        found, known = self.matcher.rule(method, path)
        if found is None:
            if known:
                return None  # another method of a known route: the app answers 405
            log.warning("no access policy for %s %s: refused", method, path)
            return 403, f"no access policy for {method} {path}: refused to everyone (a route missing from " \
                "station.access.POLICY, or no such route)", "policy"
        if found.admits(principal):
            if principal is not None and principal.must_change and not (found.public or found.before_change):
                return 403, f"password change required (403): an admin reset the password of {principal.name!r}; " \
                    f"choose a new one at {PASSWORD_PAGE} first", "password"
            return None
        needs = " or ".join(sorted(found.allow))
        if principal is None:
            what = {"token": "the service token is unknown or revoked; send a valid one",
                    "expired": "your session expired; log in again at /login"}.get(
                        reason, "log in at /login or send a service token")
            return 401, f"not logged in (401): {what} ({found.doing} needs {needs})", reason
        who = f"role {principal.role}" if principal.kind == "user" else f"a {principal.role} token"
        return 403, f"forbidden (403): {who} may not {found.doing}; that needs {needs}", "role"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                      reason: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        body = json.dumps({"detail": detail, "reason": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store"), *SECURITY_HEADERS]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="sortloop"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


def principal_of(conn: HTTPConnection) -> Principal | None:
    """The caller the gate identified (None: anonymous, or the app runs without the gate)."""
    value = conn.scope.get("state", {}).get("principal")
    return value if isinstance(value, Principal) else None
