"""Sessions, logins and secrets: server-side sessions that logout, a password or role change, disabling and a
revoke end at once; idle and absolute timeouts; back-off and locks after failed logins; the bounded hash pool;
private database and evidence files; the ``users``, ``tokens`` and ``audit`` commands."""

from __future__ import annotations

import itertools
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from access_kit import nap
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from ui_seed import PASSWORD, Running, Seeded, seed

from station.access import COOKIE
from station.api import create_app
from station.cli import app
from station.config import SecurityConfig
from station.metrics import StationMetrics
from station.store import Store
from station.store.access import AccessRepo
from ui.app import add_console_routes, make_console
from ui.auth import hash_password
from ui.cli import register_console
from ui.login import BusyError, HashPool, LoginGuard, ThrottledError
from ui.settings import Console, ConsoleSettings


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    s = seed(tmp_path / "site")
    yield s
    s.store.close()


def api_app(seeded: Seeded, **security: object) -> tuple[FastAPI, Console]:
    sec = seeded.cfg.security.model_copy(update=security)
    cfg = seeded.cfg.model_copy(update={"security": sec})
    web = create_app(seeded.store, Running(), seeded.live, StationMetrics(), cfg)
    console = make_console(web, None, cfg, ConsoleSettings(session_ttl_s=600))
    add_console_routes(web, console)
    return web, console


def login(client: TestClient, username: str, password: str = PASSWORD) -> int:
    r = client.post("/login", data={"username": username, "password": password}, follow_redirects=False)
    return r.status_code


# -- sessions end at once --------------------------------------------------------------------------------


def _logout(client: TestClient, access: AccessRepo, name: str) -> None:
    client.get("/logout")


def _password(client: TestClient, access: AccessRepo, name: str) -> None:
    access.set_password(name, hash_password("another long password"))


def _role(client: TestClient, access: AccessRepo, name: str) -> None:
    access.set_role(name, "operator")


def _revoke(client: TestClient, access: AccessRepo, name: str) -> None:
    (session,) = access.sessions(name)
    access.end_session_id(session.id)


def _disable(client: TestClient, access: AccessRepo, name: str) -> None:
    access.set_disabled(name, True)


@pytest.mark.parametrize("end", [_logout, _password, _role, _revoke, _disable])
def test_a_cookie_from_before_the_change_is_refused(seeded: Seeded,
                                                    end: Callable[[TestClient, AccessRepo, str], None]) -> None:
    web, console = api_app(seeded)
    with TestClient(web) as client:
        assert login(client, "engineer") == 303
        old = client.cookies[COOKIE]
        assert client.get("/api/console/export").status_code == 200  # the engineer's dataset download
        end(client, console.repo.access, "engineer")
        client.cookies.set(COOKIE, old)  # an attacker who kept the cookie
        for path in ("/api/console/export", "/api/items", "/auth/session"):
            assert client.get(path).status_code == 401, path


@pytest.mark.parametrize(("idle_s", "ttl_s", "age_s", "seen_s", "ok"), [
    (1800, 600, 0, 0, True),
    (1800, 600, 601, 0, False),     # past the absolute lifetime
    (60, 600, 100, 61, False),      # idle too long
    (60, 600, 100, 30, True),
])
def test_idle_and_absolute_timeouts(seeded: Seeded, idle_s: float, ttl_s: float, age_s: float, seen_s: float,
                                    ok: bool) -> None:
    access, now = AccessRepo(seeded.store), time.time()
    token = access.open_session("operator", ttl_s, now=now - age_s)
    access.check_session(token, idle_s=1e9, now=now - seen_s)  # last seen then
    check = access.check_session(token, idle_s=idle_s, now=now)
    assert (check.session is not None) == ok and check.reason == ("" if ok else "expired")


def test_the_database_keeps_no_usable_secret(seeded: Seeded) -> None:
    access = AccessRepo(seeded.store)
    cookie = access.open_session("admin", 600)
    _, token = access.create_token("scraper", "metrics")
    dump = b"".join(p.read_bytes() for p in Path(seeded.cfg.store.url.removeprefix("sqlite:///")).parent.glob("*.db*"))
    assert cookie.encode() not in dump and token.encode() not in dump
    assert b"session_key" not in dump  # the old signing key is gone


def test_database_and_evidence_are_private(seeded: Seeded) -> None:
    db = Path(seeded.cfg.store.url.removeprefix("sqlite:///"))
    evidence = seeded.store.evidence_dir
    for f in (db, *db.parent.glob(db.name + "-*"), *db.parent.glob(db.name + ".*")):
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    assert stat.S_IMODE(evidence.stat().st_mode) == 0o700
    os.chmod(db, 0o644)  # as the station left it before: reopening tightens it again
    Store.open(seeded.cfg.store.url, evidence).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


# -- failed logins ---------------------------------------------------------------------------------------


