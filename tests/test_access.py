"""The access policy: every route of the app (REST, MJPEG, downloads, the console, Gradio's API and its file
route) × anonymous, every role and every service-token scope, against a real uvicorn bound to 0.0.0.0."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from access_kit import sign_in
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ui_seed import Running, Seeded, console_app, seed, serve

from station.access import (
    COOKIE,
    POLICY,
    PRINCIPALS,
    ROLES,
    SCOPES,
    Rule,
    access_table,
    declared_routes,
    unguarded_routes,
)
from station.api import create_app
from station.metrics import StationMetrics
from station.store.access import AccessRepo
from ui.app import add_console_routes, make_console
from ui.corrections import export_zip
from ui.settings import Console, ConsoleSettings

GRADIO_PROBES = ("/ui/", "/ui/config", "/ui/gradio_api/info")
FILE_ROUTE = "/ui/gradio_api/file="  # Gradio's downloads: only for the user a file was made for
# what the issue found open to anyone: each must now refuse an anonymous caller
OPEN_BEFORE = ("/api/items", "/api/items/{item}", "/api/items/{item}/crop", "/api/throughput", "/api/alarms",
               "/live.mjpg", "/live.jpg", "/metrics", "/docs", "/openapi.json")


@dataclass(frozen=True)
class Site:
    url: str
    app: FastAPI
    seeded: Seeded
    tokens: dict[str, str]
    console: Console | None = None
    download: str = ""  # an engineer's dataset export, as Gradio's file route serves it


def gradio_copy(path: Path) -> str:
    """What Gradio does with a file a handler returns for download: a copy in its cache, served from there."""
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    return save_file_to_cache(path, get_upload_folder())


def offered(console: Console, owner: str, *, once: bool, name: str = "") -> str:
    """A dataset export handed to Gradio for ``owner``, as a console handler does; its path on the file route."""
    archive, _ = export_zip(console, "yolo")
    if name:
        archive = archive.rename(archive.with_name(name))
    console.ctx.downloads.offer(archive, owner, once=once)
    return gradio_copy(archive)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    seeded = seed(tmp_path_factory.mktemp("access"))
    app, console = console_app(seeded, host="0.0.0.0")
    access = AccessRepo(seeded.store)
    tokens = {f"token:{scope}": access.create_token(f"t-{scope}", scope)[1] for scope in ("metrics", "read", "ack")}
    download = offered(console, "engineer", once=False)
    with serve(app, seeded.live, host="0.0.0.0") as url:
        yield Site(url, app, seeded, tokens, console, download)
    seeded.store.close()


def concrete(path: str, site: Site) -> list[str]:
    """Request paths for a route template (a mount gets a few probes; the console's, a download too)."""
    if path == "/ui":
        return [*GRADIO_PROBES, *([FILE_ROUTE + site.download] if site.download else [])]
    values = {"item_id": site.seeded.ids["plastic"], "alarm_id": "no-such-alarm", "frame_id": "no-such-frame",
              "name": "swagger-ui.css" if path.startswith("/docs") else "console.js"}
    return [re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)]


def headers_for(who: str | None, site: Site) -> dict[str, str]:
    if who is None:
        return {}
    if who in site.tokens:
        return {"Authorization": f"Bearer {site.tokens[who]}"}
    return {"Cookie": f"{COOKIE}={sign_in(site.seeded.store, who, who)}"}  # seeded users are named by role


def status_of(site: Site, method: str, path: str, who: str | None, **extra: str) -> tuple[int, str]:
    m = "GET" if method == "*" else method
    with httpx.stream(m, site.url + path, headers={**headers_for(who, site), **extra}, timeout=60,
                      follow_redirects=False) as r:
        return r.status_code, r.headers.get("location", "")


def refused(status: int, who: str | None) -> bool:
    return status == (401 if who is None else 403)


def admits(rule: Rule, path: str, who: str | None) -> bool:
    """What the walk expects: the policy's rule; on Gradio's file route, only the download's owner."""
    if path.startswith(FILE_ROUTE):
        return who == "engineer"
    return rule.public or who in rule.allow


