"""docs/protocol.md "HTTP API": every HTTP route, its exact answer, keys, CORS, 404s."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    KEY_ERROR_BODY,
    api,
    api_raw,
    consumer,
    count_all,
    get_message,
    http_send,
    producer,
    recv_push,
    wait_for,
    wait_status,
)
from tests.harness import SECRET, BrokerProcess

# The broker runs in a zone that is nobody's local time, so a UTC/local mix-up shows.
BROKER_TZ = "KMQ-8:30"
ZONE = timezone(timedelta(hours=8, minutes=30))
CHECK_SPEED = 3
_topics = itertools.count()

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Content-Type,AccessToken,X-CSRF-Token, Authorization, Token, secretKey"
    ),
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Expose-Headers": (
        "Content-Length, Access-Control-Allow-Origin, Access-Control-Allow-Headers, Content-Type"
    ),
    "Access-Control-Allow-Credentials": "true",
}
ROUTES = [
    "/Producer/Send",
    "/Console/Ping",
    "/Console/GetClients",
    "/Console/GetProducers",
    "/Console/GetConsumers",
    "/Console/GetConfig",
    "/Console/CountMessage",
    "/Console/GetMessage",
    "/Console/DelMessage",
    "/Console/GetMessageList",
    "/Console/GetMessageEasy",
    "/Console/GetNodes",
]
MESSAGE_KEYS = [
    "MessageCode",
    "MessageData",
    "Topic",
    "CreateTime",
    "ConsumedTime",
    "DelayTime",
    "Status",
]
CODE_RE = re.compile(r"[0-9a-f]{32}")


def fresh_topic() -> str:
    return f"http{next(_topics)}"


def broker_time(t: float) -> str:
    """A time bound in the broker's local time, Go layout `2006-01-02 15:04:05`."""
    return datetime.fromtimestamp(t, ZONE).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    settings = {"mq.checkSpeed": CHECK_SPEED}
    cwd = tmp_path_factory.mktemp("http")
    with started_broker(cwd, settings, env={"TZ": BROKER_TZ}) as proc:
        yield proc


def assert_cors(resp: aiohttp.ClientResponse) -> None:
    for name, value in CORS.items():
        assert resp.headers.get(name) == value, (name, resp.headers.get(name))


# ------------------------------------------------------------------------ keys
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("key", [None, "wrong", "", "TEST"])
async def test_wrong_or_missing_key(mb, route, key):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        before = await count_all(session, mb)
        status, body, resp = await api_raw(
            session, mb, route, key=key, messageData="x", topic=topic, delayTime=0
        )
        assert status == 200
        assert body == KEY_ERROR_BODY
        assert_cors(resp)
        assert await count_all(session, mb) == before


@pytest.mark.parametrize("header", ["secretKey", "secretkey", "SECRETKEY", "SecretKey"])
async def test_key_header_name_is_case_insensitive(mb, header):
    url = f"{mb.http}/Console/Ping"
    async with aiohttp.ClientSession() as s, s.post(url, headers={header: "test"}) as resp:
        assert resp.status == 200
        assert await resp.read() == b'{"code":0}'


# ------------------------------------------------------------------------ /Producer/Send
@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
async def test_send(mb, multipart):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        status, body, resp = await api_raw(
            session,
            mb,
            "/Producer/Send",
            multipart=multipart,
            messageData="hello 消息",
            topic=topic,
            delayTime=7,
        )
        assert status == 200
        assert_cors(resp)
        reply = orjson.loads(body)
        assert list(reply) == ["code", "msg"] and reply["code"] == 0
        assert CODE_RE.fullmatch(reply["msg"])
        assert body == b'{"code":0,"msg":"%s"}' % reply["msg"].encode()
        stored = await get_message(session, mb, reply["msg"])
        assert stored["MessageData"] == "hello 消息"
        assert stored["Topic"] == topic
        assert stored["DelayTime"] == 7 and stored["Status"] == 0


