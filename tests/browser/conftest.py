"""Playwright (sync API) driving Debian's Chromium; never a downloaded browser."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from tests.harness import SECRET, BrokerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is absent: run scripts/install-system-deps.sh (apt chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs chromium: the console tests must run there
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A page plus what it did that a test may want to forbid: dialogs and script errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    watched = Watched(page)
    yield watched
    context.close()
    assert watched.errors == [], f"script errors in the console: {watched.errors}"


@pytest.fixture
def page(watched: Watched) -> Page:
    return watched.page


def log_in(page: Page, broker: BrokerProcess, key: str = SECRET) -> None:
    page.goto(broker.http + "/")
    page.locator("#login-key").fill(key)
    page.locator("#login-submit").click()
    if key == SECRET:
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#health")).to_have_text("Broker up")


@pytest.fixture
def console(page: Page, broker: BrokerProcess) -> Page:
    """A page logged in to a fresh broker, on the overview."""
    log_in(page, broker)
    return page
