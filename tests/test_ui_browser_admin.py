"""The Admin tab and the forced password change in a real headless Chromium: an admin adds a user and hands
over the temporary password; that user's first login leads to the change-password step, then the console; the
engineer's dataset download (through Gradio's file route) goes to the engineer only, once; the admin downloads
the audit log as CSV."""

from __future__ import annotations

import re
from pathlib import Path

import browser_kit
import httpx
import pytest
from browser_kit import WAIT_MS, close, expect_tabs, http_session, login, open_tab, shot
from playwright.sync_api import Browser, expect
from ui_seed import Seeded

from ui.settings import Console

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
site, browser = browser_kit.site, browser_kit.browser
NEW = "my own long passphrase"


def test_admin_adds_a_user_who_must_choose_a_password_first(site: tuple[str, Seeded, Console],
                                                              browser: Browser) -> None:
    url, _, console = site
    page = login(browser, url, "admin")
    open_tab(page, "Admin")
    tab = page.locator("#tab-admin")
    tab.locator("#admin-name textarea, #admin-name input").first.fill("ivy")
    page.locator("#admin-add").click()
    result = page.locator("#admin-result")
    expect(result).to_contain_text("Temporary password, shown once", timeout=WAIT_MS)
    temporary = re.search(r"shown once: (\S+?)\.? They choose", result.inner_text())
    assert temporary, result.inner_text()
    expect(page.locator("#admin-users")).to_contain_text("ivy", timeout=WAIT_MS)
    expect(page.locator("#admin-audit")).to_contain_text("user.add")
    assert page.get_by_text("has no attribute").count() == 0  # no handler failed on an empty field
    with page.expect_download() as info:
        page.locator("#admin-audit-csv").click()
        page.locator("#admin-audit-file a[download]").first.click(timeout=WAIT_MS)
    assert "user.add" in Path(info.value.path()).read_text()
    shot(page, "admin", full_page=True)
    close(page)

    ivy = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    ivy.goto(f"{url}/ui/", wait_until="domcontentloaded")
    ivy.fill("#username", "ivy")
    ivy.fill("#password", temporary.group(1))
    ivy.click("#login-submit")
    expect(ivy.locator("#password-message")).to_contain_text("An admin reset your password", timeout=WAIT_MS)
    ivy.goto(f"{url}/ui/", wait_until="domcontentloaded")  # the console is not reachable yet
    expect(ivy.locator("#password-form")).to_be_visible()
    ivy.fill("#current", temporary.group(1))
    ivy.fill("#new", NEW)
    ivy.fill("#confirm", NEW)
    ivy.click("#password-submit")
    expect(ivy.locator("#whoami")).to_have_text("ivy", timeout=WAIT_MS)
    expect_tabs(ivy, ["Operator", "Hazards", "Review"])
    record = console.repo.get_user("ivy")
    assert record is not None and not record.must_change
    close(ivy)


def test_the_engineers_dataset_download_is_theirs_alone_and_once(site: tuple[str, Seeded, Console],
                                                                 browser: Browser) -> None:
    url, _, _ = site
    page = login(browser, url, "engineer")
    open_tab(page, "Engineer")
    page.get_by_role("button", name="Download dataset (YOLO zip)").click()
    link = page.locator("#tab-engineer a[download]").first
    expect(link).to_be_visible(timeout=WAIT_MS)
    href = link.get_attribute("href") or ""
    path = "/" + href.split("://", 1)[-1].split("/", 1)[-1] if "://" in href else href
    assert "/gradio_api/file=" in path
    with http_session(url, "operator") as operator:
        r = operator.get(path)
        assert r.status_code == 403 and "not a download made for you" in r.json()["detail"]
    assert httpx.get(url + path).status_code == 401
    with page.expect_download() as info:
        link.click()
    assert Path(info.value.path()).read_bytes()[:2] == b"PK"
    with http_session(url, "engineer") as engineer:
        assert engineer.get(path).status_code == 403  # sent once, then removed
    close(page)
