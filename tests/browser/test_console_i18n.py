"""The broker's own words in the console's language: a known refusal of the Console API or
storage is shown in Chinese when the console is in Chinese, an unknown text as the broker sent
it (the broker's texts are part of its API: docs/protocol.md "HTTP API")."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

from playwright.sync_api import Page, Route, expect

from kapokmq.storage.layout import unavailable
from tests.browser.conftest import log_in
from tests.browser.helpers import post, send, shoot
from tests.harness import BrokerProcess


def go(page: Page, name: str) -> None:
    page.locator(f"nav a[data-page={name}]").click()
    expect(page.locator(f"#page-{name}")).to_be_visible()


def language(page: Page, lang: str) -> None:
    page.locator("#app .lang-select").select_option(lang)


def test_a_refusal_of_the_console_api_is_shown_in_chinese(
    console: Page, broker: BrokerProcess
) -> None:
    page = console
    code = send(broker, "later", topic="orders", delay=3600)
    language(page, "zh")
    go(page, "schedule")
    deliver = page.locator(f'#sched-table button[data-code="{code}"]')
    expect(deliver).to_have_text("立即投递")
    assert post(broker, "/Console/DeliverNow", messageCode=code) == {"code": 0}  # behind its back
    deliver.click()  # the broker: "no delayed message with that messageCode"
    banner = page.locator("#page-error")
    expect(banner).to_have_text("错误：没有该 messageCode 的延时消息")
    language(page, "en")  # what is shown follows the language
    expect(banner).to_have_text("Error: no delayed message with that messageCode")

    # a time the console's format check lets through and the broker refuses
    language(page, "zh")
    go(page, "messages")
    page.locator("#f-start").fill("2026-13-45")
    page.locator("#f-submit").click()
    expect(banner).to_have_text(
        "错误：startTime 须为 2006-01-02 15:04:05 格式（服务端本地时间），"
        "收到的是 '2026-13-45 00:00:00'"
    )


def test_storage_refusals_and_unknown_texts(console: Page, broker: BrokerProcess) -> None:
    """A refused DelMessage while the disk is full (the broker's text, built by its own
    function), the same cause on the Overview's storage banner, and a text the console
    does not know, which is shown as sent."""
    page = console
    code = send(broker, "hello")
    full = "No space left on device (creating MQDATA.000000000007.wal)"
    answers = [unavailable(full), "a text of a newer broker"]

    def refuse(route: Route) -> None:
        body = json.dumps({"code": -1, "msg": answers[0]})
        route.fulfill(status=200, content_type="application/json", body=body)

    def degraded(route: Route) -> None:
        body = json.dumps({"status": "degraded", "storage": full})
        route.fulfill(status=503, content_type="application/json", body=body)

    page.route("**/Console/DelMessage", refuse)
    language(page, "zh")
    go(page, "messages")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    delete = page.locator("#d-delete")
    delete.click()
    delete.click()  # asked twice
    note = page.locator("#d-note")
    expect(note).to_have_text("错误：存储不可用：磁盘空间不足（creating MQDATA.000000000007.wal）")
    shoot(page, "40-storage-refusal-zh")
    language(page, "en")
    expect(note).to_have_text(f"Error: {unavailable(full)}")

    answers.pop(0)
    language(page, "zh")
    delete.click()
    delete.click()
    expect(note).to_have_text("错误：a text of a newer broker")
    page.locator("#d-close").click()

    page.route("**/healthz", degraded)
    go(page, "overview")
    expect(page.locator("#ov-storage")).to_have_text(
        "存储异常：磁盘空间不足（creating MQDATA.000000000007.wal）。写入恢复前将拒绝生产者的消息。"
    )


def test_in_english_every_known_broker_text_reads_as_sent(console: Page) -> None:
    """The English table holds the broker's texts unchanged: translating a text into English
    gives back what the broker sent, for the whole texts and the patterns alike."""
    texts = [
        "no dead or consumed message with that messageCode",
        "slave of 127.0.0.1:8011",
        "master 127.0.0.1:8011 unreachable (sync.ack: 1)",
        unavailable("Read-only file system (writing snapshot 3)"),
        unavailable("Input/output error (fsync)"),
        "endTime must look like 2006-01-02 15:04:05 (local time), got 'x'",
    ]
    shown = console.evaluate(
        "(texts) => texts.map((text) => window.KapokConsole.t('common.said', { said: text }))",
        texts,
    )
    assert shown == texts
    # a whole text's English entry is the text itself (a typo would never match the broker)
    mismatched = console.evaluate(
        """() => Object.entries(window.KAPOK_I18N.en)
          .filter(([key, text]) => key.startsWith("broker.") && key.includes(" ")
            && key !== `broker.${text}`)"""
    )
    assert mismatched == []


def test_a_master_without_its_slave_says_writes_are_refused(page: Page, broker_factory) -> None:
    """With sync.ack 1 and no slave, /healthz is 503 with the reason under "writes" and no
    "storage": the Overview says writes are refused and why (in the chosen language), not
    "Storage degraded", and clears once the slave is there."""
    master = broker_factory(settings={"sync.isSync": 1, "sync.ack": 1})
    log_in(page, master)
    banner = page.locator("#ov-storage")
    expect(banner).to_have_text(
        "Writes refused: no slave connected (sync.ack: 1). "
        "Producers are refused until the broker accepts writes again."
    )
    language(page, "zh")
    expect(banner).to_have_text(
        "拒绝写入：没有已连接的从节点（sync.ack: 1）。服务端恢复接受写入前，将拒绝生产者的消息。"
    )
    broker_factory(
        settings={
            "sync.isSync": 1,
            "sync.isSlave": 1,
            "sync.masterAddr": "127.0.0.1",
            "sync.masterPort": master.port,
            "sync.ack": 1,
        }
    )
    expect(banner).to_be_hidden(timeout=20_000)


def test_names_the_console_does_not_know_are_shown_as_sent(
    console: Page, broker: BrokerProcess
) -> None:
    """A dead reason, history event or trace event of a newer broker reads as the broker
    named it, not as the console's lookup key ("event.<name>")."""
    page = console
    code = send(broker, "hello")

    def newer(route: Route) -> None:
        answer = route.fetch().json()
        if route.request.url.endswith("/Console/GetMessageTrace"):
            answer = {"code": 0, "data": {"MessageCode": code, "Events": [
                {"Time": 1.5, "Event": "teleported"},
                {"Time": 2.5, "Event": "redelivered", "Reason": "cosmic ray"},
            ]}}  # fmt: skip
        else:
            answer["data"].update(
                Status=2, DeadReason="melted", History=[{"Event": "dead: melted", "Time": 1}]
            )
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route("**/Console/GetMessage", newer)
    page.route("**/Console/GetMessageTrace", newer)
    language(page, "zh")
    go(page, "messages")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#d-reason")).to_have_text("melted")
    expect(page.locator("#d-history")).to_contain_text("dead: melted")
    expect(page.locator("#d-trace li").first).to_contain_text("teleported")
    expect(page.locator("#d-trace li").nth(1)).to_contain_text("重新投递 · cosmic ray")
    expect(page.locator("#msg-detail")).not_to_contain_text("event.")
    expect(page.locator("#msg-detail")).not_to_contain_text("reason.")


def test_every_whole_text_the_console_translates_is_one_the_broker_sends() -> None:
    """The console's table follows the broker: each whole text under "broker." is in the
    broker's source (or is an OS error text, which storage reasons start with), so a
    reworded refusal shows up here rather than as English in a Chinese console."""
    root = Path(__file__).resolve().parents[2]
    i18n = (root / "src/kapokmq/console/i18n.js").read_text()
    english = i18n[: i18n.index("  zh: {")]
    texts = re.findall(r'^\s*"broker\.([^"]* [^"]*)":', english, re.M)
    assert texts, "no broker texts found in i18n.js"
    source = "\n".join(p.read_text() for p in (root / "src/kapokmq").rglob("*.py"))
    os_texts = {os.strerror(n) for n in (errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT)}
    missing = [t for t in texts if t not in os_texts and f'"{t}"' not in source]
    assert missing == []
