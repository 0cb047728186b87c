"""One bad client must not hurt the others (docs/protocol.md "Slow consumers", "Wrong
keys"): against real broker processes, on both WebSocket engines."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.compat.wsclient import MATCHED, PROMPT, consumer, frame, producer, recv_push
from tests.harness import SECRET, BrokerProcess

ENGINES = ["picows", "aiohttp"]


async def metric(session: aiohttp.ClientSession, broker: BrokerProcess, name: str, **labels: str):
    async with session.get(f"{broker.http}/metrics", headers={"secretKey": SECRET}) as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


async def message_status(session: aiohttp.ClientSession, broker: BrokerProcess, code: str) -> int:
    async with session.post(
        f"{broker.http}/Console/GetMessage",
        data={"messageCode": code},
        headers={"secretKey": SECRET},
    ) as resp:
        status: int = (await resp.json())["data"]["Status"]
        return status


async def http_send(session: aiohttp.ClientSession, broker: BrokerProcess, topic: str) -> str:
    form = {"messageData": "m", "topic": topic, "delayTime": "0"}
    async with session.post(
        f"{broker.http}/Producer/Send", data=form, headers={"secretKey": SECRET}
    ) as resp:
        answer = await resp.json()
        assert answer["code"] == 0, answer
        code: str = answer["msg"]
        return code


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_ack_for_another_topics_message_is_ignored(broker_factory, engine):
    broker = broker_factory(settings={"server.wsEngine": engine})
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, broker, "topic-a", "a")
        b = await consumer(session, broker, "topic-b", "b")
        code = await http_send(session, broker, "topic-a")
        assert (await recv_push(a))["MessageCode"] == code
        await b.send_str(code)
        deadline = time.monotonic() + 5
        while await metric(session, broker, "kapokmq_acks_unknown_total", topic="topic-b") != 1:
            assert time.monotonic() < deadline, "the ack was not counted as unknown"
            await asyncio.sleep(0.05)
        assert await message_status(session, broker, code) == -1  # still waiting
        await a.send_str(code)
        while await message_status(session, broker, code) != 1:
            assert time.monotonic() < deadline, "its own consumer's ack did not count"
            await asyncio.sleep(0.05)
        await a.close()
        await b.close()


# ---------------------------------------------------------------------------- key guessing
GUESSERS = 50
GUESS_SECONDS = 4.0


async def guess_over_websocket(broker: BrokerProcess, answers: list[float]) -> None:
    """Reconnects after every 1008 and keeps sending wrong keys; records each answer."""
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.ws_connect(f"{broker.ws}/Consumers/Conn/t/guesser") as ws:
                async for msg in ws:
                    if msg.data == "Please enter the secret key":
                        await ws.send_str("wrong")
                    elif msg.data == "Secret key matching error":
                        answers.append(time.monotonic())


async def guess_over_http(broker: BrokerProcess, answers: list[float]) -> None:
    """Alternates a Console route and HTTP Send (whose common form the lean path serves)."""
    form = {"messageData": "m", "topic": "t", "delayTime": "0"}
    async with aiohttp.ClientSession() as session:
        while True:
            for path in ("/Console/Ping", "/Producer/Send"):
                async with session.post(
                    f"{broker.http}{path}", data=form, headers={"secretKey": "wrong"}
                ) as resp:
                    assert (await resp.json())["code"] == -1
                    answers.append(time.monotonic())


async def right_key_delay(broker: BrokerProcess) -> float:
    """Seconds for a WebSocket handshake and an HTTP request with the right key."""
    start = time.monotonic()
    async with aiohttp.ClientSession() as session:
        ws = await consumer(session, broker, "t", "honest")
        await ws.close()
        async with session.post(f"{broker.http}/Console/Ping", headers={"secretKey": SECRET}) as r:
            assert await r.json() == {"code": 0}
    return time.monotonic() - start


@pytest.mark.parametrize("engine", ENGINES)
async def test_key_guessing_is_throttled_per_address(broker_factory, engine):
    """50 connections from one address guess for 4 s over WebSocket and HTTP together:
    20 answers are free, then at most one per second; the right key is never held up."""
    broker = broker_factory(settings={"server.wsEngine": engine})
    answers: list[float] = []
    start = time.monotonic()
    guessers = [
        asyncio.create_task(guess(broker, answers))
        for guess in [guess_over_websocket, guess_over_http] * (GUESSERS // 2)
    ]
    async with asyncio.timeout(5):  # into the throttle: the 20 free answers are spent
        while len(answers) <= 20:
            await asyncio.sleep(0.02)
    honest = await right_key_delay(broker)
    await asyncio.sleep(start + GUESS_SECONDS - time.monotonic())
    counted = len([t for t in answers if t - start <= GUESS_SECONDS])
    for task in guessers:
        task.cancel()
    await asyncio.gather(*guessers, return_exceptions=True)
    print(
        f"{engine}: {counted} wrong-key answers in {GUESS_SECONDS:g} s to {GUESSERS} "
        f"guessers; right key answered in {honest * 1000:.0f} ms"
    )
    assert 20 <= counted <= 20 + GUESS_SECONDS + 2
    assert honest < 1.0


# ---------------------------------------------------------------------------- slow consumers
REPO = Path(__file__).resolve().parents[2]


class RawSubscriber:
    """A consumer on a bare socket that logs in and then reads nothing until told to (a
    small receive buffer, so the broker sees a full socket soon)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, broker: BrokerProcess, topic: str, cid: str) -> RawSubscriber:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", broker.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            b"GET /Consumers/Conn/%s/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (topic.encode(), cid.encode(), key)
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        self = cls(reader, writer)
        assert await self.frame() == (1, PROMPT.encode())
        writer.write(bytes((0x81, 0x80 | len(SECRET))) + b"\0\0\0\0" + SECRET.encode())
        assert await self.frame() == (1, MATCHED.encode())
        return self

    async def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame."""
        head = await asyncio.wait_for(self.reader.readexactly(2), 10)
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return head[0] & 0x0F, await self.reader.readexactly(n)

    async def until_close(self) -> tuple[int, int, bytes]:
        """Read everything: (pushes seen, close code, close reason)."""
        pushes = 0
        while True:
            opcode, payload = await self.frame()
            if opcode == 8:
                return pushes, struct.unpack("!H", payload[:2])[0], payload[2:]
            pushes += 1


async def wait_for_log(broker: BrokerProcess, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while text not in broker.log():
        assert time.monotonic() < deadline, f"no {text!r} in the broker's log"
        await asyncio.sleep(0.05)
    return next(line for line in broker.log().splitlines() if text in line)


async def run_loadgen(broker: BrokerProcess, *args: str, timeout: float) -> dict[str, float]:
    """benchmarks/loadgen.py against the broker; its result line, as a dict."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def sample_rss(pid: int, until: asyncio.Future[Any]) -> int:
    """Peak RSS of ``pid`` until ``until`` is done, sampled every 50 ms."""
    process = psutil.Process(pid)
    peak = 0
    while not until.done():
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.05)
    return peak