def test_twenty_wrong_passwords_meet_a_back_off_and_a_lock(seeded: Seeded) -> None:
    web, console = api_app(seeded, login_backoff_s=30, lock_after=20, login_tarpit_s=0.05)
    statuses = []
    with TestClient(web) as client:
        for _ in range(20):
            t0 = time.monotonic()
            r = client.post("/login", data={"username": "operator", "password": "wrong password!"})
            statuses.append(r.status_code)
            assert r.status_code != 429 or time.monotonic() - t0 >= 0.05  # the tarpit
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1 and "too many failed logins" in r.text
    assert statuses[:3] == [401] * 3 and set(statuses[3:]) == {429}  # back-off after 3, no hash computed
    failed = console.repo.access.audit_log(action="login.failed")
    assert len(failed) == 3 and {a.actor for a in failed} == {"operator"}


def test_a_lock_holds_until_an_admin_lifts_it(seeded: Seeded, tmp_path: Path) -> None:
    web, console = api_app(seeded, lock_after=3, login_backoff_after=100)
    with TestClient(web) as client:
        assert [login(client, "operator", "wrong password!") for _ in range(3)] == [401] * 3
        r = client.post("/login", data={"username": "operator", "password": PASSWORD})
        assert r.status_code == 401 and "locked" in r.text and "sortloop users unlock operator" in r.text
        console.repo.access.unlock("operator")
        assert login(client, "operator") == 303


def test_back_off_counts_per_user_and_per_address() -> None:
    now = [0.0]
    guard = LoginGuard(SecurityConfig(login_backoff_after=2, login_backoff_s=10), clock=lambda: now[0])
    for _ in range(2):
        guard.check("ann", "10.0.0.1")
        guard.failed("ann", "10.0.0.1")
    with pytest.raises(ThrottledError):
        guard.check("ann", "10.0.0.9")  # the user, from another address
    with pytest.raises(ThrottledError):
        guard.check("bob", "10.0.0.1")  # the address, for another user
    guard.check("bob", "10.0.0.9")
    now[0] = 10.5
    guard.check("ann", "10.0.0.1")  # the wait is over
    guard.failed("ann", "10.0.0.1")
    now[0] = 20.0
    with pytest.raises(ThrottledError):
        guard.check("ann", "10.0.0.1")  # the third failure doubles the wait to 20 s


def test_the_hash_pool_queues_a_flood_and_refuses_beyond_its_bound() -> None:
    pool = HashPool(workers=1, queue=2, nice=5)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(_try(pool, 0.4))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    naps = sorted(r for r in results if isinstance(r, tuple))
    assert sorted(map(str, results)).count("BusyError") == 3 and len(naps) == 3
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(naps))  # one at a time
    assert os.getpid() not in {pid for _, _, pid, _ in naps}  # in a worker process, not the station's
    assert all(nice >= os.nice(0) + 5 for *_, nice in naps)  # at a lower priority


def _try(pool: HashPool, seconds: float) -> object:
    try:
        return pool.run(nap, seconds)
    except BusyError:
        return "BusyError"


def test_logins_checked_at_once_from_one_address_count_before_their_answer() -> None:
    guard = LoginGuard(SecurityConfig(login_backoff_after=3, login_backoff_s=1))
    for i in range(3):
        guard.check(f"user{i}", "10.0.0.1")  # three in flight: none answered yet
    with pytest.raises(ThrottledError):
        guard.check("user9", "10.0.0.1")  # a fourth would pass the limit whatever their answers
    guard.succeeded("user0", "10.0.0.1")
    guard.check("user8", "10.0.0.1")


def test_an_old_hash_is_made_again_with_todays_parameters_at_login(seeded: Seeded) -> None:
    from argon2 import PasswordHasher

    from ui.passwords import HASHER

    old = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash(PASSWORD)  # the earlier default
    access = AccessRepo(seeded.store)
    access.add_user("old-timer", old, "operator")
    web, console = api_app(seeded)
    with TestClient(web) as client:
        assert login(client, "old-timer") == 303
    stored = console.repo.get_user("old-timer")
    assert stored is not None and stored.password_hash != old and not HASHER.check_needs_rehash(stored.password_hash)
    assert "m=19456,t=2,p=1" in stored.password_hash  # OWASP's argon2id minimum, not below


# -- the commands ----------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., tuple[int, str]]:
    register_console()
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}",
                                                "evidence_dir": str(tmp_path / "evidence")}}))
    runner = CliRunner()

    def run(*args: str, stdin: str = "") -> tuple[int, str]:
        result = runner.invoke(app, [*args, "--config", str(config)], input=stdin)
        return result.exit_code, result.output

    return run


