"""What the console's words and buttons mean: totals, Dead, Re-queue vs Deliver again, a broker
that cannot be reached, degraded storage, auto-refresh, dates in the chosen language."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import log_in
from tests.browser.helpers import connect_client, post, send, shoot
from tests.harness import BrokerProcess


def go(page: Page, name: str) -> None:
    page.locator(f"nav a[data-page={name}]").click()
    expect(page.locator(f"#page-{name}")).to_be_visible()


def test_totals_say_since_start_and_dead_has_one_meaning(console: Page) -> None:
    page = console
    expect(page.locator("#ov-topics thead tr.group")).to_contain_text("Totals since start")
    expect(page.locator("#ov-topics thead")).to_contain_text("Dead-lettered")
    expect(page.locator("#ov-topics thead")).not_to_contain_text(re.compile(r"\bDead\b(?!-)"))
    expect(page.locator("#ov-counts").locator("xpath=preceding-sibling::h2[1]")).to_have_text(
        "Messages stored now, by status"
    )
    expect(page.locator("#count-dead").locator("xpath=..")).to_contain_text("stored now")


def test_the_topics_group_headers_say_which_columns_they_head(
    console: Page, broker: BrokerProcess
) -> None:
    """ "Now" heads Backlog..Producers and "Totals since start" Published..Dead-lettered: each
    is centred over its columns (right-aligned, it read as the heading of Producers or
    Dead-lettered alone), and every column is named with its group for screen readers and in
    the phone layout's row labels."""
    page = console
    send(broker, "one", topic="orders")
    expect(page.locator("#ov-topics tbody")).to_contain_text("orders")
    placement = page.evaluate(
        """() => [...document.querySelectorAll("#ov-topics tr.group th")].map((th) => {
          const leaves = document.querySelectorAll("#ov-topics thead tr:last-child th");
          const first = leaves[th.cellIndex === 1 ? 1 : 5].getBoundingClientRect();
          const last = leaves[th.cellIndex === 1 ? 4 : 8].getBoundingClientRect();
          const range = document.createRange();
          range.selectNodeContents(th);
          const text = range.getBoundingClientRect();
          return [th.textContent, th.scope, first.left, last.right, (text.left + text.right) / 2];
        })"""
    )
    for name, scope, left, right, centre in placement:
        assert abs(centre - (left + right) / 2) <= 3, (name, left, right, centre)
        assert scope == "colgroup", name
    assert [p[0] for p in placement] == ["Now", "Totals since start"]
    for group, column in (("Now", "Backlog"), ("Totals since start", "Dead-lettered")):
        expect(page.get_by_role("columnheader", name=f"{group}: {column}")).to_be_visible()
    cells = page.locator("#ov-topics tbody tr").first.locator("td")
    expect(cells.nth(1)).to_have_attribute("data-label", "Now: Backlog")
    expect(cells.nth(5)).to_have_attribute("data-label", "Totals since start: Published")
    shoot(page, "41-overview-topic-groups")
    page.locator("#app .lang-select").select_option("zh")
    expect(page.get_by_role("columnheader", name="当前：积压")).to_be_visible()
    expect(cells.nth(8)).to_have_attribute("data-label", "启动以来累计：转为死信")


def test_a_consumed_message_is_delivered_again_only_after_a_confirmation(
    console: Page, broker: BrokerProcess
) -> None:
    page = console
    code = send(broker, "paid", topic="billing")
    consumer = page.context.new_page()
    connect_client(consumer, broker, "Consumers", "billing", "acker", ack=True)
    expect(page.locator("#count-consumed")).to_have_text("1")
    consumer.close()  # nobody takes the redelivery: it stays waiting

    go(page, "messages")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#d-status")).to_have_text("Consumed")
    expect(page.locator("#d-requeue")).to_be_hidden()  # Re-queue is for dead messages
    again = page.locator("#d-again")
    again.click()
    expect(again).to_have_text("Click again: consumers will get it a second time")
    assert post(broker, "/Console/GetMessage", messageCode=code)["data"]["Status"] == 1
    again.click()
    expect(page.locator("#msg-note")).to_have_text("Message queued to be delivered again.")
    expect(page.locator("#d-status")).to_have_text("Unconsumed")  # the dialog shows it as it is
    expect(again).to_be_hidden()
    row = page.locator(f'#msg-table tr:has(a[data-code="{code}"])')
    expect(row).to_contain_text("Unconsumed")
    assert post(broker, "/Console/GetMessage", messageCode=code)["data"]["Status"] == -1


def test_an_unreachable_broker_greys_what_is_shown(console: Page, broker: BrokerProcess) -> None:
    page = console
    send(broker, "one")
    expect(page.locator("#count-all")).to_have_text("1")
    expect(page.locator("#rate-in")).not_to_have_text("–")
    broker.stop()
    banner = page.locator("#unreachable")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Broker unreachable: no answer")
    expect(banner).to_contain_text("The values shown are from")
    expect(page.locator("#page-error")).to_be_hidden()  # not a bare "Failed to fetch"
    for rate in ("#rate-in", "#rate-out", "#rate-acked"):
        expect(page.locator(rate)).to_have_text("–")
    expect(page.locator("main")).to_have_class(re.compile(r"\bstale\b"))
    expect(page.locator("#count-all")).to_have_text("1")  # the last value, greyed
    expect(page.locator("#count-all")).to_have_css("opacity", "0.55")
    # the Broker card's "Broker down" is news, not a stale value: shown in full colour
    expect(page.locator("#ov-ping")).to_have_text("Broker down")
    expect(page.locator("#ov-ping").locator("..")).to_have_css("opacity", "1")
    shoot(page, "13-broker-unreachable")


