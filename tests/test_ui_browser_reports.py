"""Reports, the public /impact page and the engineer view in a real headless Chromium against the real app: a
manager makes a report and downloads its CSV and PDF through the page, and their totals equal SQL run straight
on the seeded store; /impact needs no login and shows the same diverted totals; an engineer sees the model and
the promotion gate. Screenshots go to docs/screenshots/ (reports, impact, engineer)."""

from __future__ import annotations

import base64
import csv
import io
import re
import sqlite3
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import browser_kit
import pytest
from browser_kit import WAIT_MS, Site, close, expect_tabs, login, open_tab, shot
from playwright.sync_api import Browser, Page, expect

from station.config import ROOT
from station.taxonomy import load_taxonomy
from ui.report_config import load_report_config
from ui.reports import DEFAULT_CONFIG

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
site, browser = browser_kit.site, browser_kit.browser  # the shared fixtures, one site per module
STREAM = re.compile(rb"<<(?P<head>(?:(?!>>).)*?/Length (?P<n>\d+)(?:(?!>>).)*?)>>\s*stream\r?\n", re.DOTALL)


@dataclass(frozen=True)
class Truth:
    """A period's totals computed with SQL on the store's SQLite file."""

    items: int
    kg: float
    diverted_items: int
    diverted_kg: float
    hazards_found: int
    hazards_kg: float
    hazards_handled: int

    @property
    def share(self) -> float:
        return self.diverted_items / self.items

    @property
    def share_kg(self) -> float:
        return self.diverted_kg / self.kg


def sql_truth(db: Path, since: float, until: float) -> Truth:
    rcfg = load_report_config(ROOT / DEFAULT_CONFIG)
    masses, diverted = rcfg.masses(load_taxonomy()), {s.value for s in rcfg.diverted_streams}
    con = sqlite3.connect(db)
    try:
        # a hazardous item counts apart from its stream (never as diverted)
        rows = con.execute("SELECT CASE WHEN hazard IS NULL THEN stream ELSE 'hazard' END, class_name, COUNT(*) "
                           "FROM items WHERE decided_at >= ? AND decided_at < ? GROUP BY 1, class_name",
                           (since, until)).fetchall()
        found, handled = con.execute(
            "SELECT COUNT(*), COALESCE(SUM(EXISTS (SELECT 1 FROM quarantine_log q WHERE q.item_id = i.item_id) "
            "OR EXISTS (SELECT 1 FROM alarms a WHERE a.item_id = i.item_id AND a.kind LIKE 'hazard.%' "
            "AND a.acknowledged_at IS NOT NULL)), 0) FROM items i "
            "WHERE i.hazard IS NOT NULL AND i.decided_at >= ? AND i.decided_at < ?", (since, until)).fetchone()
    finally:
        con.close()
    kg = [(stream, n * masses.get(cls, 0.0)) for stream, cls, n in rows]
    return Truth(items=sum(n for _, _, n in rows), kg=sum(k for _, k in kg),
                 diverted_items=sum(n for s, _, n in rows if s in diverted),
                 diverted_kg=sum(k for s, k in kg if s in diverted), hazards_found=found,
                 hazards_kg=sum(k for s, k in kg if s == "hazard"), hazards_handled=handled)


def day_bounds(first: date, last: date) -> tuple[float, float]:
    tz = load_report_config(ROOT / DEFAULT_CONFIG).tz
    return (datetime.combine(first, time(0), tzinfo=tz).timestamp(),
            datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).timestamp())


def pdf_text(pdf: bytes) -> bytes:
    """The PDF's content streams, decoded (reportlab: ASCII85 then Flate), joined."""
    out = []
    for m in STREAM.finditer(pdf):
        head, data = m.group("head"), pdf[m.end():m.end() + int(m.group("n"))]
        if b"/Subtype /Image" in head:
            continue
        if b"/ASCII85Decode" in head:
            data = base64.a85decode(data.strip().removesuffix(b"~>"))
        if b"/FlateDecode" in head:
            data = zlib.decompress(data)
        out.append(data)
    return b"\n".join(out)


def pdf_string(text: str) -> bytes:
    return b"(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1") + b")"


def download(page: Page, suffix: str) -> bytes:
    with page.expect_download() as info:
        page.locator(f"#tab-reports a[download$='{suffix}']").click()
    path = info.value.path()
    assert info.value.suggested_filename.endswith(suffix)
    return Path(path).read_bytes()


def csv_totals(text: str) -> dict[str, str]:
    return {row["metric"]: row["value"] for row in csv.DictReader(io.StringIO(text)) if row["level"] == "total"}


