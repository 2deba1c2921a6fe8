"""A shift at the belt (issue 23, point 1), in a real headless Chromium on a 1366 × 768 screen: Enter after a
mouse click confirms the next item instead of clicking the button again, the review queue has no default
class, a second answer is refused unless changed on purpose (and then shown as a change), undo reaches only
my own recent answers, feedback stays until the next action, and the operator view fits the screen."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import browser_kit
import pytest
from browser_kit import WAIT_MS, close, login, open_tab, shot
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update
from ui_seed import SPECS, Seeded, console_app, record, seed, serve

from station.store.models import Correction
from ui.auth import ConsoleUser
from ui.corrections import CorrectionIn, Kind, submit
from ui.settings import AnswerRules, Console, ConsoleSettings

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
browser = browser_kit.browser
SCREEN = (1366, 768)
TICKS_MS = 4_000  # more than two refreshes of the live parts (poll_s ≤ 2)
Site = tuple[str, Seeded, Console]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The seeded console with a full strip (twelve decisions: the six seeded ones and six older copies)."""
    seeded = seed(tmp_path_factory.mktemp("shift"))
    for n, spec in enumerate(SPECS, start=20):
        seeded.ids[f"old_{spec.key}"] = record(seeded, dataclasses.replace(spec, age_s=spec.age_s + 100), n)
    app, console = console_app(seeded)
    with serve(app, seeded.live) as url:
        yield url, seeded, console
    seeded.store.close()


def operator_page(browser: Browser, url: str, username: str) -> Page:
    page = login(browser, url, username, viewport=SCREEN)
    expect(page.locator(".sl-card")).to_have_count(12, timeout=WAIT_MS)
    return page


def selected(page: Page) -> str | None:
    return page.locator(".sl-card.sl-selected").get_attribute("data-id")


def answers(console: Console, item_id: str, username: str) -> list[tuple[str, str | None, bool]]:
    return [(c.kind, c.after_class, c.undone) for c in console.repo.corrections([item_id], include_undone=True)
            if c.username == username]


def test_enter_after_a_mouse_click_confirms_the_next_item(site: Site, browser: Browser) -> None:
    url, seeded, console = site
    ids = seeded.ids
    page = operator_page(browser, url, "operator")
    status = page.locator("#op-status")
    page.locator(f".sl-card[data-id='{ids['can']}']").click()
    page.locator(".sl-palette button[data-class='plastic']").click()
    expect(status).to_contain_text("can → plastic", timeout=WAIT_MS)
    # the selection moves on to the next item I have not answered; no button keeps the focus
    expect(page.locator(f".sl-card[data-id='{ids['plastic']}']")).to_have_class(re.compile("sl-selected"))
    assert page.evaluate("document.activeElement.tagName") != "BUTTON"
    page.keyboard.press("Enter")
    expect(status).to_contain_text("plastic confirmed", timeout=WAIT_MS)
    page.wait_for_timeout(TICKS_MS)
    expect(status).to_contain_text("plastic confirmed")  # the feedback stays until the next action
    nxt = selected(page)
    assert nxt == ids["old_battery"]
    page.locator("button[role=tab]").filter(has_text="Operator").click()
    page.keyboard.press("Enter")  # a tab the mouse left focused does not take Enter either
    expect(status).to_contain_text(f"item {nxt[:8]}: battery confirmed", timeout=WAIT_MS)
    close(page)
    assert answers(console, ids["can"], "operator") == [("reclass", "plastic", False)]
    assert answers(console, ids["plastic"], "operator") == [("confirm", "plastic", False)]


def test_a_second_answer_is_refused_then_changed_on_purpose(site: Site, browser: Browser) -> None:
    url, seeded, console = site
    paper = seeded.ids["paper"]
    page = operator_page(browser, url, "operator2")
    status = page.locator("#op-status")
    card = page.locator(f".sl-card[data-id='{paper}']")
    card.click()
    page.keyboard.press("n")
    expect(status).to_contain_text("paper is not an item", timeout=WAIT_MS)
    assert selected(page) != paper
    card.click()
    page.keyboard.press("1")  # battery, without C first
    expect(status).to_contain_text("Refused: you answered item", timeout=WAIT_MS)
    expect(status).to_contain_text("as (not an item)")
    page.wait_for_timeout(TICKS_MS)
    expect(status).to_contain_text("Refused: you answered item")
    assert answers(console, paper, "operator2") == [("not_item", None, False)]
    card.click()
    page.keyboard.press("c")
    expect(page.locator(".sl-mode")).to_contain_text("Changing your answer")
    page.keyboard.press("1")
    expect(status).to_contain_text("was (not an item), now battery", timeout=WAIT_MS)
    expect(card.locator(".sl-badge")).to_contain_text("was (not an item)")
    close(page)
    assert answers(console, paper, "operator2") == [("not_item", None, False), ("reclass", "battery", False)]
    [change] = console.repo.access.audit_log(action="correction.change")
    assert (change.actor, change.target, change.detail) == ("operator2", paper, "was (not an item), now battery")