def test_degraded_storage_is_shown_on_the_overview(console: Page) -> None:
    page = console
    expect(page.locator("#ov-storage")).to_be_hidden()
    degraded = {"status": "degraded", "storage": "write failed: No space left on device"}

    def answer(route: Route) -> None:
        route.fulfill(status=503, content_type="application/json", body=json.dumps(degraded))

    page.route("**/healthz", answer)
    banner = page.locator("#ov-storage")
    expect(banner).to_have_text(
        "Storage degraded: write failed: No space left on device. "
        "Producers are refused until writes succeed again."
    )
    shoot(page, "14-storage-degraded")
    page.unroute("**/healthz")
    expect(banner).to_be_hidden()  # the real /healthz says ok again


def test_message_list_refresh_pauses_while_the_user_interacts(
    console: Page, broker: BrokerProcess
) -> None:
    page = console
    send(broker, "first", topic="live")
    go(page, "messages")
    rows = page.locator("#msg-table tbody tr")
    expect(rows).to_have_count(1)
    send(broker, "second", topic="live")
    expect(rows).to_have_count(2)  # auto-refresh is on by default

    def two_ticks() -> None:  # a refresh is due every 2 ticks of 1.5 s
        for _ in range(2):
            with page.expect_response("**/Console/Ping"):
                pass

    page.locator("#msg-summary").hover()  # the pointer is on the list: keep it still
    expect(page.locator("#msg-paused")).to_be_visible()
    send(broker, "third", topic="live")
    two_ticks()
    expect(rows).to_have_count(2)
    page.mouse.move(5, 5)
    page.locator("#f-topic").focus()  # typing a filter: keep still too
    two_ticks()
    expect(rows).to_have_count(2)
    page.locator("#f-submit").click()  # focus on a button does not pause
    page.mouse.move(5, 5)
    expect(rows).to_have_count(3)
    page.locator("#f-auto").uncheck()
    page.mouse.move(5, 5)
    send(broker, "fourth", topic="live")
    two_ticks()
    expect(rows).to_have_count(3)


def test_dates_follow_the_language(console: Page, broker: BrokerProcess) -> None:
    page = console
    send(broker, "hello")
    expect(page.locator("#ov-chart text.axis").last).to_have_text(re.compile(r"^[A-Z][a-z]{2} \d"))
    page.locator("header .lang-select").select_option("zh")
    expect(page.locator("#ov-chart text.axis").last).to_have_text(re.compile(r"^\d+月\d+日$"))
    go(page, "messages")
    expect(page.locator("#f-start")).to_have_attribute("placeholder", "年-月-日 时:分:秒")
    expect(page.locator("#f-start")).to_have_attribute("type", "text")  # no browser mm/dd/yyyy
    page.locator("#f-start").fill("12/01/2026")
    page.locator("#f-submit").click()
    expect(page.locator("#page-error")).to_contain_text("不是有效时间")
    page.locator("#f-start").fill("2000-01-01")
    page.locator("#f-submit").click()
    expect(page.locator("#msg-table tbody tr")).to_have_count(1)


def test_an_open_message_follows_what_happens_to_it(console: Page, broker: BrokerProcess) -> None:
    """The dialog is refreshed with the list's auto-refresh: a message consumed while it is
    open shows Consumed (and Deliver again) without being reopened; the list waits."""
    page = console
    code = send(broker, "watch me", topic="watched")
    go(page, "messages")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#d-status")).to_have_text("Unconsumed")
    expect(page.locator("#msg-paused")).to_be_visible()
    consumer = page.context.new_page()
    connect_client(consumer, broker, "Consumers", "watched", "acker", ack=True)
    expect(page.locator("#d-status")).to_have_text("Consumed")
    expect(page.locator("#d-consumed")).not_to_have_text("–")
    expect(page.locator("#d-again")).to_be_visible()
    consumer.close()


def test_search_times_are_the_times_the_list_shows_in_another_zone(
    browser: Browser, broker_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker on UTC, a browser in Shanghai (UTC+8): searching from the Created time the
    list shows finds the message. The API's times are the broker's local time; sent as typed
    they were 8 hours off and found nothing (docs/protocol.md, Console/Stats utcOffset)."""
    monkeypatch.setenv("TZ", "UTC")
    broker = broker_factory()
    code = send(broker, "zoned")
    context = browser.new_context(locale="en-US", timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        log_in(page, broker)
        go(page, "messages")
        row = page.locator(f'#msg-table tr:has(a[data-code="{code}"])')
        created = row.locator("td").nth(3).text_content() or ""
        stored = post(broker, "/Console/GetMessage", messageCode=code)["data"]["CreateTime"]
        shanghai = datetime.fromtimestamp(stored, timezone(timedelta(hours=8)))
        assert created == shanghai.strftime("%Y-%m-%d %H:%M:%S")  # shown in the browser's zone
        page.locator("#f-start").fill(created)
        page.locator("#f-end").fill(created)
        page.locator("#f-submit").click()
        expect(page.locator("#msg-summary")).to_have_text("1 messages match")
        expect(row).to_be_visible()
        before = (shanghai - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
        page.locator("#f-end").fill(before)
        page.locator("#f-start").fill("")
        page.locator("#f-submit").click()
        expect(page.locator("#msg-summary")).to_have_text("0 messages match")
    finally:
        context.close()
