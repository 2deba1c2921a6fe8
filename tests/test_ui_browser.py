"""The console in a real headless Chromium against the real app (uvicorn on 127.0.0.1, a seeded SQLite store):
login and roles, one-key corrections that land in the database and the exported dataset, a missed item boxed
on a grabbed frame, a hazard acknowledged through its checklist, the review queue, refusals. Screenshots of
each view go to docs/screenshots/."""

from __future__ import annotations

import io
import re
import time
import zipfile

import browser_kit
import httpx
import pytest
from browser_kit import WAIT_MS, close, expect_tabs, http_session, login, shot
from playwright.sync_api import Browser, expect
from ui_seed import Seeded

from ui.auth import COOKIE
from ui.corrections import resolve
from ui.settings import Console

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
site, browser = browser_kit.site, browser_kit.browser  # the shared fixtures, one site per module


# -- login and roles -------------------------------------------------------------------------------------


def test_login_form_and_wrong_password(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, _, _ = site
    page = login(browser, url, "operator", "not the password")
    expect(page.locator("#login-message")).to_contain_text("wrong user name or password")
    assert "/login" in page.url and page.locator("#whoami").count() == 0
    assert page.input_value("#username") == "operator"
    shot(page, "login")
    close(page)


@pytest.mark.parametrize(("role", "tabs"), [
    ("operator", ["Operator", "Hazards", "Review"]),
    ("engineer", ["Operator", "Hazards", "Review", "Reports", "Engineer"]),
    ("manager", ["Hazards", "Reports"]),
    ("admin", ["Operator", "Hazards", "Review", "Reports", "Engineer", "Admin"]),
])
def test_each_role_sees_only_its_views(site: tuple[str, Seeded, Console], browser: Browser, role: str,
                                       tabs: list[str]) -> None:
    url, _, _ = site
    page = login(browser, url, role)
    expect_tabs(page, tabs)
    if role == "manager":  # the quarantine log, but no acknowledging
        expect(page.locator("#quarantine-log")).to_be_visible()
        assert not page.locator("#hazard-ack").is_visible()
    close(page)


def test_an_expired_session_goes_back_to_login(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, _, console = site
    context = browser.new_context()
    stale = console.repo.access.open_session("operator", console.auth.ttl_s, now=time.time() - console.auth.ttl_s - 5)
    context.add_cookies([{"name": COOKIE, "value": stale, "url": url}])
    page = context.new_page()
    page.goto(f"{url}/ui/", wait_until="domcontentloaded")
    expect(page.locator("#login-message")).to_contain_text("Your session expired")
    assert "e=expired" in page.url
    context.close()


def test_an_open_console_notices_its_session_expired(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, _, console = site
    page = login(browser, url, "operator")
    stale = console.repo.access.open_session("operator", console.auth.ttl_s, now=time.time() - console.auth.ttl_s - 5)
    page.context.add_cookies([{"name": COOKIE, "value": stale, "url": url}])
    page.wait_for_function("typeof window.sortloopCheckSession === 'function'")
    page.evaluate("window.sortloopCheckSession()")  # what the page does every 30 s
    expect(page.locator("#login-message")).to_contain_text("Your session expired", timeout=WAIT_MS)
    close(page)


# -- operator --------------------------------------------------------------------------------------------


def test_operator_corrects_with_one_click_or_key(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, seeded, console = site
    ids = seeded.ids
    page = login(browser, url, "operator")
    status = page.locator("#op-status")
    cards = page.locator(".sl-card")
    expect(cards).to_have_count(len(ids), timeout=WAIT_MS)
    cards.nth(0).click()
    page.keyboard.press("j")
    expect(cards.nth(1)).to_have_class(re.compile("sl-selected"))
    expect(cards.nth(0)).not_to_have_class(re.compile("sl-selected"))
    page.keyboard.press("k")
    expect(cards.nth(0)).to_have_class(re.compile("sl-selected"))
    page.locator(f".sl-card[data-id='{ids['can']}']").click()
    page.locator(".sl-palette button[data-class='metal']").click()
    expect(status).to_contain_text("can → metal (stream metal)", timeout=WAIT_MS)
    page.locator(f".sl-card[data-id='{ids['paper']}']").click()
    page.keyboard.press("n")
    expect(status).to_contain_text("paper is not an item", timeout=WAIT_MS)
    page.keyboard.press("u")
    expect(status).to_contain_text("Undone", timeout=WAIT_MS)
    page.locator(f".sl-card[data-id='{ids['plastic']}']").click()
    page.keyboard.press("Enter")
    expect(status).to_contain_text("plastic confirmed", timeout=WAIT_MS)
    expect(page.locator(f".sl-card[data-id='{ids['can']}'] .sl-badge")).to_contain_text("metal")
    expect(page.locator(".sl-banner")).to_be_visible(timeout=WAIT_MS)
    # the live view is the station's MJPEG stream in a plain <img>
    assert page.locator("#live-view").get_attribute("src") == "/live.mjpg"
    page.wait_for_function("document.querySelector('#live-view').naturalWidth === 640", timeout=WAIT_MS)
    shot(page, "operator")
    close(page)

    [can] = console.repo.corrections([ids["can"]])
    assert (can.username, can.role, can.kind, can.before_class, can.after_class) == \
        ("operator", "operator", "reclass", "can", "metal")
    [paper] = console.repo.corrections([ids["paper"]], include_undone=True)
    assert paper.kind == "not_item" and paper.undone
    with http_session(url, "engineer") as engineer:
        r = engineer.get("/api/console/export", params={"format": "yolo"})
    assert r.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    label = archive.read(f"corrections-yolo/labels/train/console__{ids['can']}.txt").decode()
    assert label.split()[0] == str(console.ctx.taxonomy.index("metal"))
    assert f"corrections-yolo/labels/train/console__{ids['paper']}.txt" not in archive.namelist()


def test_operator_reports_a_missed_item_with_a_box(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, _, console = site
    page = login(browser, url, "operator")
    page.locator("#missed").get_by_text("Report a missed item").click()
    page.locator("#grab-frame").click()
    image = page.locator(".sl-draw-stage img")
    expect(image).to_be_visible(timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('.sl-draw-stage img').naturalWidth > 0")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    assert box is not None
    s = 640 / box["width"]
    page.mouse.move(box["x"] + 40, box["y"] + 30)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 110, steps=6)
    page.mouse.up()
    page.select_option(".sl-draw-class", "battery")
    page.locator(".sl-report").click()
    expect(page.locator("#op-status")).to_contain_text("Missed item reported: battery", timeout=WAIT_MS)
    expect(page.locator(".sl-saved")).to_have_count(1)
    close(page)
    [missed] = console.repo.corrections(kinds=["missed_item"])
    assert missed.item_id is None and missed.after_class == "battery" and missed.username == "operator"
    assert missed.box == pytest.approx((40 * s, 30 * s, 140 * s, 110 * s), abs=2 * s)
    assert (console.ctx.store.evidence_dir / str(missed.frame_path)).is_file()


# -- hazards ---------------------------------------------------------------------------------------------


def test_hazard_is_acknowledged_through_the_checklist(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, seeded, console = site
    requests: list[str] = []
    page = login(browser, url, "operator", requests=requests)
    banner = page.locator(".sl-banner")
    expect(banner).to_contain_text("Battery hazard", timeout=WAIT_MS)
    for _ in range(100):  # the banner's script asks for the beep as soon as the banner shows
        if any(u.endswith("/console/beep.wav") for u in requests):
            break
        page.wait_for_timeout(100)
    assert any(u.endswith("/console/beep.wav") for u in requests), "the banner plays the alarm beep"
    banner.locator(".sl-goto-hazards").click()
    ack = page.locator("#hazard-ack")
    expect(ack).to_be_disabled()
    steps = page.locator("#hazard-checklist label")
    expect(steps).to_have_count(5)
    for i in range(4):
        steps.nth(i).click()
    page.wait_for_timeout(500)
    expect(ack).to_be_disabled()
    shot(page, "hazard")
    steps.nth(4).click()
    expect(ack).to_be_enabled(timeout=WAIT_MS)
    page.locator("#hazard-container textarea, #hazard-container input").first.fill("Q2")
    ack.click()
    expect(page.locator("#hazard-status")).to_contain_text("into container Q2 by operator", timeout=WAIT_MS)
    expect(page.locator(".sl-banner")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#quarantine-log")).to_contain_text("Q2")
    close(page)
    [entry] = console.repo.quarantine_log()
    assert (entry.item_id, entry.hazard_type, entry.handled_by, entry.container) == \
        (seeded.ids["battery"], "battery", "operator", "Q2")
    assert all(entry.checklist.values()) and len(entry.checklist) == 5
    with http_session(url, "manager") as manager:
        assert seeded.ids["battery"] in manager.get("/api/console/quarantine.csv").text


# -- review ----------------------------------------------------------------------------------------------


def test_review_queue_explains_and_shows_conflicts(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, seeded, console = site
    unsure = seeded.ids["unsure"]
    for user, cls in (("operator", "mouse"), ("operator2", "pcb")):
        with http_session(url, user) as client:
            r = client.post("/api/console/corrections", json={"kind": "reclass", "item_id": unsure, "class_name": cls})
            assert r.status_code == 201
    page = login(browser, url, "engineer")
    page.locator("button[role=tab]").filter(has_text="Review").click()
    table = page.locator("#review-table")
    expect(table).to_contain_text("CONFLICT", timeout=WAIT_MS)
    expect(table).to_contain_text("near the hazard threshold")
    table.get_by_text(unsure[:8]).last.click()
    detail = page.locator("#review-detail")
    expect(detail).to_contain_text("operator2", timeout=WAIT_MS)
    expect(detail).to_contain_text("pcb")
    shot(page, "review")
    page.locator("#review-not-item").click()
    # the outcome, not the status line (the queue's 1.5 s refresh may replace the action's message)
    expect(table).not_to_contain_text("CONFLICT", timeout=WAIT_MS)
    close(page)
    res = resolve(console.repo.corrections([unsure]))
    assert res.winner is not None and res.winner.correction.username == "engineer" and not res.conflict


# -- refusals --------------------------------------------------------------------------------------------


def test_role_overstep_is_refused_by_the_server(site: tuple[str, Seeded, Console], browser: Browser) -> None:
    url, _, console = site
    page = login(browser, url, "operator")
    answer = page.evaluate(
        "fetch('/api/console/export?format=coco').then(async r => [r.status, (await r.json()).detail])")
    assert answer[0] == 403 and "role operator may not export corrections" in answer[1]
    close(page)
    before = console.repo.count_corrections()
    with http_session(url, "manager") as manager:  # a manager calls the review queue's answer through Gradio
        event = manager.post("/ui/gradio_api/call/v2/answer", json={"class_name": "metal"}).json()["event_id"]
        stream = manager.get(f"/ui/gradio_api/call/answer/{event}").text
    assert "Refused:** forbidden (403): role manager may not correct items" in stream
    assert console.repo.count_corrections() == before
    with httpx.Client(base_url=url) as anonymous:
        assert anonymous.post("/ui/gradio_api/call/v2/answer", json={"class_name": "metal"}).status_code == 401