def mismatches(site: Site, principals: tuple[str | None, ...]) -> list[str]:
    """Every (route, caller) whose answer disagrees with the policy; a route without a rule is one too."""
    out = [f"{r}: no rule in station.access.POLICY" for r in unguarded_routes(site.app.router.routes)]
    for route in declared_routes(site.app.router.routes):
        for method in route.methods:
            rule = POLICY.get((method, route.path))
            if rule is None:
                continue
            for path in concrete(route.path, site):
                for who in principals:
                    status, _ = status_of(site, method, path, who)
                    admitted = admits(rule, path, who)
                    if admitted == refused(status, who) or status >= 500:
                        out.append(f"{method} {path} as {who or 'anonymous'}: {status} (admitted: {admitted})")
    return out


@pytest.mark.parametrize("who", [None, *PRINCIPALS])
def test_every_route_answers_each_caller_as_the_policy_says(site: Site, who: str | None) -> None:
    assert mismatches(site, (who,)) == []


def test_the_walk_covers_rest_live_downloads_console_and_gradio(site: Site) -> None:
    paths = {r.path for r in declared_routes(site.app.router.routes)}
    assert {"/api/items", "/live.mjpg", "/metrics", "/docs", "/openapi.json", "/api/console/export",
            "/api/console/quarantine.csv", "/login", "/ui", "/impact"} <= paths
    assert set(PRINCIPALS) == set(ROLES) | set(SCOPES)


def test_anonymous_callers_get_401_on_what_was_open(site: Site) -> None:
    item = site.seeded.ids["plastic"]
    for path in OPEN_BEFORE:
        status, _ = status_of(site, "GET", path.replace("{item}", item), None)
        assert status == 401, path
    assert status_of(site, "POST", "/api/alarms/x/ack", None)[0] == 401
    r = httpx.get(site.url + "/health", timeout=10)
    assert r.status_code == 200 and r.json() == {"ok": True}  # liveness only, no figures
    assert httpx.get(site.url + "/login", timeout=10).status_code == 200
    assert httpx.get(site.url + "/impact.json", timeout=10).status_code == 200


@pytest.mark.parametrize(("who", "path", "status"), [
    ("operator", "/metrics", 403),
    ("manager", "/api/console/export", 403),
    ("operator", "/api/console/export", 403),  # the engineer's dataset download
    ("token:metrics", "/api/items", 403),
    ("token:read", "/metrics", 403),
    ("token:read", "/ui/", 403),  # a token is not a console login
    ("token:metrics", "/metrics", 200),
    ("token:read", "/live.jpg", 200),
    ("engineer", "/api/console/export", 200),
])
def test_examples_of_the_access_table(site: Site, who: str, path: str, status: int) -> None:
    assert status_of(site, "GET", path, who)[0] == status


def test_a_revoked_or_unknown_token_is_refused(site: Site) -> None:
    access = AccessRepo(site.seeded.store)
    _, secret = access.create_token("scraper", "metrics")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(site.url + "/metrics", headers=bearer, timeout=10).status_code == 200
    assert next(t for t in access.tokens() if t.name == "scraper").last_used_at is not None
    access.revoke_token("scraper")
    r = httpx.get(site.url + "/metrics", headers=bearer, timeout=10)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    guess = {"Authorization": "Bearer slt_guess"}
    assert httpx.get(site.url + "/metrics", headers=guess, timeout=10).status_code == 401


