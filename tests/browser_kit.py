"""What the browser tests share: the seeded console under uvicorn (``site``), Debian's headless Chromium
(``browser``), logging in, screenshots for the docs (at most 200 KB each) and a logged-in HTTP client."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from ui_seed import PASSWORD, Seeded, console_app, seed, serve

from station.config import ROOT
from ui.settings import Console

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# The docs' screenshots are refreshed with `SORTLOOP_DOCS_SHOTS=1 make test`; otherwise they go to a temp folder
# (still taken and size-checked) so a test run leaves the working tree clean.
SHOTS = ROOT / "docs" / "screenshots" if os.environ.get("SORTLOOP_DOCS_SHOTS") else \
    Path(tempfile.gettempdir()) / "sortloop-screenshots"
MAX_SHOT = 200_000
WAIT_MS = 30_000
Site = tuple[str, Seeded, Console]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """(base URL, seeded store, console) of the station's app with the console, on 127.0.0.1."""
    seeded = seed(tmp_path_factory.mktemp("browser"))
    app, console = console_app(seeded)
    with serve(app, seeded.live) as url:
        yield url, seeded, console
    seeded.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium (/usr/bin/chromium) is not installed")
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    yield b
    b.close()
    pw.stop()


def login(browser: Browser, url: str, username: str, password: str = PASSWORD,
          requests: list[str] | None = None, viewport: tuple[int, int] = (1280, 860)) -> Page:
    """A fresh browser context logged in as ``username``; ``requests`` collects every URL the page asks for."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{url}/ui/", wait_until="domcontentloaded")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    if password == PASSWORD:
        expect(page.locator("#whoami")).to_have_text(username, timeout=WAIT_MS)
    return page


def expect_tabs(page: Page, labels: list[str]) -> None:
    """The visible tabs are exactly ``labels``, in order (retried: Gradio re-renders the tab bar after login)."""
    expect(page.locator("button[role=tab]:visible")).to_have_text(labels, timeout=WAIT_MS)


def open_tab(page: Page, label: str) -> None:
    page.locator("button[role=tab]").filter(has_text=label).click()


def shot(page: Page, name: str, full_page: bool = False) -> Path:
    """A screenshot for the docs (the whole page with ``full_page``), scaled down until it is at most 200 KB."""
    image = cv2.imdecode(np.frombuffer(page.screenshot(full_page=full_page), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    scale = 1.0
    while True:
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if len(buf) <= MAX_SHOT or scale < 0.3:
            break
        scale *= 0.85
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    path.write_bytes(buf.tobytes())
    assert ok and path.stat().st_size <= MAX_SHOT
    return path


@contextmanager
def http_session(url: str, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/login", data={"username": username, "password": PASSWORD})
        assert r.status_code == 303, r.text
        yield client


def close(page: Page) -> None:
    page.context.close()
