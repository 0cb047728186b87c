"""The console's Schedule page and dead-letter reasons in a real Chromium (issue 17)."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.browser.helpers import post, send, shoot
from tests.harness import BrokerProcess

DAY = 86_400


def go(page: Page, name: str) -> None:
    page.locator(f"nav a[data-page={name}]").click()
    expect(page.locator(f"#page-{name}")).to_be_visible()


def test_schedule_lists_counts_down_delivers_now_and_cancels(
    console: Page, broker: BrokerProcess
) -> None:
    later = send(broker, "in a month", topic="orders", delay=30 * DAY)
    soon = send(broker, "soon", topic="orders", delay=90)
    other = send(broker, "audit", topic="audit", delay=3600)
    send(broker, "now", topic="orders")  # not delayed: not listed
    go(console, "schedule")
    rows = console.locator("#sched-table tbody tr")
    expect(rows).to_have_count(3)
    expect(console.locator("#sched-summary")).to_have_text("3 delayed messages, soonest first")
    expect(rows.nth(0)).to_contain_text(soon)
    expect(rows.nth(2)).to_contain_text(later)
    countdown = rows.nth(0).locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^00:01:[0-3]\d$"))
    first = countdown.text_content()
    expect(countdown).not_to_have_text(first or "")  # it moves by itself, second by second
    expect(rows.nth(2).locator(".countdown")).to_have_text(re.compile(r"^(29|30)d \d\d:\d\d:\d\d$"))
    console.locator("header .lang-select").select_option("zh")  # days in the chosen language
    in_days = re.compile(r"^(29|30) 天 \d\d:\d\d:\d\d$")
    expect(rows.nth(2).locator(".countdown")).to_have_text(in_days)
    console.locator("header .lang-select").select_option("en")
    shoot(console, "20-schedule")

    console.locator("#s-topic").fill("audit")
    console.locator("#s-submit").click()
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text(other)
    console.locator("#s-topic").fill("")
    console.locator("#s-submit").click()
    expect(rows).to_have_count(3)

    rows.nth(0).locator("button[data-code]").click()  # deliver "soon" now
    expect(console.locator("#sched-note")).to_have_text(f"Message {soon} is due now.")
    expect(rows).to_have_count(2)
    assert post(broker, "/Console/GetMessage", messageCode=soon)["data"]["Status"] == -1

    cancel = rows.nth(0).locator("button[data-cancel]")  # "audit": asks twice
    cancel.click()
    expect(cancel).to_have_text("Click again to cancel")
    cancel.click()
    expect(console.locator("#sched-note")).to_have_text(f"Message {other} cancelled (deleted).")
    expect(rows).to_have_count(1)
    assert post(broker, "/Console/GetMessage", messageCode=other) == {"code": -1, "data": "error"}


def test_dead_reasons_are_shown_and_filtered(console: Page, broker: BrokerProcess) -> None:
    expired = post(
        broker, "/Producer/Send", messageData="short", topic="orders", delayTime=0, ttl=1
    )["msg"]
    send(broker, "plain", topic="orders")
    deadline = time.monotonic() + 10
    while post(broker, "/Console/GetMessage", messageCode=expired)["data"]["Status"] != 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    go(console, "messages")
    console.locator("#f-status").select_option("2")
    console.locator("#f-reason").select_option("expired")
    console.locator("#f-submit").click()
    rows = console.locator("#msg-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("Dead expired")
    console.locator("#f-reason").select_option("max deliveries")
    console.locator("#f-submit").click()
    expect(rows.nth(0)).to_have_class("empty")

    console.locator("#f-reason").select_option("expired")
    console.locator("#f-submit").click()
    rows.nth(0).locator("a.code").click()
    dialog = console.locator("#msg-detail")
    expect(dialog.locator("#d-reason")).to_have_text("expired")
    expect(dialog.locator("#d-ttl")).to_have_text("1")
    expect(dialog.locator("#d-history li")).to_have_count(1)
    expect(dialog.locator("#d-history li")).to_contain_text("dead: expired")
    expect(dialog.locator("#d-expires")).to_be_hidden()
    shoot(console, "21-dead-reason")
    dialog.locator("#d-requeue").click()
    expect(dialog.locator("#d-history li")).to_have_count(2)
    expect(dialog.locator("#d-history li").nth(1)).to_contain_text("re-queued from the console")
    expect(dialog.locator("#d-reason")).to_be_hidden()  # waiting again


def test_an_armed_cancel_outlives_a_refresh(console: Page, broker: BrokerProcess) -> None:
    """The list refreshes every 3 s and replaces its buttons; a refresh between the two clicks
    left a fresh Cancel there, which the second click armed instead of cancelling (a CI flake
    of the test above)."""
    code = send(broker, "later", topic="orders", delay=3600)
    go(console, "schedule")
    row = console.locator("#sched-table tbody tr").filter(has_text=code)
    cancel = row.locator("button[data-cancel]")
    expect(cancel).to_have_text("Cancel")
    cancel.click()
    expect(cancel).to_have_text("Click again to cancel")
    row.evaluate("tr => { tr.dataset.before = 'a refresh'; }")
    expect(console.locator("#sched-table tr[data-before]")).to_have_count(0)  # refreshed
    expect(cancel).to_have_text("Click again to cancel")
    cancel.click()
    expect(console.locator("#sched-note")).to_have_text(f"Message {code} cancelled (deleted).")
    expect(console.locator("#sched-table tbody tr")).to_have_class("empty")


def test_a_delay_past_the_calendar_shows_no_nan(console: Page, broker: BrokerProcess) -> None:
    most = (1 << 63) - 1  # DelayTime has no upper bound but the 64-bit range
    code = send(broker, "far", topic="far", delay=most)
    go(console, "schedule")
    row = console.locator("#sched-table tbody tr").filter(has_text=code)
    expect(row).to_contain_text("after the year 275760")  # where a JS Date ends
    expect(row).not_to_contain_text("NaN")


def test_after_deliver_now_the_message_list_says_what_its_delay_column_holds(
    console: Page, broker: BrokerProcess
) -> None:
    """Deliver now rewrites DelayTime to the seconds the message waited (docs/protocol.md
    "Delayed messages"): the Messages list and dialog call the column "Due after (s)" and
    explain it, not "Delay (s)", which read as the delay it was sent with (3600)."""
    code = send(broker, "later", topic="orders", delay=3600)
    waiting = send(broker, "still later", topic="orders", delay=3600)
    go(console, "schedule")
    console.locator(f'#sched-table button[data-code="{code}"]').click()
    expect(console.locator("#sched-note")).to_have_text(f"Message {code} is due now.")
    waited = post(broker, "/Console/GetMessage", messageCode=code)["data"]["DelayTime"]
    assert waited < 3600

    go(console, "messages")
    header = console.locator("#msg-table thead th").nth(5)
    expect(header).to_have_text("Due after (s)")
    expect(header).to_have_attribute("title", re.compile(r"Deliver now .* actually waited"))
    row = console.locator(f'#msg-table tr:has(a[data-code="{code}"])')
    expect(row.locator("td").nth(5)).to_have_text(str(waited))
    still = console.locator(f'#msg-table tr:has(a[data-code="{waiting}"])')
    expect(still.locator("td").nth(5)).to_have_text("3,600")  # a delayed one: its delay
    row.locator("a[data-code]").click()
    term = console.locator("#msg-detail dt", has_text="Due after (s)")
    expect(term).to_have_attribute("title", re.compile(r"seconds from Created until .* due"))
    expect(console.locator("#d-delay")).to_have_text(str(waited))
    shoot(console, "42-due-after-deliver-now")
    console.locator("header .lang-select").select_option("zh")
    expect(header).to_have_text("创建后到期（秒）")
    expect(header).to_have_attribute("title", re.compile("立即投递.*实际等待"))
