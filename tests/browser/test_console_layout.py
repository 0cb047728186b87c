"""The console from phone to wide screen: no page scrolls sideways, the width is used.

Each page is opened at 390×844 (a phone) and 1920×1080, with content that stretches it (a
long topic name, 31 messages, a producer with a long id, the detail dialog open); a screenshot
of each is saved in artifacts/screenshots/layout-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Watched, log_in
from tests.browser.helpers import connect_client, send, shoot
from tests.harness import SECRET, BrokerProcess

VIEWPORTS = {"phone": (390, 844), "desktop": (1920, 1080)}
PAGES = ("overview", "messages", "schedule", "clients", "config", "cluster")
LONG_TOPIC = "orders-europe-west-priority-settlements-2026"


@pytest.fixture(scope="module")
def filled(broker_module: BrokerProcess) -> BrokerProcess:
    for i in range(30):
        send(broker_module, f"payload {i} " + "x" * 200, topic=LONG_TOPIC)
    send(broker_module, "later", topic="t", delay=3600)
    return broker_module


@pytest.fixture(scope="module")
def broker_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(cwd=tmp_path_factory.mktemp("layout")).start()
    yield broker
    broker.cleanup()


def overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no sideways scroll)."""
    width: int = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )
    return width


def crowded_days(page: Page) -> list[str]:
    """The chart's shown day labels that run into the next shown one (none: all readable)."""
    expect(page.locator("#ov-chart svg text.day").first).to_be_attached()
    crowded: list[str] = page.evaluate(
        """() => {
          const shown = [...document.querySelectorAll("#ov-chart svg text.day")]
            .filter((t) => t.getAttribute("visibility") !== "hidden")
            .map((t) => [t.textContent, t.getBoundingClientRect()]);
          return shown.slice(1).filter(([, r], i) => r.left < shown[i][1].right + 2)
            .map(([label]) => label);
        }"""
    )
    return crowded


def open_page(page: Page, name: str) -> None:
    toggle = page.locator("#nav-toggle")
    if toggle.is_visible():  # the collapsed menu of narrow screens
        toggle.click()
        expect(page.locator("nav")).to_be_visible()
    page.locator(f"nav a[data-page={name}]").click()
    expect(page.locator(f"#page-{name}")).to_be_visible()
    expect(page.locator("nav a[aria-current=page]")).to_have_attribute("data-page", name)


@pytest.fixture(scope="module", params=list(VIEWPORTS))
def sized(
    request: pytest.FixtureRequest, browser: Browser, filled: BrokerProcess
) -> Iterator[Page]:
    """A logged-in page at one of VIEWPORTS (one per module and size: logging in is slow)."""
    width, height = VIEWPORTS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
    clients = context.new_page()
    connect_client(clients, filled, "Producers", LONG_TOPIC, "producer-with-a-long-id-1")
    page = context.new_page()
    watched = Watched(page)
    page.goto(filled.http + "/")
    assert overflow(page) == 0, "login"
    shoot(page, f"layout-{request.param}-login")
    log_in(page, filled)
    yield page
    context.close()
    assert watched.errors == []


READY = {
    "overview": ("#ov-topics tbody", LONG_TOPIC),
    "messages": ("#msg-table tbody", "Unconsumed"),
    "schedule": ("#sched-table tbody", "Deliver now"),
    "clients": ("#producers tbody", "producer-with"),
    "config": ("#config-sections", "mq.pushType"),
    "cluster": ("#cluster-off", "Not clustered"),
}


@pytest.mark.parametrize("name", PAGES)
def test_no_page_scrolls_sideways(sized: Page, name: str) -> None:
    page = sized
    size = page.viewport_size
    assert size is not None
    viewport = next(k for k, (w, _) in VIEWPORTS.items() if w == size["width"])
    open_page(page, name)
    selector, text = READY[name]
    expect(page.locator(selector)).to_contain_text(text)
    assert overflow(page) == 0, name
    shoot(page, f"layout-{viewport}-{name}")
    if name == "messages":
        page.locator("#msg-table tbody button").first.click()
        expect(page.locator("#msg-detail")).to_be_visible()
        assert overflow(page) == 0, "message dialog"
        shoot(page, f"layout-{viewport}-message-dialog")
        page.locator("#d-close").click()


def test_wide_screen_uses_the_width(browser: Browser, filled: BrokerProcess) -> None:
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-US")
    page = context.new_page()
    try:
        log_in(page, filled)
        expect(page.locator("#ov-chart svg")).to_be_visible()
        main = page.locator("main").bounding_box()
        assert main is not None and main["width"] >= 0.9 * 1920, main
        chart = page.locator("#ov-chart svg").bounding_box()
        card = page.locator("#ov-chart").bounding_box()
        assert chart is not None and card is not None
        assert chart["width"] >= 0.98 * card["width"], (chart, card)
        # the chart's labels keep their size: it is drawn for its width, not scaled
        font = page.locator("#ov-chart svg text.axis").first.evaluate(
            "e => e.getBoundingClientRect().height"
        )
        assert 9 <= font <= 20, font
    finally:
        context.close()