def test_manager_downloads_report_csv_and_pdf_matching_sql(site: Site, browser: Browser) -> None:
    url, seeded, _ = site
    today = datetime.now(load_report_config(ROOT / DEFAULT_CONFIG).tz).date()
    first = today - timedelta(days=1)  # the seeded items are a minute old: yesterday covers just past midnight
    truth = sql_truth(Path(seeded.cfg.store.url.removeprefix("sqlite:///")), *day_bounds(first, today))
    assert truth.items == 6 and truth.hazards_found == 1 and 0 < truth.diverted_items < truth.items

    page = login(browser, url, "manager")  # Playwright accepts downloads by default
    open_tab(page, "Reports")
    page.get_by_label("From (YYYY-MM-DD)").fill(first.isoformat())
    page.get_by_label("To, included (YYYY-MM-DD)").fill(today.isoformat())
    page.get_by_role("button", name="Make report").click()
    expect(page.locator("#tab-reports a[download$='.pdf']")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#tab-reports")).to_contain_text(f"{truth.items} items")
    shot(page, "reports")

    totals = csv_totals(download(page, ".csv").decode())
    assert int(totals["items"]) == truth.items
    assert float(totals["kg"]) == pytest.approx(truth.kg, abs=1e-5)
    assert int(totals["diverted_items"]) == truth.diverted_items
    assert float(totals["diverted_share_items"]) == pytest.approx(truth.share, abs=1e-6)
    assert float(totals["diverted_share_kg"]) == pytest.approx(truth.share_kg, abs=1e-6)
    assert (int(totals["hazards_found"]), int(totals["hazards_handled"])) == \
        (truth.hazards_found, truth.hazards_handled)

    pdf = download(page, ".pdf")
    close(page)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    for shown in (f"{first.isoformat()} to {today.isoformat()}", str(truth.items), f"{truth.kg:.1f}",
                  f"{truth.diverted_items} ({100 * truth.share:.1f} %)",
                  f"{truth.diverted_kg:.1f} ({100 * truth.share_kg:.1f} %)", "Hazardous items, apart (items)",
                  "How each figure is computed"):
        assert pdf_string(shown) in text or shown.encode() in text, shown
    hazards = re.search(rb"\(Hazardous items, apart \\\(items\\\)\).*?\((\d+)\)", text, re.DOTALL)
    assert hazards is not None and int(hazards.group(1)) == truth.hazards_found


def test_impact_page_is_public_and_matches_sql(site: Site, browser: Browser) -> None:
    url, seeded, _ = site
    truth = sql_truth(Path(seeded.cfg.store.url.removeprefix("sqlite:///")), 0.0, float("inf"))
    context = browser.new_context(viewport={"width": 1100, "height": 760})  # no login, no cookies
    page = context.new_page()
    response = page.goto(f"{url}/impact", wait_until="domcontentloaded")
    assert response is not None and response.status == 200 and page.url == f"{url}/impact"
    assert context.cookies() == []
    cards = [c.inner_text().split("\n")[0].strip() for c in page.locator(".card .big").all()]
    assert cards == [str(truth.diverted_items), f"{truth.diverted_kg:.1f} kg", f"{100 * truth.share:.1f} %",
                     str(truth.hazards_found), f"{truth.hazards_kg:.1f} kg"]
    expect(page.locator("body")).to_contain_text("Hazardous items are never counted as diverted")
    expect(page.locator("body")).to_contain_text(f"of all {truth.items} items sorted")
    shot(page, "impact")
    context.close()


def test_engineer_sees_models_and_the_gate(site: Site, browser: Browser) -> None:
    url, _, _ = site
    page = login(browser, url, "engineer")
    expect(page.locator("button[role=tab]").filter(has_text="Engineer")).to_be_visible(timeout=WAIT_MS)
    open_tab(page, "Engineer")
    tab = page.locator("#tab-engineer")
    page.get_by_role("button", name="Refresh").click()
    expect(tab).to_contain_text("Station model:", timeout=WAIT_MS)
    expect(tab).to_contain_text("promoted:")
    expect(tab).to_contain_text("Candidate beside the current model")
    expect(page.get_by_role("button", name="Promote through the gate")).to_be_visible()
    expect(page.get_by_role("button", name="Roll back to the previous model")).to_be_visible()
    shot(page, "engineer", full_page=True)  # down to the gate and rollback
    close(page)
    manager = login(browser, url, "manager")
    expect_tabs(manager, ["Hazards", "Reports"])  # no Engineer view for a manager
    close(manager)