async def test_send_negative_and_zero_delay(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        for delay in (0, -3, "+0", "-0", "-2"):  # Atoi takes a sign
            code = await http_send(session, mb, topic, "now", delay=delay)
            stored = await get_message(session, mb, code)
            assert stored["DelayTime"] == int(delay) and stored["Status"] == -1


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
# " 5", "1_0", "５" (fullwidth), "١" (Arabic-Indic): Python's int() takes them, Go's Atoi does not
@pytest.mark.parametrize(
    "delay",
    [
        "abc",
        "1.5",
        "5s",
        "",
        " ",
        "99999999999999999999",
        None,
        " 5",
        "5 ",
        "1_0",
        "５",
        "١",
        "0x10",
    ],
)
async def test_send_bad_delay_time(mb, multipart, delay):
    topic = fresh_topic()
    fields: dict[str, Any] = {"messageData": "x", "topic": topic}
    if delay is not None:
        fields["delayTime"] = delay
    async with aiohttp.ClientSession() as session:
        before = await count_all(session, mb)
        status, body, _ = await api_raw(
            session, mb, "/Producer/Send", multipart=multipart, **fields
        )
        assert status == 200
        reply = orjson.loads(body)
        assert list(reply) == ["code", "msg"] and reply["code"] == -1
        msg = reply["msg"]
        assert isinstance(msg, str) and "delayTime" in msg  # readable: names the field
        assert not msg.startswith(("{", "&")), "no leaked Go error struct"
        assert await count_all(session, mb) == before


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
@pytest.mark.parametrize(
    "fields",
    [
        {"messageData": "", "topic": "t"},
        {"messageData": "x", "topic": ""},
        {"messageData": "", "topic": ""},
        {"topic": "t"},
        {"messageData": "x"},
    ],
    ids=["no-data", "no-topic", "neither", "data-missing", "topic-missing"],
)
async def test_send_empty_data_or_topic(mb, multipart, fields):
    async with aiohttp.ClientSession() as session:
        before = await count_all(session, mb)
        status, body, _ = await api_raw(
            session, mb, "/Producer/Send", multipart=multipart, delayTime=0, **fields
        )
        assert status == 200
        assert body == b'{"code":-1,"msg":"Required data cannot be empty"}'
        assert await count_all(session, mb) == before


async def test_send_checks_delay_time_before_empty_fields(mb):
    async with aiohttp.ClientSession() as session:
        reply = await api(session, mb, "/Producer/Send", messageData="", topic="", delayTime="nope")
        assert reply["code"] == -1
        assert reply["msg"] != "Required data cannot be empty"


async def test_send_message_size_limit(mb):
    """B3: messageData above mq.maxMessageBytes (default 1 MiB) is refused with a reason."""
    limit = 1 << 20
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        code = await http_send(session, mb, topic, "x" * limit)
        assert len((await get_message(session, mb, code))["MessageData"]) == limit
        # at the limit in UTF-8 bytes, three times that urlencoded: stored, as over WebSocket
        wide = "中" * (limit // 3)
        code = await http_send(session, mb, topic, wide)
        assert (await get_message(session, mb, code))["MessageData"] == wide
        before = await count_all(session, mb)
        for size in (limit + 1, 2 * limit, 4 * limit):
            status, body, resp = await api_raw(
                session, mb, "/Producer/Send", messageData="y" * size, topic=topic, delayTime=0
            )
            assert status == 200, (size, status, body[:200])
            reply = orjson.loads(body)
            assert reply["code"] == -1 and isinstance(reply["msg"], str) and reply["msg"]
            assert_cors(resp)
        assert await count_all(session, mb) == before


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    (
        "malformed-multipart",
        {
            "data": b"--xx\r\ngarbage",
            "headers": {"Content-Type": "multipart/form-data; boundary=zz"},
        },
    ),
    *(
        (
            f"multipart-{name}",
            {
                "data": b"--zz\r\n" + part + b"\r\n--zz--\r\n",
                "headers": {"Content-Type": "multipart/form-data; boundary=zz"},
            },
        )
        for name, part in (
            ("bad-header", b"garbage\r\n\r\nx"),
            (
                "charset",
                b'Content-Disposition: form-data; name="topic"\r\n'
                b"Content-Type: text/plain; charset=nope\r\n\r\nx",
            ),
            (
                "transfer-encoding",
                b'Content-Disposition: form-data; name="topic"\r\n'
                b"Content-Transfer-Encoding: nope\r\n\r\nx",
            ),
            ("no-name", b"Content-Disposition: form-data\r\n\r\nx"),
            ("truncated", b'Content-Disposition: form-data; name="topic"'),
        )
    ),
    (
        "urlencoded-charset",
        {
            "data": b"messageData=a&topic=t&delayTime=0",
            "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=nope"},
        },
    ),
    (
        "urlencoded-bad-utf8",
        {
            "data": b"messageData=\xff&topic=t&delayTime=0",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ),
    ("json-body", {"json": {"messageData": "a", "topic": "t", "delayTime": 0}}),
    ("query-string-only", {"params": {"messageData": "a", "topic": "t", "delayTime": "0"}}),
]


@pytest.mark.parametrize(("name", "kwargs"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_send_bad_bodies_get_a_reason(mb, name, kwargs):
    headers = {"secretKey": "test", **kwargs.pop("headers", {})}
    async with aiohttp.ClientSession() as session:
        before = await count_all(session, mb)
        url = f"{mb.http}/Producer/Send"
        async with session.post(url, headers=headers, **kwargs) as resp:
            assert resp.status == 200
            reply = orjson.loads(await resp.read())
        assert reply["code"] == -1 and isinstance(reply["msg"], str) and reply["msg"]
        assert await count_all(session, mb) == before


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"json": {"messageData": "a", "topic": "t", "delayTime": 0}}, "application/json"),
        ({"params": {"messageData": "a", "topic": "t", "delayTime": "0"}}, "query string"),
        # a urlencoded body without its Content-Type (aiohttp sends a str as text/plain)
        ({"data": "messageData=a&topic=t&delayTime=0"}, "'text/plain; charset=utf-8'"),
        (
            {"data": b"messageData=a&topic=t&delayTime=0", "skip_auto_headers": ["Content-Type"]},
            "sent without a Content-Type",
        ),
    ],
    ids=["json", "query", "text-plain", "no-content-type"],
)
async def test_send_fields_not_in_a_form_body_are_named(mb, kwargs, says):
    """The original reads only the form body (code -1 for anything else); the reason says
    where the fields went instead of 'delayTime is required'."""
    async with aiohttp.ClientSession() as session:
        url = f"{mb.http}/Producer/Send"
        async with session.post(url, headers={"secretKey": "test"}, **kwargs) as resp:
            reply = orjson.loads(await resp.read())
        assert reply["code"] == -1 and says in reply["msg"], reply
        async with session.post(url, headers={"secretKey": "nope"}, **kwargs) as resp:
            assert await resp.read() == KEY_ERROR_BODY  # the key is checked first