def test_phone_menu_collapses_and_closes_after_a_choice(
    browser: Browser, filled: BrokerProcess
) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="en-US")
    page = context.new_page()
    try:
        log_in(page, filled)
        expect(page.locator("nav")).to_be_hidden()
        expect(page.locator("#nav-toggle")).to_be_visible()
        open_page(page, "clients")
        expect(page.locator("nav")).to_be_hidden()
        assert overflow(page) == 0
        # the chart's labels stay readable on a phone
        open_page(page, "overview")
        font = page.locator("#ov-chart svg text.axis").first.evaluate(
            "e => e.getBoundingClientRect().height"
        )
        assert font >= 9, font
        assert crowded_days(page) == [], "chart day labels overlap"
    finally:
        context.close()


# the other ends and middles of the promised range, in Chinese (labels are of other widths)
ZH_SIZES = {"zh-360": (360, 740), "zh-768": (768, 1024), "zh-2560": (2560, 1440)}


@pytest.mark.parametrize("size", list(ZH_SIZES))
def test_chinese_from_360_to_2560_px_stays_on_loopback(
    browser: Browser, filled: BrokerProcess, size: str
) -> None:
    """Every page in Chinese: no sideways scroll, and no request leaves the machine (no CDN,
    fonts or analytics: the console works offline)."""
    width, height = ZH_SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(filled.http + "/")
        page.locator("#login-key").fill(SECRET)
        page.locator("#login-submit").click()
        expect(page.locator("#health")).to_have_text("服务正常")
        expect(page.locator("nav a[data-page=overview]")).to_have_text("概览")
        assert crowded_days(page) == [], "chart day labels overlap"
        for name in PAGES:
            open_page(page, name)
            selector, _ = READY[name]
            expect(page.locator(selector)).not_to_be_empty()
            assert overflow(page) == 0, name
        shoot(page, f"layout-{size}-cluster")
    finally:
        context.close()
    away = [url for url in requested if not url.startswith(("http://127.0.0.1", "ws://127.0.0.1"))]
    assert not away, away


def test_a_very_long_topic_wraps_and_keeps_every_column_in_view(
    browser: Browser, filled: BrokerProcess
) -> None:
    topic = "t" * 300  # one unbroken word: the topic cell wraps it (console.css td.long)
    send(filled, "long", topic=topic)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    try:
        log_in(page, filled)
        open_page(page, "messages")
        page.locator("#f-topic").fill(topic)
        page.locator("#f-submit").click()
        expect(page.locator("#msg-table tbody tr")).to_have_count(1)
        view = page.locator("#msg-table tbody button").first.bounding_box()
        card = page.locator("#msg-table").locator("xpath=..").bounding_box()
        assert view is not None and card is not None
        assert view["x"] + view["width"] <= card["x"] + card["width"], (view, card)
        shoot(page, "layout-long-topic")
    finally:
        context.close()


# every 60 px up to 1500 (the narrow and collapse widths, where labels meet), then wider ones
SWEEP = [*range(360, 1500, 60), 1600, 1920, 2200, 2560]
SETTLED_OVERFLOW = """() => new Promise((done) => requestAnimationFrame(() =>
  requestAnimationFrame(() => done(Math.max(document.documentElement.scrollWidth,
    document.body.scrollWidth) - document.documentElement.clientWidth))))"""


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_no_width_from_360_to_2560_scrolls_sideways(
    browser: Browser, filled: BrokerProcess, locale: str
) -> None:
    """Each page, resized through the promised range. In English the header's links and
    tools did not fit on one line just above the 860 px collapse (880-935 px: Log out went
    off the page)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    page = context.new_page()
    try:
        page.goto(filled.http + "/")
        page.locator("#login-key").fill(SECRET)
        page.locator("#login-submit").click()
        expect(page.locator("#health")).to_have_text(re.compile("Broker up|服务正常"))
        for name in PAGES:
            page.set_viewport_size({"width": 1280, "height": 900})
            open_page(page, name)
            expect(page.locator(READY[name][0])).not_to_be_empty()
            wide = []
            for width in SWEEP:
                page.set_viewport_size({"width": width, "height": 900})
                if extra := page.evaluate(SETTLED_OVERFLOW):
                    wide.append((width, extra))
            assert wide == [], (name, wide)
    finally:
        context.close()