def test_anonymous_api_clients_get_401_and_browsers_the_login_form(site: Site) -> None:
    for accept in ("*/*", "application/json", ""):  # scripts, fetch(), curl: the policy's 401, never a redirect
        assert status_of(site, "GET", "/ui/", None, accept=accept) == (401, ""), accept
    html_page = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what a browser sends
    assert status_of(site, "GET", "/ui/", None, accept=html_page) == (303, "/login?e=login&next=/ui/")
    stale = AccessRepo(site.seeded.store).open_session("operator", 60, now=1_000_000.0)
    expired = {"Cookie": f"{COOKIE}={stale}"}
    r = httpx.get(site.url + "/ui/", headers={**expired, "accept": html_page}, timeout=10, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login?e=expired&next=/ui/")
    r = httpx.get(site.url + "/ui/", headers=expired, timeout=10, follow_redirects=False)
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    bearer = {"accept": html_page, "Authorization": f"Bearer {site.tokens['token:read']}"}
    assert status_of(site, "GET", "/ui/", None, **bearer)[0] == 403  # a token is not a console login


def test_gradio_serves_a_one_time_download_to_its_owner_only_then_removes_it(site: Site) -> None:
    assert site.console is not None
    served = offered(site.console, "engineer", once=True, name="one-time-export.zip")
    source_dirs = set(Path(tempfile.gettempdir()).glob("sortloop-export-*"))
    assert Path(served).is_file()
    for who, status in (("operator", 403), ("manager", 403), ("admin", 403), ("token:read", 403), (None, 401)):
        assert status_of(site, "GET", FILE_ROUTE + served, who)[0] == status, who
    assert Path(served).is_file()  # a refusal removes nothing
    r = httpx.get(site.url + FILE_ROUTE + served, headers=headers_for("engineer", site), timeout=30)
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert not Path(served).exists()  # sent once, then gone: Gradio's copy and the export folder
    assert len(set(Path(tempfile.gettempdir()).glob("sortloop-export-*"))) < len(source_dirs)
    assert status_of(site, "GET", FILE_ROUTE + served, "engineer")[0] == 403


def test_gradio_serves_no_file_that_was_not_offered(site: Site, tmp_path: Path) -> None:
    stray = tmp_path / "someone-elses.csv"
    stray.write_text("secret,figures\n")
    served = gradio_copy(stray)  # in Gradio's cache (as an upload would be), but no handler offered it
    r = httpx.get(site.url + FILE_ROUTE + served, headers=headers_for("admin", site), timeout=10)
    assert r.status_code == 403 and "not a download of this console" in r.json()["detail"]
    r = httpx.get(site.url + "/ui/gradio_api/file/" + served.lstrip("/"), headers=headers_for("admin", site),
                  timeout=10)
    assert r.status_code == 403  # the route's older form too


def test_every_response_carries_the_security_headers(site: Site) -> None:
    for path in ("/health", "/login", "/api/items"):
        r = httpx.get(site.url + path, timeout=10)
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


def test_docs_load_their_assets_from_the_station(site: Site) -> None:
    page = httpx.get(site.url + "/docs", headers=headers_for("engineer", site), timeout=10).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))""", page)
    assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
    assert all(httpx.get(site.url + a, timeout=10).status_code == 200 for a in assets)
    redoc = httpx.get(site.url + "/redoc", headers=headers_for("engineer", site), timeout=10).text
    assert "/docs/assets/redoc.standalone.js" in redoc and "cdn" not in redoc.lower()


def test_the_documented_access_table_is_the_policy() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    assert access_table() in doc


def test_the_impact_page_needs_a_login_when_config_says_it_is_not_public(tmp_path: Path) -> None:
    seeded = seed(tmp_path)
    try:
        for public, status in ((True, 200), (False, 401)):
            cfg = seeded.cfg.model_copy(update={"security": seeded.cfg.security.model_copy(
                update={"public_impact": public})})
            app = create_app(seeded.store, Running(), seeded.live, StationMetrics(), cfg)
            add_console_routes(app, make_console(app, None, cfg, ConsoleSettings()))
            assert TestClient(app).get("/impact.json").status_code == status
    finally:
        seeded.store.close()


def test_a_route_added_without_a_policy_fails_the_walk_and_is_refused(tmp_path: Path) -> None:
    seeded = seed(tmp_path)
    try:
        app = create_app(seeded.store, Running(), seeded.live, StationMetrics(), seeded.cfg)

        @app.get("/api/new-thing")
        def new_thing() -> dict[str, str]:
            return {"secret": "yes"}

        assert unguarded_routes(app.router.routes) == ["GET /api/new-thing"]
        with serve(app, seeded.live) as url:
            site = Site(url, app, seeded, {})
            found = mismatches(site, (None,))
            assert found == ["GET /api/new-thing: no rule in station.access.POLICY"]
            with pytest.raises(AssertionError, match="GET /api/new-thing"):
                assert found == []  # what the walk over the real app does: it fails on such a route
            r = httpx.get(url + "/api/new-thing", headers=headers_for("admin", site), timeout=10)
            assert r.status_code == 403 and "no access policy" in r.json()["detail"]  # refused even to an admin
    finally:
        seeded.store.close()