async def test_send_file_upload_instead_of_field(mb):
    form = aiohttp.FormData()
    form.add_field("messageData", b"abc", filename="f.txt")
    form.add_field("topic", "t")
    form.add_field("delayTime", "0")
    async with aiohttp.ClientSession() as session:
        before = await count_all(session, mb)
        url = f"{mb.http}/Producer/Send"
        async with session.post(url, headers={"secretKey": "test"}, data=form) as resp:
            assert resp.status == 200
            reply = orjson.loads(await resp.read())
        assert reply["code"] == -1 and reply["msg"]
        assert await count_all(session, mb) == before


# ------------------------------------------------------------------------ console routes
async def test_ping(mb):
    async with aiohttp.ClientSession() as session:
        for multipart in (False, True):
            status, body, resp = await api_raw(session, mb, "/Console/Ping", multipart=multipart)
            assert (status, body) == (200, b'{"code":0}')
            assert_cors(resp)


async def test_get_clients_and_seed_routes(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        joined = int(time.time())
        c = await consumer(session, mb, topic, "cid-1")
        p = await producer(session, mb, topic, "pid-1")
        reply = await api(session, mb, "/Console/GetClients")
        assert list(reply) == ["code", "consumers", "producers"] and reply["code"] == 0
        consumers = [x for x in reply["consumers"] if x["Topic"] == topic]
        producers = [x for x in reply["producers"] if x["Topic"] == topic]
        assert len(consumers) == 1 and len(producers) == 1
        assert list(consumers[0]) == ["ConsumerId", "Topic", "ConsumerIp", "JoinTime"]
        assert list(producers[0]) == ["ProducerId", "Topic", "ProducerIp", "JoinTime"]
        assert consumers[0]["ConsumerId"] == "cid-1" and producers[0]["ProducerId"] == "pid-1"
        assert consumers[0]["ConsumerIp"] == producers[0]["ProducerIp"] == "127.0.0.1"
        for record in (consumers[0], producers[0]):
            assert type(record["JoinTime"]) is int
            assert joined - 1 <= record["JoinTime"] <= int(time.time()) + 1

        seed_consumers = await api(session, mb, "/Console/GetConsumers")
        assert list(seed_consumers) == ["code", "data"] and seed_consumers["code"] == 0
        assert [x for x in seed_consumers["data"] if x["Topic"] == topic] == consumers
        seed_producers = await api(session, mb, "/Console/GetProducers")
        assert list(seed_producers) == ["code", "data"] and seed_producers["code"] == 0
        assert [x for x in seed_producers["data"] if x["Topic"] == topic] == producers

        await c.close()
        await p.close()

        async def gone() -> bool:
            reply = await api(session, mb, "/Console/GetClients")
            everyone = (reply["consumers"] or []) + (reply["producers"] or [])
            return not any(x["Topic"] == topic for x in everyone)

        await wait_for(gone)


async def test_get_clients_when_empty(mb):
    """Empty lists: the original says null, [] is acceptable."""
    async with aiohttp.ClientSession() as session:

        async def nobody() -> bool:
            reply = await api(session, mb, "/Console/GetClients")
            return reply["consumers"] in (None, []) and reply["producers"] in (None, [])

        await wait_for(nobody)
        for route in ("/Console/GetConsumers", "/Console/GetProducers"):
            assert (await api(session, mb, route))["data"] in (None, [])


A6_DEFAULTS: dict[str, object] = {
    # mq (secretKey is not reported)
    "pushType": 1,
    "messageChanBuffer": 10_000_000,
    "pushMessagesSpeed": 1,
    "pushCount": 1000,
    "pushRetryTime": 300,
    "persistentFile": "MQDATA",
    "isPersistent": None,  # 0, 1 or 2
    "recoveryStrategy": 1,
    "persistentTime": 5,
    "isCleanConsumed": 0,
    "isRePush": 1,
    "isClean": 1,
    "checkSpeed": CHECK_SPEED,  # overridden by --set: reports the effective value
    "cleanTime": 172_800,
    # cluster
    "isCluster": 0,
    "gossipPort": 8021,
    "registryAddr": "127.0.0.1",
    "registryGossipPort": "8041",
    # sync
    "isSync": 0,
    "isSlave": 0,
    "masterProtocol": "ws",
    "masterAddr": "127.0.0.1",
    "masterPort": "8011",
}
STRING_KEYS = {
    "persistentFile",
    "registryAddr",
    "registryGossipPort",
    "masterProtocol",
    "masterAddr",
    "masterPort",
}


async def test_get_config(mb):
    assert len(A6_DEFAULTS) == 23
    async with aiohttp.ClientSession() as session:
        reply = await api(session, mb, "/Console/GetConfig")
        assert list(reply) == ["code", "data"] and reply["code"] == 0
        data = reply["data"]
        missing = set(A6_DEFAULTS) - set(data)
        assert not missing, f"GetConfig lacks {sorted(missing)}"
        for key, default in A6_DEFAULTS.items():
            value = data[key]
            if key in STRING_KEYS:
                assert type(value) is str, (key, value)
            else:
                assert type(value) is int, (key, value)
            if default is not None:
                assert value == default, (key, value)
        assert data["isPersistent"] in (0, 1, 2)
        # A6: the new keys are reported too
        for key in ("maxInFlight", "maxDeliveries", "maxMessageBytes", "fsync", "dataDir"):
            assert key in data, key
        for key in ("tlsCert", "tlsKey", "wsEngine", "allowedOrigins"):  # server.tls*...
            assert key in data, key
        for key in ("secretKey", "consoleKey", "gossipKey", "addr", "port"):
            assert key not in data, key
        assert type(data["maxInFlight"]) is int and type(data["maxMessageBytes"]) is int
        assert data["maxMessageBytes"] == 1 << 20
        assert data["fsync"] in ("always", "everysec", "no")
        # "other numbers ints": no key of ours is a float when its value is whole (mq.trace)
        floats = {k: v for k, v in data.items() if type(v) is float}
        assert not floats, floats


async def test_count_message(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        before = await api(session, mb, "/Console/CountMessage")
        assert list(before) == ["code", "data"] and before["code"] == 0
        assert list(before["data"]) == ["all", "consumed", "delay", "unconsumed"]
        assert all(type(v) is int for v in before["data"].values())
        await http_send(session, mb, topic, "waiting")
        await http_send(session, mb, topic + "d", "delayed", delay=600)
        c = await consumer(session, mb, topic + "c")
        code = await http_send(session, mb, topic + "c", "consumed")
        await recv_push(c)
        await c.send_str(code)

        await wait_status(session, mb, code, 1)
        after = (await api(session, mb, "/Console/CountMessage"))["data"]
        delta = {k: after[k] - before["data"][k] for k in after}
        assert delta == {"all": 3, "consumed": 1, "delay": 1, "unconsumed": 1}
        await c.close()


async def test_get_message_found_and_not_found(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        sent = int(time.time())
        code = await http_send(session, mb, topic, "full data", delay=0)
        status, body, resp = await api_raw(session, mb, "/Console/GetMessage", messageCode=code)
        assert status == 200
        assert_cors(resp)
        reply = orjson.loads(body)
        assert list(reply) == ["code", "data"] and reply["code"] == 0
        data = reply["data"]
        assert list(data) == MESSAGE_KEYS
        assert data["MessageCode"] == code and data["MessageData"] == "full data"
        assert data["Topic"] == topic and data["Status"] == -1
        assert data["ConsumedTime"] == 0 and data["DelayTime"] == 0
        assert sent - 1 <= data["CreateTime"] <= int(time.time()) + 1
        for unknown in ("0" * 32, "nope", ""):
            status, body, _ = await api_raw(session, mb, "/Console/GetMessage", messageCode=unknown)
            assert (status, body) == (200, b'{"code":-1,"data":"error"}')
        status, body, _ = await api_raw(session, mb, "/Console/GetMessage")
        assert (status, body) == (200, b'{"code":-1,"data":"error"}')


async def test_del_message(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        code = await http_send(session, mb, topic, "doomed")
        before = await count_all(session, mb)
        status, body, _ = await api_raw(session, mb, "/Console/DelMessage", messageCode=code)
        assert (status, body) == (200, b'{"code":0}')
        assert await count_all(session, mb) == before - 1
        status, body, _ = await api_raw(session, mb, "/Console/GetMessage", messageCode=code)
        assert body == b'{"code":-1,"data":"error"}'
        # a consumer arriving later does not get it
        c = await consumer(session, mb, topic)
        with pytest.raises(asyncio.TimeoutError):
            await c.receive(timeout=0.3)
        await c.close()
        status, body, _ = await api_raw(session, mb, "/Console/DelMessage", messageCode="0" * 32)
        assert (status, body) == (200, b'{"code":0}')


async def _next_second() -> None:
    """Wait for the wall clock to enter a new second (to get distinct CreateTimes)."""
    now = time.time()
    await asyncio.sleep(int(now) + 1 - now + 0.01)


async def test_get_message_list(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        other = await http_send(session, mb, topic + "x", "other topic")
        waiting = await http_send(session, mb, topic, "w")
        await _next_second()
        delayed = await http_send(session, mb, topic, "d", delay=3600)
        await _next_second()
        c = await consumer(session, mb, topic)
        consumed = await http_send(session, mb, topic, "c")
        got = {(await recv_push(c))["MessageCode"] for _ in range(2)}
        assert got == {waiting, consumed}
        await c.send_str(consumed)

        await wait_status(session, mb, consumed, 1)
        full = {code: await get_message(session, mb, code) for code in (waiting, delayed, consumed)}
        start = broker_time(full[waiting]["CreateTime"])
        end = broker_time(full[consumed]["CreateTime"])

        async def listing(route: str = "/Console/GetMessageList", **fields: Any) -> Any:
            reply = await api(session, mb, route, **fields)
            # a paged answer (our extension) also says how many match across all pages
            paged = "page" in fields or "pageSize" in fields
            keys = ["code", "data", "total"] if paged else ["code", "data"]
            assert list(reply) == keys and reply["code"] == 0, reply
            for m in reply["data"]:
                assert list(m) == MESSAGE_KEYS
                assert m["MessageData"] == ""  # blanked
            return reply["data"]

        everything = await listing(startTime=start, endTime=end, status=3, topic=topic)
        assert [m["MessageCode"] for m in everything] == [consumed, delayed, waiting]
        for m in everything:
            expected = dict(full[m["MessageCode"]], MessageData="")
            assert m == expected
        create_times = [m["CreateTime"] for m in everything]
        assert create_times == sorted(create_times, reverse=True)

        for status, code in ((-1, waiting), (0, delayed), (1, consumed)):
            only = await listing(startTime=start, endTime=end, status=status, topic=topic)
            assert [m["MessageCode"] for m in only] == [code], status

        # the bounds are local time and inclusive
        middle = broker_time(full[delayed]["CreateTime"])
        one = await listing(startTime=middle, endTime=middle, status=3, topic=topic)
        assert [m["MessageCode"] for m in one] == [delayed]
        later = await listing(startTime=end, endTime=broker_time(time.time() + 3600), status=3)
        assert consumed in [m["MessageCode"] for m in later]
        assert waiting not in [m["MessageCode"] for m in later]
        future = await listing(
            startTime=broker_time(time.time() + 3600),
            endTime=broker_time(time.time() + 7200),
            status=3,
            topic=topic,
        )
        assert future == []

        # no topic filter: every topic
        wide = await listing(
            startTime=broker_time(time.time() - 60), endTime=broker_time(time.time() + 60), status=3
        )
        assert {other, waiting, delayed, consumed} <= {m["MessageCode"] for m in wide}

        # paging extension
        page1 = await listing(
            startTime=start, endTime=end, status=3, topic=topic, page=1, pageSize=2
        )
        page2 = await listing(
            startTime=start, endTime=end, status=3, topic=topic, page=2, pageSize=2
        )
        page3 = await listing(
            startTime=start, endTime=end, status=3, topic=topic, page=3, pageSize=2
        )
        assert [m["MessageCode"] for m in page1] == [consumed, delayed]
        assert [m["MessageCode"] for m in page2] == [waiting]
        assert page3 == []
        for page in (1, 2, 3):
            reply = await api(
                session, mb, "/Console/GetMessageList", topic=topic, page=page, pageSize=2
            )
            assert reply["total"] == 3, reply

        # the seed-era route gives the same answer
        for status in (3, -1, 0, 1):
            fields: dict[str, Any] = {
                "startTime": start,
                "endTime": end,
                "status": status,
                "topic": topic,
            }
            assert await listing("/Console/GetMessageEasy", **fields) == await listing(**fields)

        # multipart works too
        status_code, body, _ = await api_raw(
            session,
            mb,
            "/Console/GetMessageList",
            multipart=True,
            startTime=start,
            endTime=end,
            status=3,
            topic=topic,
        )
        assert status_code == 200
        assert [m["MessageCode"] for m in orjson.loads(body)["data"]] == [
            consumed,
            delayed,
            waiting,
        ]
        await c.close()


@pytest.mark.parametrize(
    "fields",
    [
        {"startTime": "yesterday", "endTime": "2030-01-01 00:00:00", "status": 3},
        {"startTime": "2020-01-01 00:00:00", "endTime": "2030-01-01", "status": 3},
        {"startTime": "2020-01-01 00:00:00", "endTime": "2030-01-01 00:00:00", "status": "x"},
        {"startTime": "2020-01-01 00:00:00", "endTime": "2030-01-01 00:00:00", "status": 7},
    ],
)
async def test_get_message_list_bad_input(mb, fields):
    async with aiohttp.ClientSession() as session:
        reply = await api(session, mb, "/Console/GetMessageList", **fields)
        assert list(reply) == ["code", "msg"] and reply["code"] == -1
        assert isinstance(reply["msg"], str) and reply["msg"]


async def test_get_nodes_empty_body_when_not_clustered(mb):
    async with aiohttp.ClientSession() as session:
        status, body, resp = await api_raw(session, mb, "/Console/GetNodes")
        assert (status, body) == (200, b"")
        assert_cors(resp)


# ------------------------------------------------------------------------ CORS, OPTIONS, 404
@pytest.mark.parametrize("route", ROUTES)
async def test_cors_headers_on_api_routes(mb, route):
    async with aiohttp.ClientSession() as session:
        status, _, resp = await api_raw(session, mb, route)
        assert status == 200
        assert_cors(resp)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("POST", "/Console/Nope"),
        ("POST", "/Producer/Sendx"),
        ("POST", "/Console"),
        ("GET", "/Registry/GetNodes/extra"),
        ("PUT", "/nothing/here"),
        ("GET", "/Producers/Conn/t"),
        ("GET", "/Consumers/Conn/t/c/extra"),
        ("GET", "/Console/Ping"),  # a known route with the wrong method
        ("DELETE", "/Producer/Send"),
    ],
)
async def test_unknown_routes_404_with_cors(mb, method, path):
    url = f"{mb.http}{path}"
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, headers={"secretKey": "test"}) as r,
    ):
        assert r.status == 404
        assert_cors(r)
        assert await r.read() == b"404 page not found"  # Gin's text, the same for every 404


@pytest.mark.parametrize(
    "path",
    ["/Console/Ping", "/Producer/Send", "/nope", "/Producers/Conn/t/p", "/", "/Console/GetNodes"],
)
async def test_any_options_is_204_empty(mb, path):
    async with aiohttp.ClientSession() as session, session.options(f"{mb.http}{path}") as resp:
        assert resp.status == 204
        assert await resp.read() == b""
        assert_cors(resp)


async def test_root_serves_a_page(mb):
    async with aiohttp.ClientSession() as session, session.get(f"{mb.http}/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert b"<html" in (await resp.read()).lower()


# ------------------------------------------------------------------------ B7
async def test_healthz(mb):
    async with aiohttp.ClientSession() as session, session.get(f"{mb.http}/healthz") as resp:
        assert resp.status == 200
        await resp.read()


async def test_metrics(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        code = await http_send(session, mb, topic, "counted")
        await recv_push(c)
        await c.send_str(code)

        await wait_status(session, mb, code, 1)
        async with session.get(f"{mb.http}/metrics", headers={"secretKey": SECRET}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        families = list(text_string_to_metric_families(text))
        names = [f.name for f in families]
        per_topic = {
            f.name
            for f in families
            for s in f.samples
            if s.labels.get("topic") == topic and s.value >= 1
        }
        # messages in / out / acked per topic, redelivered per topic, backlog, in-flight,
        # connections
        for pattern in (r"in\b", r"out\b", r"ack"):
            assert any(re.search(pattern, n) for n in per_topic), (pattern, per_topic)
        assert any("redeliver" in n for n in names)
        assert any("backlog" in n for n in names)
        assert any("in_flight" in n or "inflight" in n for n in names)
        assert any("consumer" in n or "connection" in n for n in names)
        await c.close()