def test_tokens_are_shown_once_listed_and_revoked(cli: Callable[..., tuple[int, str]]) -> None:
    code, out = cli("tokens", "create", "--name", "prometheus", "--scope", "metrics")
    secret = out.splitlines()[0]
    assert code == 0 and secret.startswith("slt_") and "shown only now" in out
    assert cli("tokens", "create", "--name", "prometheus", "--scope", "read")[0] == 2  # the name is taken
    assert cli("tokens", "create", "--name", "x", "--scope", "admin")[0] == 2
    code, out = cli("tokens", "list")
    assert code == 0 and "prometheus\tmetrics" in out and "active" in out and secret not in out
    assert cli("tokens", "revoke", "prometheus")[0] == 0
    assert "revoked" in cli("tokens", "list")[1]
    code, out = cli("audit")
    assert "token.create" in out and "token.revoke" in out


def test_users_commands_manage_accounts_and_sessions(cli: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    assert cli("users", "add", "ann", "--role", "operator", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "evidence")
    try:
        access = AccessRepo(store)
        access.open_session("ann", 600, address="10.1.2.3")
        code, out = cli("users", "sessions")
        assert code == 0 and "ann\toperator" in out and "10.1.2.3" in out
        assert cli("users", "set-role", "ann", "--role", "engineer")[0] == 0
        assert access.sessions("ann") == []  # a role change ends the sessions
        access.open_session("ann", 600)
        assert cli("users", "end-session", access.sessions("ann")[0].id)[0] == 0
        assert access.sessions("ann") == []
        assert cli("users", "disable", "ann")[0] == 0
        assert "ann\tengineer  (disabled)" in cli("users", "list")[1]
        assert cli("users", "enable", "ann")[0] == 0
        assert cli("users", "reset-password", "ann", "--password-stdin", stdin="a new long password\n")[0] == 0
        assert cli("users", "unlock", "nobody")[0] == 2
        assert cli("audit", "--csv", str(tmp_path / "audit.csv"))[0] == 0
        actions = [line.split(",")[3] for line in (tmp_path / "audit.csv").read_text().splitlines()[1:]]
        assert {"user.role", "session.revoke", "user.disable", "user.enable", "user.password"} <= set(actions)
    finally:
        store.close()


def test_admins_read_and_export_the_audit_log(seeded: Seeded) -> None:
    web, _ = api_app(seeded)
    with TestClient(web) as client:
        assert login(client, "operator", "wrong password!") == 401
        assert login(client, "operator") == 303
        assert client.get("/api/console/audit").status_code == 403
        client.cookies.clear()
        assert login(client, "admin") == 303
        actions = [a["action"] for a in client.get("/api/console/audit").json()]
        assert actions[:3] == ["login", "login", "login.failed"]
        r = client.get("/api/console/audit.csv")
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"] and "login.failed" in r.text


# -- cookies and downloads -------------------------------------------------------------------------------


@pytest.mark.parametrize(("base_url", "secure"), [
    ("http://testserver", False),
    ("https://testserver", True),  # TLS, or a proxy that uvicorn trusts said X-Forwarded-Proto: https
])
def test_the_session_cookie_is_secure_over_tls(seeded: Seeded, base_url: str, secure: bool) -> None:
    web, _ = api_app(seeded)
    with TestClient(web, base_url=base_url) as client:
        r = client.post("/login", data={"username": "operator", "password": PASSWORD}, follow_redirects=False)
        cookie = r.headers["set-cookie"].lower()
        assert r.status_code == 303 and "httponly" in cookie and ("; secure" in cookie) == secure


def test_exports_are_removed_after_download_or_after_a_while(seeded: Seeded, tmp_path: Path) -> None:
    from ui.downloads import download_dir, sweep

    before = set(Path(tempfile.gettempdir()).glob("sortloop-export-*"))
    web, _ = api_app(seeded)
    with TestClient(web) as client:
        assert login(client, "engineer") == 303
        r = client.get("/api/console/export")
        assert r.status_code == 200 and r.content[:2] == b"PK"
    assert set(Path(tempfile.gettempdir()).glob("sortloop-export-*")) <= before  # removed once sent
    old, fresh = download_dir("sortloop-report-"), download_dir("sortloop-report-")
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert sweep(max_age_s=3600) >= 1
    assert not old.exists() and fresh.exists()
    fresh.rmdir()


def test_a_right_password_for_a_locked_account_leaves_no_try_counted_in_advance(seeded: Seeded) -> None:
    web, console = api_app(seeded, login_backoff_after=2, lock_after=100)
    console.repo.access.set_disabled("operator", True)
    with TestClient(web) as client:
        for _ in range(3):  # refused as disabled, each time answered: none stays "being checked"
            r = client.post("/login", data={"username": "operator", "password": PASSWORD})
            assert r.status_code == 401 and "disabled" in r.text
    assert console.auth.guard.failures("operator") == 0
    console.repo.access.set_disabled("operator", False)
    with TestClient(web) as client:
        assert login(client, "operator") == 303  # not throttled by tries that were answered long ago
