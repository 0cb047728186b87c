"""The web console in a real Chromium against a real broker (issue 4)."""

from __future__ import annotations

import re
import signal
import threading
from datetime import datetime, timedelta

from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import Watched, log_in
from tests.browser.helpers import connect_client, post, send, shoot
from tests.cluster.harness import cluster_broker, node_name, registry_process
from tests.harness import BrokerProcess

XSS = "<img src=x onerror=alert(1)>"


def today_dot(page: Page) -> Locator:
    return page.locator("#ov-chart circle.dot").last


def go(page: Page, name: str) -> None:
    page.locator(f"nav a[data-page={name}]").click()
    expect(page.locator(f"#page-{name}")).to_be_visible()


def search(page: Page, topic: str = "", status: str = "3") -> None:
    page.locator("#f-topic").fill(topic)
    page.locator("#f-status").select_option(status)
    page.locator("#f-submit").click()


# ---------------------------------------------------------------------------- login
def test_log_in_shows_the_overview(page: Page, broker: BrokerProcess) -> None:
    page.goto(broker.http + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    shoot(page, "01-login")
    log_in(page, broker)
    expect(page.locator("#ov-ping")).to_have_text("Broker up")
    expect(page.locator("#count-all")).to_have_text("0")
    assert page.evaluate("sessionStorage.getItem('kapokmq.secretKey')") == "test"
    # a reload keeps the session (sessionStorage), logging out forgets it
    page.reload()
    expect(page.locator("#app")).to_be_visible()
    page.locator("#logout").click()
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('kapokmq.secretKey')") is None


def test_wrong_key_shows_a_clear_error(page: Page, broker: BrokerProcess) -> None:
    log_in(page, broker, key="not-the-key")
    error = page.locator("#login-error")
    expect(error).to_be_visible()
    expect(error).to_have_text("Wrong secret key: the broker rejected it.")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('kapokmq.secretKey')") is None
    shoot(page, "02-login-wrong-key")
    # and the right key still works afterwards
    log_in(page, broker)
    expect(error).to_be_hidden()


def test_with_a_console_key_only_that_key_logs_in(page: Page, broker_factory) -> None:
    broker = broker_factory(settings={"mq.consoleKey": "admin-key"})
    page.goto(broker.http + "/")
    expect(page.locator("#login .hint")).to_contain_text("mq.consoleKey")
    page.locator("#login-key").fill("test")  # the secret key opens WebSockets, not this
    page.locator("#login-submit").click()
    expect(page.locator("#login-error")).to_have_text("Wrong secret key: the broker rejected it.")
    page.locator("#login-key").fill("admin-key")
    page.locator("#login-submit").click()
    expect(page.locator("#health")).to_have_text("Broker up")
    expect(page.locator("#count-all")).to_have_text("0")


# ---------------------------------------------------------------------------- overview
def test_counters_rates_and_chart_follow_published_messages(
    console: Page, broker: BrokerProcess
) -> None:
    page = console
    expect(page.locator("#count-all")).to_have_text("0")
    expect(today_dot(page)).to_have_attribute("data-count", "0")
    expect(page.locator("#ov-topics tbody")).to_contain_text("No topic yet.")

    send(broker, "one", topic="orders")
    send(broker, "two", topic="orders")
    send(broker, "later", topic="orders", delay=3600)
    expect(page.locator("#count-all")).to_have_text("3")
    expect(page.locator("#count-unconsumed")).to_have_text("2")
    expect(page.locator("#count-delay")).to_have_text("1")
    expect(page.locator("#count-consumed")).to_have_text("0")
    expect(page.locator("#count-dead")).to_have_text("0")
    expect(today_dot(page)).to_have_attribute("data-count", "3")
    row = page.locator("#ov-topics tbody tr", has_text="orders")
    expect(row.locator("td").nth(1)).to_have_text("2")  # backlog: the delayed one is not ready

    # once the burst above is out of the window the rate is 0.0; a steady trickle raises it
    expect(page.locator("#rate-in")).to_have_text("0.0")
    stop = threading.Event()
    sent: list[str] = []

    def trickle() -> None:
        for i in range(100):  # at most ~10 s
            if stop.wait(0.1):
                return
            sent.append(send(broker, f"trickle {i}", topic="trickle"))

    worker = threading.Thread(target=trickle, daemon=True)
    worker.start()
    try:
        expect(page.locator("#rate-in")).to_have_text(re.compile(r"^(?!0\.0$)\d+\.\d$"))
    finally:
        stop.set()
        worker.join(5)
    assert sent
    total = str(3 + len(sent))
    expect(page.locator("#count-all")).to_have_text(total)
    expect(today_dot(page)).to_have_attribute("data-count", total)
    shoot(page, "03-overview")


def test_out_and_acked_rates_with_a_consumer(console: Page, broker: BrokerProcess) -> None:
    page = console
    consumer = page.context.new_page()
    connect_client(consumer, broker, "Consumers", "work", "worker-1", ack=True)
    stop = threading.Event()

    def trickle() -> None:
        for i in range(100):  # at most ~10 s
            if stop.wait(0.1):
                return
            send(broker, f"job {i}", topic="work")

    worker = threading.Thread(target=trickle, daemon=True)
    worker.start()
    nonzero = re.compile(r"^(?!0\.0$)\d+\.\d$")
    try:
        expect(page.locator("#rate-out")).to_have_text(nonzero)
        expect(page.locator("#rate-acked")).to_have_text(nonzero)
    finally:
        stop.set()
        worker.join(5)
    expect(page.locator("#count-consumed")).not_to_have_text("0")
    row = page.locator("#ov-topics tbody tr", has_text="work")
    expect(row.locator("td").nth(3)).to_have_text("1")  # consumers
    consumer.close()


# ---------------------------------------------------------------------------- messages
def test_search_view_and_delete_a_message(console: Page, broker: BrokerProcess) -> None:
    page = console
    code = send(broker, '{"order": 7, "items": ["tea", "cake"]}', topic="orders")
    other = send(broker, "plain text", topic="other")
    go(page, "messages")

    search(page, topic="orders", status="-1")
    rows = page.locator("#msg-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(code)
    expect(rows.first).to_contain_text("Unconsumed")
    expect(page.locator("#msg-summary")).to_have_text("1 messages match")

    search(page, topic="orders", status="1")  # consumed: none yet
    expect(page.locator("#msg-table tbody")).to_have_text("No message matches.")

    # time range (local time, as the API reads it): tomorrow onwards finds nothing ...
    fmt = "%Y-%m-%d %H:%M:%S"  # as the inputs show it (a T instead of the space works too)
    now = datetime.now()
    page.locator("#f-start").fill((now + timedelta(days=1)).strftime(fmt))
    search(page, topic="orders", status="3")
    expect(page.locator("#msg-table tbody")).to_have_text("No message matches.")
    # ... the hour around now finds it
    page.locator("#f-start").fill((now - timedelta(hours=1)).strftime(fmt))
    page.locator("#f-end").fill((now + timedelta(hours=1)).strftime(fmt))
    search(page, topic="orders", status="3")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(code)

    page.locator("#f-reset").click()  # reset clears the filters and searches again
    expect(rows).to_have_count(2)
    shoot(page, "04-messages")

    page.locator(f'#msg-table a[data-code="{code}"]').click()
    dialog = page.locator("#msg-detail")
    expect(dialog).to_be_visible()
    expect(page.locator("#d-code")).to_have_text(code)
    expect(page.locator("#d-kind")).to_have_text("JSON, pretty-printed")
    expect(page.locator("#d-data")).to_have_text(
        '{\n  "order": 7,\n  "items": [\n    "tea",\n    "cake"\n  ]\n}'
    )
    expect(page.locator("#d-requeue")).to_be_hidden()  # only dead or consumed ones
    shoot(page, "05-message-detail")

    delete = page.locator("#d-delete")
    delete.click()
    expect(delete).to_have_text("Click again to delete")
    delete.click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#msg-note")).to_have_text(f"Message {code} deleted.")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(other)
    assert post(broker, "/Console/GetMessage", messageCode=code) == {"code": -1, "data": "error"}


def test_plain_text_is_shown_as_it_is(console: Page, broker: BrokerProcess) -> None:
    page = console
    send(broker, "  hello\n  world  ", topic="text")
    go(page, "messages")
    page.locator("#msg-table tbody button").first.click()
    expect(page.locator("#d-kind")).to_have_text("Text")
    assert page.locator("#d-data").text_content() == "  hello\n  world  "


def test_paging(console: Page, broker: BrokerProcess) -> None:
    page = console
    for i in range(25):
        send(broker, f"m{i}", topic="paged")
    go(page, "messages")
    rows = page.locator("#msg-table tbody tr")
    expect(rows).to_have_count(20)
    expect(page.locator("#pg-info")).to_have_text("Page 1 of 2")
    expect(page.locator("#pg-prev")).to_be_disabled()
    page.locator("#pg-next").click()
    expect(page.locator("#pg-info")).to_have_text("Page 2 of 2")
    expect(rows).to_have_count(5)
    expect(page.locator("#pg-next")).to_be_disabled()


def test_message_data_is_rendered_as_text_never_html(
    watched: Watched, broker: BrokerProcess
) -> None:
    page = watched.page
    code = send(broker, XSS, topic="xss")
    send(broker, "x", topic="<b onmouseover=alert(2)>topic</b>")
    log_in(page, broker)
    expect(page.locator("#ov-topics tbody")).to_contain_text("<b onmouseover=alert(2)>topic</b>")
    go(page, "messages")
    search(page, topic="xss")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#d-data")).to_have_text(XSS)
    assert page.locator("#d-data").text_content() == XSS
    assert page.locator("img").count() == 0
    assert page.locator("b").count() == 0
    page.locator("#d-close").click()
    go(page, "overview")
    expect(page.locator("#ov-topics tbody")).to_contain_text("<b onmouseover=alert(2)>topic</b>")
    page.locator("#ov-topics tbody").hover()
    assert page.locator("img, b").count() == 0
    assert watched.dialogs == []


def test_requeue_a_dead_message(browser: Browser, watched: Watched, broker_factory) -> None:
    broker = broker_factory(settings={"mq.maxDeliveries": 1, "mq.pushRetryTime": 1})
    page = watched.page
    # a consumer that never acks: its one delivery times out and the message dies
    consumer = page.context.new_page()
    connect_client(consumer, broker, "Consumers", "jobs", "lazy")
    code = send(broker, "doomed", topic="jobs")
    log_in(page, broker)
    expect(page.locator("#count-dead")).to_have_text("1")
    consumer.close()  # so the re-queued message stays waiting

    go(page, "messages")
    search(page, topic="jobs", status="2")
    page.locator(f'#msg-table a[data-code="{code}"]').click()
    expect(page.locator("#d-status")).to_have_text("Dead")
    page.locator("#d-requeue").click()
    expect(page.locator("#msg-note")).to_have_text("Message re-queued.")
    expect(page.locator("#d-status")).to_have_text("Unconsumed")
    expect(page.locator("#d-requeue")).to_be_hidden()
    assert post(broker, "/Console/GetMessage", messageCode=code)["data"]["Status"] == -1


# ---------------------------------------------------------------------------- other pages
def test_clients_config_and_cluster_pages(console: Page, broker: BrokerProcess) -> None:
    page = console
    clients = page.context.new_page()
    connect_client(clients, broker, "Producers", "orders", "producer-1")
    connect_client(clients, broker, "Consumers", "orders", "consumer-1")

    go(page, "clients")
    producer_row = page.locator("#producers tbody tr")
    expect(producer_row).to_have_count(1)
    expect(producer_row).to_contain_text("producer-1")
    expect(producer_row).to_contain_text("orders")
    expect(producer_row).to_contain_text("127.0.0.1")
    expect(producer_row.locator("td").nth(3)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:"))
    expect(page.locator("#consumers tbody tr")).to_contain_text("consumer-1")
    shoot(page, "06-clients")

    go(page, "config")
    sections = page.locator("#config-sections > .card")
    expect(sections).to_have_count(4)
    expect(sections.locator("h2")).to_have_text(["server:", "mq:", "cluster:", "sync:"])
    mq = page.locator('#config-sections [data-section="mq"]')
    expect(mq.locator("tr", has_text="mq.pushType")).to_contain_text("1")
    expect(mq.locator("tr", has_text="mq.pushRetryTime")).to_contain_text("300")
    expect(mq).not_to_contain_text("secretKey")
    expect(page.locator('#config-sections [data-section="cluster"]')).to_contain_text(
        "cluster.registryGossipPort"
    )
    shoot(page, "07-config")

    go(page, "cluster")
    expect(page.locator("#cluster-off")).to_be_visible()
    expect(page.locator("#cluster-off h2")).to_have_text("Not clustered")
    expect(page.locator("#cluster-on")).to_be_hidden()
    shoot(page, "08-cluster")

    clients.close()  # the producer and consumer leave
    go(page, "clients")
    expect(page.locator("#producers tbody")).to_have_text("None connected.")


def test_broker_down_is_shown(console: Page, broker: BrokerProcess) -> None:
    page = console
    expect(page.locator("#ov-ping")).to_have_text("Broker up")
    broker.stop()
    expect(page.locator("#ov-ping")).to_have_text("Broker down")
    expect(page.locator("#health")).to_have_class(re.compile(r"\bdown\b"))


# ---------------------------------------------------------------------------- language
def test_language_switch_changes_the_labels(console: Page, broker: BrokerProcess) -> None:
    page = console
    send(broker, "hello", topic="orders")
    expect(page.locator("nav a[data-page=overview]")).to_have_text("Overview")
    expect(page.locator("#count-all")).to_have_text("1")
    page.locator("header .lang-select").select_option("zh")
    expect(page.locator("nav a[data-page=overview]")).to_have_text("概览")
    expect(page.locator("nav a[data-page=messages]")).to_have_text("消息")
    expect(page.locator("#ov-counts .label").first).to_have_text("全部")
    expect(page.locator("#health")).to_have_text("服务正常")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("combobox", name="语言", exact=True)).to_be_visible()  # its name
    shoot(page, "09-overview-zh")

    go(page, "messages")
    expect(page.locator("#f-submit")).to_have_text("查询")
    expect(page.locator("#msg-table tbody .status").first).to_have_text("未消费")
    expect(page.locator("#msg-summary")).to_have_text("共 1 条消息")
    shoot(page, "10-messages-zh")

    # the choice survives a reload and reaches the login page
    page.reload()
    expect(page.locator("nav a[data-page=messages]")).to_have_text("消息")
    page.locator("#logout").click()
    expect(page.locator("label[for=login-key]")).to_have_text("密钥")
    page.locator("#login .lang-select").select_option("en")
    expect(page.locator("label[for=login-key]")).to_have_text("Secret key")


def test_a_hung_broker_shows_as_down(console: Page, broker: BrokerProcess) -> None:
    page = console
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)  # accepts connections (backlog) but never answers
    try:
        expect(page.locator("#ov-ping")).to_have_text("Broker down", timeout=20_000)
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    expect(page.locator("#ov-ping")).to_have_text("Broker up", timeout=20_000)


def test_cluster_node_list(page: Page, tmp_path) -> None:
    """A real registry with two clustered brokers: the Cluster page lists both."""
    registry = registry_process(tmp_path)
    registry.start()
    brokers = [cluster_broker(tmp_path, registry.gossip_port).start() for _ in range(2)]
    try:
        log_in(page, brokers[0])
        go(page, "cluster")
        expect(page.locator("#cluster-on")).to_be_visible()
        expect(page.locator("#cluster-off")).to_be_hidden()
        for broker in brokers:  # the page refreshes until gossip has told both nodes
            expect(page.locator("#nodes")).to_contain_text(node_name(broker), timeout=15_000)
        expect(page.locator("#nodes-count")).to_have_text("2 nodes")
        shoot(page, "12-cluster-nodes")
    finally:
        for proc in (*brokers, registry):
            proc.cleanup()
