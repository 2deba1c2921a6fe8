"""Console accounts and sessions: argon2 hashes, signed expiring cookies, roles refused on the server, the
login form's messages, the no-admin refusal on a network address, and the ``sortloop users`` commands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from ui_seed import PASSWORD, Running, Seeded, seed

from station.api import create_app
from station.cli import CONSOLE_HOOKS, app
from station.metrics import StationMetrics
from ui.app import add_console_routes, console_hook, make_console
from ui.auth import (
    COOKIE,
    GRANTS,
    ConsoleUser,
    Perm,
    WeakPasswordError,
    check_password,
    hash_password,
    verify_password,
)
from ui.cli import register_console
from ui.repo import ConsoleRepo
from ui.settings import Console, ConsoleSettings


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    s = seed(tmp_path_factory.mktemp("auth"))
    yield s
    s.store.close()


def api_app(seeded: Seeded, host: str = "127.0.0.1") -> tuple[FastAPI, Console]:
    """The station app with the console's login and API (not the Gradio UI: these tests need no browser)."""
    cfg = seeded.cfg.model_copy(update={"api": seeded.cfg.api.model_copy(update={"host": host})})
    web = create_app(seeded.store, Running(), seeded.live, StationMetrics(), cfg)
    console = make_console(web, None, cfg, ConsoleSettings(session_ttl_s=600))
    add_console_routes(web, console)
    return web, console