@pytest.mark.timeout(90)
@pytest.mark.parametrize("engine", ENGINES)
async def test_a_pubsub_subscriber_that_does_not_read_is_cut(broker_factory, engine):
    """200,000 100-byte messages fanned out to a subscriber that acks each (loadgen) and
    one that never reads: the silent one is closed 1008 `slow consumer` once what is
    queued for it passes mq.maxPendingBytes; the other gets every message."""
    broker = broker_factory(
        settings={"server.wsEngine": engine, "mq.pushType": 2, "mq.isCleanConsumed": 1}
    )
    n = 200_000
    slow = await RawSubscriber.connect(broker, "fan", "silent-1")
    pid = broker.proc.pid
    before = psutil.Process(pid).memory_info().rss
    started = time.monotonic()
    run = asyncio.ensure_future(
        run_loadgen(broker, "e2e", broker.ws, "--n", str(n), "--topic", "fan", timeout=60)
    )
    peak = await sample_rss(pid, run)
    result = await run
    seconds = time.monotonic() - started
    line = await wait_for_log(broker, "slow consumer", 10)
    assert "silent-1" in line
    pushes, code, reason = await slow.until_close()
    assert (code, reason) == (1008, b"slow consumer")
    async with aiohttp.ClientSession() as session:
        cut = await metric(session, broker, "kapokmq_slow_consumers_total", topic="fan")
    assert cut == 1
    grew = (peak - before) / 2**20
    print(
        f"{engine}: {n} fanned out in {seconds:.1f} s; RSS {before / 2**20:.0f} MB -> peak "
        f"{peak / 2**20:.0f} MB (+{grew:.0f}); the acking subscriber's latency p50 "
        f"{result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms; the silent one got "
        f"{pushes} pushes before its close"
    )
    assert result["deliveries"] == n  # loadgen's subscriber got every message
    # What was written to the silent one is its window (mq.maxInFlight), not every frame:
    # that is the bound. RSS is printed, not asserted: the store's share depends on how far
    # the acking subscriber lags behind the producer (+32-70 MB seen with the silent one cut,
    # +47 MB before the cut existed), so no RSS bound tells the two apart.
    assert pushes <= 1000


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_p2p_consumer_that_does_not_read_gets_no_more_and_its_messages_move(
    broker_factory, engine
):
    """Point-to-point, 64 KiB messages, one consumer that never reads and one that acks:
    once the silent one's socket is full the broker stops pushing to it (instead of
    buffering up to its whole window, 1000 x 64 KiB), so the other gets the rest at once;
    after 5 s of a full socket and no ack it is cut as a slow consumer, and what it held
    goes to the other too."""
    broker = broker_factory(settings={"server.wsEngine": engine})
    n = 250
    data = "x" * (64 * 1024 - 4)
    slow = await RawSubscriber.connect(broker, "work", "silent-2")
    received: set[str] = set()
    async with aiohttp.ClientSession() as session:
        fast = await consumer(session, broker, "work", "reader")
        p = await producer(session, broker, "work")
        started = time.monotonic()
        # One at a time, so each dispatch has a message or two to hand out: pipelined, the
        # messages pile up on a loaded machine and one dispatch may give the silent one
        # up to mq.maxPendingBytes in one batch, before its full socket can pause it.
        for i in range(n):
            await p.send_str(frame(f"{i:04d}{data}"))
            assert (await p.receive_str(timeout=20)) == "ok"

        # The silent one holds what fits in the socket buffers (a few MB), not its window:
        # they are the messages the reader gets only after the cut (5 s without an ack),
        # each one older than a message it already had (the topic is pushed in order).
        # Counted so, not by timing: a quiet gap of 1 s between pushes (the old rule)
        # also happens on a loaded machine.
        held = 0
        newest = -1
        while len(received) < n:
            push = await recv_push(fast, timeout=20.0)
            index = int(push["MessageData"][:4])
            if index < newest:
                held += 1
            newest = max(newest, index)
            received.add(push["MessageCode"])
            await fast.send_str(push["MessageCode"])
        cut = time.monotonic() - started
        line = await wait_for_log(broker, "slow consumer", 10)
        assert "silent-2" in line
        slow.writer.close()
        before_cut = n - held
        print(
            f"{engine}: the reading consumer got {before_cut} of {n} 64 KiB messages "
            f"while the silent one held the rest; all {len(received)} {cut:.1f} s after "
            "the start, once the silent one was cut"
        )
        assert before_cut >= n // 2 + 15  # round-robin alone: n / 2
        assert len(received) == n
        await fast.close()
        await p.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_subscriber_that_reads_but_never_acks_holds_at_most_max_pending_bytes(
    broker_factory, engine
):
    """Pub/sub with isCleanConsumed: one subscriber acks, the other reads every push and
    acks none. What the broker holds for the second (pushed, unacked copies: the acked
    messages are gone from the store, only its window keeps them) stops at
    mq.maxPendingBytes, not at mq.maxInFlight copies; its queue then grows and, acking
    nothing, it is closed 1008 `slow consumer`. The acking one gets everything."""
    bound = 65536
    broker = broker_factory(
        settings={
            "server.wsEngine": engine,
            "mq.pushType": 2,
            "mq.isCleanConsumed": 1,
            "mq.maxPendingBytes": bound,
        }
    )
    n, data = 60, "x" * 16_000
    async with aiohttp.ClientSession() as session:
        acking = await consumer(session, broker, "fan", "acking")
        hoarder = await consumer(session, broker, "fan", "hoarder")
        p = await producer(session, broker, "fan")

        async def ack_all() -> None:
            for _ in range(n):
                await acking.send_str((await recv_push(acking, timeout=10))["MessageCode"])

        acker = asyncio.ensure_future(ack_all())
        for _ in range(n):  # one at a time: the acking one keeps up
            await p.send_str(frame(data))
            assert await p.receive_str(timeout=10) == "ok"
        await asyncio.wait_for(acker, 20)
        held = 0
        while True:
            msg = await hoarder.receive(timeout=10)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            held += 1
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        assert (msg.data, msg.extra) == (1008, "slow consumer")
        assert held <= bound // (len(data) + 128) + 1, held  # 5, not all 60
        await p.close()
        await acking.close()
    assert "hoarder" in await wait_for_log(broker, "slow consumer", 10)