def test_undo_reaches_only_my_recent_answers(site: Site, browser: Browser) -> None:
    url, seeded, console = site
    ids = seeded.ids
    standing_before = {c.id for c in console.repo.corrections() if c.username != "engineer"}
    aged = submit(console, ConsoleUser("engineer", "engineer"),
                  CorrectionIn(kind=Kind.NOT_ITEM, item_id=ids["old_unsure"]))
    with console.ctx.store.engine.begin() as conn:  # answered ten minutes ago: past the undo window
        conn.execute(update(Correction).where(Correction.id == aged.id).values(created_at=aged.created_at - 600))
    page = operator_page(browser, url, "engineer")
    status = page.locator("#op-status")
    for key in ("old_paper", "old_can", "old_plastic"):
        page.locator(f".sl-card[data-id='{ids[key]}']").click()
        page.keyboard.press("n")
        expect(status).to_contain_text(f"{key[4:]} is not an item", timeout=WAIT_MS)
    console.settings = ConsoleSettings(answers=AnswerRules(undo_depth=2))
    try:
        for key in ("old_plastic", "old_can"):
            page.keyboard.press("u")
            expect(status).to_contain_text(f"Undone: item {ids[key][:8]}", timeout=WAIT_MS)
        page.keyboard.press("u")
        expect(status).to_contain_text("your last 2 answers are undone already", timeout=WAIT_MS)
        console.settings = ConsoleSettings()
        page.keyboard.press("u")
        expect(status).to_contain_text(f"Undone: item {ids['old_paper'][:8]}", timeout=WAIT_MS)
        page.keyboard.press("u")
        expect(status).to_contain_text("past the 120 s undo window", timeout=WAIT_MS)
    finally:
        console.settings = ConsoleSettings()
    close(page)
    assert answers(console, ids["old_unsure"], "engineer") == [("not_item", None, False)]
    assert {c.id for c in console.repo.corrections() if c.username != "engineer"} == standing_before


def test_review_queue_has_no_default_class(site: Site, browser: Browser) -> None:
    url, seeded, console = site
    page = login(browser, url, "admin", viewport=SCREEN)
    open_tab(page, "Review")
    table, status = page.locator("#review-table"), page.locator("#review-status")
    first = seeded.ids["unsure"]
    table.get_by_text(first[:8]).last.click()
    expect(page.locator("#review-detail")).to_contain_text("keyboard", timeout=WAIT_MS)
    assert page.locator("#review-class input").input_value() == ""
    page.locator("#review-correct").click()
    expect(status).to_contain_text("Refused: choose a class", timeout=WAIT_MS)
    page.wait_for_timeout(TICKS_MS)
    expect(status).to_contain_text("Refused: choose a class")
    assert answers(console, first, "admin") == []
    page.locator("#review-class input").fill("mouse")
    page.keyboard.press("Enter")
    expect(page.locator("#review-class input")).to_have_value("mouse")
    page.locator("#review-correct").click()
    expect(status).to_contain_text(f"Saved: item {first[:8]} → mouse", timeout=WAIT_MS)
    expect(status).to_contain_text("Next: item")
    expect(page.locator("#review-class input")).to_have_value("")
    nxt = re.search(r"Next: item (\w{8})", status.inner_text())
    assert nxt is not None
    expect(page.locator(f"#review-detail [data-item^='{nxt.group(1)}']")).to_have_count(1)
    shot(page, "review-1366x768")
    page.locator("#review-confirm").click()  # answers the next item, never the one answered before
    expect(status).to_contain_text(f"Saved: item {nxt.group(1)}", timeout=WAIT_MS)
    close(page)
    assert answers(console, first, "admin") == [("reclass", "mouse", False)]


def test_the_operator_view_fits_a_1366_by_768_screen(site: Site, browser: Browser) -> None:
    url, _, _ = site
    page = operator_page(browser, url, "operator")
    page.wait_for_function("document.querySelector('#live-view').naturalWidth > 0", timeout=WAIT_MS)
    height = SCREEN[1]
    assert page.evaluate("document.documentElement.scrollHeight") <= height, "no scrolling on the operator view"
    for sel in (".sl-card >> nth=11", ".sl-palette", "#missed", "#keymap", "#live-view"):
        box = page.locator(sel).bounding_box()
        assert box is not None and box["y"] + box["height"] <= height, f"{sel} is below the fold"
    cards, palette = page.locator(".sl-cards").bounding_box(), page.locator(".sl-palette").bounding_box()
    assert cards is not None and palette is not None and cards["y"] + cards["height"] <= palette["y"]
    expect(page.locator("#keymap")).to_contain_text("Enter / Y")
    shot(page, "operator-1366x768")
    close(page)
