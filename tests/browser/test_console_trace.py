"""The Trace panel of the console's message dialog (docs/protocol.md "Message trace")."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import Watched, log_in
from tests.browser.helpers import connect_client, send, shoot


def open_message(page: Page, code: str) -> None:
    page.locator("nav a[data-page=messages]").click()
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#msg-detail")).to_be_visible()


def test_the_trace_panel_shows_each_event_in_order(watched: Watched, broker_factory) -> None:
    broker = broker_factory(settings={"mq.trace": 1, "mq.maxDeliveries": 2, "mq.pushRetryTime": 1})
    page = watched.page
    consumer = page.context.new_page()  # never acks: pushed twice, then dead
    connect_client(consumer, broker, "Consumers", "jobs", "lazy-1")
    code = send(broker, "doomed", topic="jobs")
    log_in(page, broker)
    expect(page.locator("#count-dead")).to_have_text("1")
    consumer.close()

    open_message(page, code)
    items = page.locator("#d-trace li")
    expect(items).to_have_count(5)
    events = ["published", "pushed", "redelivered", "pushed", "dead"]
    for i, event in enumerate(events):
        expect(items.nth(i)).to_have_attribute("data-event", event)
    expect(items.nth(0)).to_contain_text("HTTP Send · 127.0.0.1 · http")
    expect(items.nth(1)).to_contain_text("pushed · consumer lazy-1 · attempt 1")
    expect(items.nth(2)).to_contain_text("redelivered · no ack in time")
    expect(items.nth(3)).to_contain_text("attempt 2")
    expect(items.nth(4)).to_contain_text("dead · max deliveries")
    expect(items.nth(0).locator("time")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")
    )
    expect(page.locator("#d-trace-note")).to_be_hidden()
    shoot(page, "30-trace-panel")

    page.locator("#d-requeue").click()  # the dialog is drawn again with the new event
    expect(items).to_have_count(6)
    expect(items.nth(5)).to_have_text(re.compile(r"re-queued from the console$"))

    page.locator("#d-close").click()
    page.locator("#app .lang-select").select_option("zh")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#d-trace-title")).to_have_text("轨迹")
    expect(items.nth(4)).to_contain_text("成为死信 · 超过最大投递次数")
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the dialog scrolls sideways on a phone: {width} px"
    shoot(page, "31-trace-panel-zh-390")


def test_without_a_trace_the_panel_says_why(page: Page, broker) -> None:
    code = send(broker, "plain")  # the default broker: mq.trace 0
    log_in(page, broker)
    open_message(page, code)
    expect(page.locator("#d-trace-note")).to_have_text("message trace is off (mq.trace is 0)")
    expect(page.locator("#d-trace li")).to_have_count(0)
    # the broker's reason is in English; in Chinese the panel says it in Chinese
    page.locator("#d-close").click()
    page.locator("#app .lang-select").select_option("zh")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#d-trace-note")).to_have_text("消息轨迹未开启（mq.trace 为 0）")