@pytest.fixture(scope="module")
def served(seeded: Seeded) -> tuple[FastAPI, Console]:
    return api_app(seeded)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    r = client.post("/login", data={"username": username, "password": password, "next": "/ui/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


# -- passwords and tokens --------------------------------------------------------------------------------


def test_passwords_are_hashed_with_argon2() -> None:
    h = hash_password(PASSWORD)
    assert h.startswith("$argon2id$") and PASSWORD not in h
    assert verify_password(h, PASSWORD)
    assert not verify_password(h, PASSWORD + "x")
    assert not verify_password("not a hash", PASSWORD)


@pytest.mark.parametrize(("username", "password", "error"), [
    ("alice", "short", "too short"),
    ("administrator", "AdminiStrator", "equals the user name"),
    ("alice", "a long enough secret", None),
])
def test_password_rules(username: str, password: str, error: str | None) -> None:
    if error is None:
        check_password(username, password)
        return
    with pytest.raises(WeakPasswordError, match=error):
        check_password(username, password)


@pytest.mark.parametrize(("role", "allowed", "refused"), [
    ("operator", {Perm.OPERATE, Perm.REVIEW}, {Perm.EXPORT, Perm.REPORTS, Perm.ENGINEER, Perm.USERS}),
    ("engineer", {Perm.OPERATE, Perm.EXPORT, Perm.RESOLVE, Perm.ENGINEER, Perm.REPORTS}, {Perm.USERS}),
    ("manager", {Perm.REPORTS, Perm.QUARANTINE_LOG}, {Perm.OPERATE, Perm.REVIEW, Perm.EXPORT, Perm.ENGINEER}),
    ("admin", set(Perm), set()),
])
def test_roles_grant_what_they_should(role: str, allowed: set[Perm], refused: set[Perm]) -> None:
    user = ConsoleUser("u", role)
    assert all(user.can(p) for p in allowed)
    assert not any(user.can(p) for p in refused)
    assert GRANTS[role] >= allowed


# -- the login form and the server's checks --------------------------------------------------------------


def test_console_without_a_session_goes_to_the_login_form(served: tuple[FastAPI, Console]) -> None:
    with TestClient(served[0]) as client:
        assert client.get("/ui/", follow_redirects=False).status_code == 401  # an API client: no redirect
        r = client.get("/ui/", headers={"accept": "text/html"}, follow_redirects=False)  # a browser
        assert r.status_code == 303 and r.headers["location"].startswith("/login?e=login")
        page = client.get(r.headers["location"])
        assert "Please log in" in page.text and 'name="password"' in page.text


@pytest.mark.parametrize("username", ["operator", "nobody"])
def test_wrong_password_is_refused_with_a_clear_message(served: tuple[FastAPI, Console], username: str) -> None:
    with TestClient(served[0]) as client:
        r = client.post("/login", data={"username": username, "password": "wrong password!"},
                        follow_redirects=False)
        assert r.status_code == 401
        assert "Login refused: wrong user name or password" in r.text
        assert COOKIE not in r.cookies
        assert client.get("/auth/session").status_code == 401


def test_login_sets_a_session_that_names_the_user(served: tuple[FastAPI, Console]) -> None:
    with TestClient(served[0]) as client:
        r = client.post("/login", data={"username": "engineer", "password": PASSWORD, "next": "//evil.example"},
                        follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/"  # no open redirect
        assert "httponly" in r.headers["set-cookie"].lower()
        me = client.get("/auth/session").json()
        assert me["username"] == "engineer" and me["role"] == "engineer" and "export" in me["permissions"]
        client.get("/logout")
        assert client.get("/auth/session").status_code == 401


def test_an_expired_session_says_so(served: tuple[FastAPI, Console]) -> None:
    web, console = served
    with TestClient(web) as client:
        client.cookies.set(COOKIE, console.repo.access.open_session("operator", 600, now=time.time() - 601))
        r = client.get("/ui/", headers={"accept": "text/html"}, follow_redirects=False)
        assert r.headers["location"].startswith("/login?e=expired")
        assert "Your session expired" in client.get(r.headers["location"]).text
        assert client.get("/auth/session").json()["reason"] == "expired"
        post = client.post("/api/console/corrections/undo")
        assert post.status_code == 401 and "expired" in post.json()["detail"]


@pytest.mark.parametrize(("role", "method", "path", "body", "status", "message"), [
    ("operator", "GET", "/api/console/export?format=yolo", None, 403, "role operator may not export"),
    ("manager", "POST", "/api/console/corrections", {"kind": "not_item", "item_id": "x"}, 403,
     "role manager may not correct items"),
    ("manager", "GET", "/api/console/review", None, 403, "role manager may not use the review queue"),
    ("manager", "POST", "/api/console/hazards/x/ack", {"container": "Q1", "steps": []}, 403,
     "role manager may not correct items or acknowledge hazards"),
    ("manager", "GET", "/api/console/quarantine.csv", None, 200, "entry_id,item_id"),
    (None, "POST", "/api/console/corrections", {"kind": "not_item", "item_id": "x"}, 401, "log in"),
])
def test_roles_are_checked_on_the_server(served: tuple[FastAPI, Console], role: str | None, method: str, path: str,
                                         body: dict[str, object] | None, status: int, message: str) -> None:
    web, console = served
    before = console.repo.count_corrections()
    with TestClient(web) as client:
        if role:
            login(client, role)
        r = client.request(method, path, json=body)
        assert r.status_code == status
        assert message in (r.text if status == 200 else r.json()["detail"])
    assert console.repo.count_corrections() == before


# -- no admin yet ----------------------------------------------------------------------------------------


def test_no_admin_refuses_the_console_on_a_network_address(tmp_path: Path) -> None:
    bare = seed(tmp_path, users=False)
    try:
        web, console = api_app(bare, host="0.0.0.0")
        with TestClient(web) as client:
            r = client.get("/login")
            assert r.status_code == 503 and "sortloop users create-admin" in r.text
            assert client.get("/ui/").status_code == 503
            assert client.get("/api/items").status_code == 401  # the station's API needs a login or token too
            console.repo.add_user("root", hash_password(PASSWORD), "admin")
            assert client.get("/login").status_code == 200  # served once an admin exists, no restart
    finally:
        bare.store.close()


def test_no_account_on_loopback_points_to_the_cli(tmp_path: Path) -> None:
    bare = seed(tmp_path, users=False)
    try:
        with TestClient(api_app(bare)[0]) as client:
            page = client.get("/login")
            assert page.status_code == 200 and "No account exists yet" in page.text
            assert client.post("/login", data={"username": "admin", "password": "admin"}).status_code == 401
    finally:
        bare.store.close()


# -- the CLI ---------------------------------------------------------------------------------------------


def test_users_commands_create_the_first_admin_and_more(tmp_path: Path) -> None:
    register_console()
    register_console()  # idempotent
    assert CONSOLE_HOOKS.count(console_hook) == 1
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}",
                                                "evidence_dir": str(tmp_path / "evidence")}}))
    runner = CliRunner()

    def run(*args: str, stdin: str = "") -> tuple[int, str]:
        result = runner.invoke(app, ["users", *args, "--config", str(config)], input=stdin)
        return result.exit_code, result.output

    assert run("create-admin", "--username", "root", "--password-stdin", stdin="short\n")[0] == 2
    code, out = run("create-admin", "--username", "root", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and "root (admin) created" in out
    code, out = run("create-admin", "--username", "second", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 2 and "an admin exists already" in out
    assert run("add", "ann", "--role", "wizard", "--password-stdin", stdin=PASSWORD + "\n")[0] == 2
    assert run("add", "ann", "--role", "engineer", stdin=f"{PASSWORD}\n{PASSWORD}\n")[0] == 0
    assert run("add", "ann", "--role", "operator", "--password-stdin", stdin=PASSWORD + "\n")[0] == 2
    code, out = run("list")
    assert code == 0 and "ann\tengineer" in out and "root\tadmin" in out
    from station.config import load_config
    from station.store import Store

    store = Store.from_config(load_config(config))
    try:
        users = {u.username: u for u in ConsoleRepo(store).users()}
        assert set(users) == {"root", "ann"}
        assert verify_password(users["root"].password_hash, PASSWORD)
    finally:
        store.close()
