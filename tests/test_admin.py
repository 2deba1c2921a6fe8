"""User management in the console and the forced password change: the Admin tab's handlers through Gradio's
own API (as the browser calls them), the change-password step after an admin's reset (console and API), the
audit log's CSV through Gradio's file route, and the rules ``ui.users`` keeps for the CLI and the console."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from browser_kit import http_session
from ui_seed import PASSWORD, Seeded, console_app, seed, serve

from station.access import COOKIE
from ui.repo import ConsoleRepo
from ui.settings import Console
from ui.users import UserAdmin, UserChangeError

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"
NEW = "a brand new passphrase"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded, Console]]:
    seeded = seed(tmp_path_factory.mktemp("admin"))
    app, console = console_app(seeded)
    with serve(app, seeded.live) as url:
        yield url, seeded, console
    seeded.store.close()


def call(client: httpx.Client, api: str, **inputs: object) -> tuple[str, object]:
    """A Gradio event through its API: (``complete`` or ``error``, the outputs or the message)."""
    r = client.post(f"/ui/gradio_api/call/v2/{api}", json=inputs)
    assert r.status_code == 200, (r.status_code, r.text)
    stream = client.get(f"/ui/gradio_api/call/{api}/{r.json()['event_id']}").text
    event = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, re.M)[-1]
    return event[0], json.loads(event[1])


def login(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/login", data={"username": username, "password": password}, follow_redirects=False)


def cookie(r: httpx.Response) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={r.cookies[COOKIE]}"}


# -- the forced change after an admin's reset ---------------------------------------------------------


def test_after_a_reset_the_next_login_must_change_the_password_first(site: tuple[str, Seeded, Console]) -> None:
    url, _, console = site
    admin = UserAdmin(console.repo, "admin")
    admin.add("frank", "operator", PASSWORD)
    temporary = admin.reset_password("frank")
    r = login(url, "frank", temporary)
    assert r.status_code == 303 and r.headers["location"] == "/password?next=%2Fui%2F"
    held = cookie(r)
    for path in ("/api/items", "/api/console/review", "/ui/gradio_api/info", "/auth/session", "/live.jpg"):
        refused = httpx.get(url + path, headers=held)
        assert refused.status_code == 403 and "password change required" in refused.json()["detail"], path
    console_page = httpx.get(f"{url}/ui/", headers={**held, "accept": HTML}, follow_redirects=False)
    assert (console_page.status_code, console_page.headers["location"]) == (303, "/password?next=/ui/")
    form = httpx.get(f"{url}/password", headers=held)
    assert form.status_code == 200 and "An admin reset your password" in form.text

    def change(current: str, new: str, confirm: str | None = None) -> httpx.Response:
        data = {"current": current, "new": new, "confirm": new if confirm is None else confirm, "next": "/ui/"}
        return httpx.post(f"{url}/password", data=data, headers=held, follow_redirects=False)

    assert change("not the password", NEW).status_code == 401
    assert change(temporary, NEW, "another passphrase").status_code == 400
    assert change(temporary, "short").status_code == 400
    assert change(temporary, temporary).status_code == 400
    done = change(temporary, NEW)
    assert done.status_code == 303 and done.headers["location"] == "/ui/"
    assert httpx.get(f"{url}/api/items", headers=held).status_code == 401  # the old session ended with it
    assert httpx.get(f"{url}/api/items", headers=cookie(done)).status_code == 200
    record = console.repo.get_user("frank")
    assert record is not None and not record.must_change
    again = login(url, "frank", NEW)
    assert again.status_code == 303 and again.headers["location"] == "/ui/"
    actions = [(a.action, a.actor, a.detail) for a in console.repo.access.audit_log(50) if a.target == "frank"]
    assert ("user.password", "frank", "changed by the user") in actions
    assert ("user.password", "admin", "reset; must change at next login") in actions


def test_the_cli_reset_also_forces_the_change(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from station.cli import app
    from ui.cli import register_console

    register_console()
    seeded = seed(tmp_path)
    config = tmp_path / "station.yaml"
    config.write_text(f"store: {{url: '{seeded.cfg.store.url}', evidence_dir: '{tmp_path / 'evidence'}'}}\n")
    try:
        run = CliRunner().invoke(app, ["users", "reset-password", "operator", "--password-stdin", "--config",
                                       str(config)], input="a temporary password\n")
        assert run.exit_code == 0, run.output
        listed = CliRunner().invoke(app, ["users", "list", "--config", str(config)]).output
        assert "operator\toperator  (must change password)" in listed
    finally:
        seeded.store.close()


# -- the Admin tab -------------------------------------------------------------------------------------


def test_admins_manage_users_and_sessions_in_the_console(site: tuple[str, Seeded, Console]) -> None:
    url, _, console = site
    with http_session(url, "admin") as admin:
        event, out = call(admin, "admin_add", username="gina", role="operator", audit_filter="")
        assert event == "complete" and isinstance(out, list)
        found = re.search(r"shown once: `([^`]+)`", str(out[0]))
        assert found, out[0]
        users = out[1]["data"]
        assert users[[u[0] for u in users].index("gina")][:5] == ["gina", "operator", "enabled", "yes", 0]
        gina = login(url, "gina", found.group(1))
        assert gina.headers["location"].startswith("/password")  # a password the admin saw: changed first
        event, out = call(admin, "admin_change", action="set role", username="gina", role="engineer",
                          audit_filter="")
        assert "now engineer" in str(out[0])
        assert httpx.get(f"{url}/password", headers=cookie(gina)).status_code == 401  # a role change ends it
        record = console.repo.get_user("gina")
        assert record is not None and record.role == "engineer"
        session = console.repo.access.open_session("gina", 600, address="10.9.8.7")
        event, out = call(admin, "admin_refresh", audit_filter="")
        sessions = out[2]["data"]
        (row,) = [s for s in sessions if s[1] == "gina"]
        assert row[5] == "10.9.8.7"
        event, out = call(admin, "admin_end_session", session_id=row[0], audit_filter="")
        assert "ended" in str(out[0]) and console.repo.access.check_session(session, 600).session is None
        event, out = call(admin, "admin_change", action="disable", username="gina", role="operator",
                          audit_filter="user.")
        record = console.repo.get_user("gina")
        assert record is not None and record.disabled
        event, out = call(admin, "admin_change", action="disable", username="admin", role="operator", audit_filter="")
        assert "Not done:** 'admin' is the last enabled admin" in str(out[0])
        event, out = call(admin, "admin_refresh", audit_filter="user.disable")
        audit = out[3]["data"]
        assert audit and audit[0][1:4] == ["user.disable", "admin", "gina"]


@pytest.mark.parametrize("who", ["operator", "engineer", "manager"])
def test_the_admin_tab_refuses_other_roles_on_the_server(site: tuple[str, Seeded, Console], who: str) -> None:
    url, _, console = site
    with http_session(url, who) as client:
        event, message = call(client, "admin_add", username=f"sneaky-{who}", role="admin", audit_filter="")
    assert event == "error" and "may not manage users" in str(message)
    assert console.repo.get_user(f"sneaky-{who}") is None


def test_the_audit_csv_goes_through_gradio_to_its_admin_only_and_once(site: tuple[str, Seeded, Console]) -> None:
    url, _, console = site
    UserAdmin(console.repo, "admin").add("admin2", "admin", PASSWORD)
    with http_session(url, "admin") as admin:
        event, out = call(admin, "admin_audit_csv")
        assert event == "complete"
        link = urlsplit(out[0]["url"]).path
        assert link.startswith("/ui/gradio_api/file=")
        with http_session(url, "operator") as operator, http_session(url, "admin2") as other:
            assert operator.get(link).status_code == 403
            assert other.get(link).status_code == 403  # another admin did not ask for this one
        assert httpx.get(url + link).status_code == 401
        r = admin.get(link)
        assert r.status_code == 200 and r.text.startswith("time_utc,at,actor,action")
        assert admin.get(link).status_code == 403  # removed once downloaded
    assert not Path(link.removeprefix("/ui/gradio_api/file=")).exists()


# -- the rules (the same for the CLI and the console) ---------------------------------------------------


@pytest.mark.parametrize(("change", "error"), [
    (lambda a: a.add("bad name!", "operator"), "not allowed"),
    (lambda a: a.add("ok", "superuser"), "role 'superuser' is unknown"),
    (lambda a: a.add("ok", "operator", "short"), "too short"),
    (lambda a: a.add("operator", "operator", PASSWORD), "exists already"),
    (lambda a: a.disable("admin"), "last enabled admin"),
    (lambda a: a.set_role("admin", "operator"), "last enabled admin"),
    (lambda a: a.reset_password("nobody"), "does not exist"),
    (lambda a: a.end_session("zz"), "is not one"),
    (lambda a: a.add("hank", "operator"), None),
])
def test_user_changes_are_checked(tmp_path: Path, change: object, error: str | None) -> None:
    seeded = seed(tmp_path)
    try:
        admin = UserAdmin(ConsoleRepo(seeded.store), "cli:test")
        if error is None:
            password = change(admin)
            record = admin.repo.get_user("hank")
            assert record is not None and record.must_change and len(password) >= 10
            assert admin.access.audit_log(1)[0].action == "user.add"
            return
        with pytest.raises(UserChangeError, match=error):
            change(admin)
    finally:
        seeded.store.close()
