"""Load generator (a separate process): picows WebSocket clients, kept cheap on purpose.

    python -m benchmarks.loadgen SCENARIO URL [--n N] [options]

Scenarios: e2e (1 producer + K consumers acking each push: K=1 is point-to-point, K>1 with
a pub/sub broker is fan-out), rate (the same at a fixed send rate, for latency), topics
(T producers and T consumers, one pair per topic), fill (publish only), delay (delayed
messages, error of their delivery time), http (HTTP Send from C keep-alive connections).
Prints one JSON line: throughput, latency percentiles and this process's own CPU seconds.

Cost per message is kept low so the broker, not the generator, is measured: every frame
is built before the clock starts (client frames are masked with the all-zero key, which
leaves the payload bytes unchanged), a burst of frames goes out in one write, acks are
collected per received buffer and written once, and latency bookkeeping is one clock
read per burst on the send side and one per message on the receive side (p2p delivery
of one producer's messages is in order, so the receiver needs no lookup; the order is
checked on a sample).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

SECRET = b"test"
PROMPT = b"Please enter the secret key"
MATCHED = b"Secret key matching succeeded"
CODE = slice(16, 48)  # {"MessageCode":"<32 hex>"
INDEX = slice(65, 75)  # ..."MessageData":"<10 digits>
ACK_HEADER = bytes((0x81, 0x80 | 32)) + b"\0\0\0\0"  # masked text frame, 32-byte payload
perf_counter = time.perf_counter


def client_frame(payload: bytes) -> bytes:
    """A masked client text frame with the zero mask key (payload bytes stay as they are)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, 0x80 | n)) + b"\0\0\0\0" + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 0x80 | 126, n) + b"\0\0\0\0" + payload
    return struct.pack("!BBQ", 0x81, 0x80 | 127, n) + b"\0\0\0\0" + payload


def payload(i: int, delay: int = 0, size: int = 100, message_id: bool = False) -> bytes:
    data = f"{i:010d}".encode() + b"x" * (size - 10)  # 100-byte MessageData by default
    if message_id:  # a producer dedup id per message (docs/protocol.md "Dedup")
        return b'{"MessageData":"%s","DelayTime":%d,"MessageId":"id-%d"}' % (data, delay, i)
    return b'{"MessageData":"' + data + b'","DelayTime":%d}' % delay


def frames(n: int, delay: int = 0, size: int = 100, message_id: bool = False) -> list[bytes]:
    return [client_frame(payload(i, delay, size, message_id)) for i in range(n)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# read per frame: an Enum member lookup (WSMsgType.TEXT) costs ~200 ns on Python 3.11
_TEXT = WSMsgType.TEXT


class Client(WSListener):
    """Handshake, then hands every frame to ``on_message``."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: WSTransport | None = None
        self.raw: Any = None
        self.ready = self.loop.create_future()
        self.authed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.authed and frame.msg_type is _TEXT:
            self.on_message(frame)
            return
        if frame.msg_type is WSMsgType.CLOSE:
            transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if data == PROMPT:
            transport.send(WSMsgType.TEXT, SECRET)
        elif data == MATCHED and not self.authed:
            self.authed = True
            self.ready.set_result(None)

    def on_message(self, frame: WSFrame) -> None:
        raise NotImplementedError


class Producer(Client):
    """Keeps up to ``window`` frames unanswered; refills in bursts of half a window."""

    def __init__(self, frames: list[bytes], window: int) -> None:
        super().__init__()
        self.frames = frames
        self.n = len(frames)
        self.window = window
        self.sent = 0
        self.oks = 0
        self.sent_at = [0.0] * self.n
        self.done = self.loop.create_future()

    def pump(self) -> None:
        limit = min(self.n, self.oks + self.window)
        start = self.sent
        if limit <= start:
            return
        self.sent_at[start:limit] = [perf_counter()] * (limit - start)
        self.raw.write(b"".join(self.frames[start:limit]))
        self.sent = limit

    def on_message(self, frame: WSFrame) -> None:
        if frame.payload_size != 2:
            raise RuntimeError(f"unexpected producer reply {frame.get_payload_as_bytes()!r}")
        self.oks += 1
        if self.oks == self.n:
            self.done.set_result(None)
        elif self.sent - self.oks <= self.window >> 1:
            self.pump()


class PacedProducer(Producer):
    """Sends at ``rate`` frames per second, in 1 ms steps."""

    def start(self, rate: float) -> None:
        self.rate = rate
        self.t0 = perf_counter()
        self.tick()

    def tick(self) -> None:
        now = perf_counter()
        due = min(self.n, int((now - self.t0) * self.rate) + 1)
        start = self.sent
        if due > start:
            self.sent_at[start:due] = [now] * (due - start)
            self.raw.write(b"".join(self.frames[start:due]))
            self.sent = due
        if self.sent < self.n:
            self.loop.call_later(0.001, self.tick)

    def on_message(self, frame: WSFrame) -> None:
        self.oks += 1
        if self.oks == self.n:
            self.done.set_result(None)


class Consumer(Client):
    """Acks every push (one write per received buffer) and records latency."""

    def __init__(
        self, n: int, sent_at: list[float] | None, check_order: bool, by_index: bool = False
    ) -> None:
        super().__init__()
        self.n = n
        self.received = 0
        self.sent_at = sent_at
        self.check_order = check_order
        self.by_index = by_index
        self.latencies: list[float] = []
        self.acks: list[bytes] = []
        self.done = self.loop.create_future()

    def on_message(self, frame: WSFrame) -> None:
        data = frame.get_payload_as_bytes()
        acks = self.acks
        acks.append(ACK_HEADER + data[CODE])
        received = self.received
        sent_at = self.sent_at
        if sent_at is not None:
            i = int(data[INDEX]) if self.by_index else received
            self.latencies.append(perf_counter() - sent_at[i])
        if self.check_order and not received & 1023 and int(data[INDEX]) != received:
            raise RuntimeError(f"push {received} carries message {int(data[INDEX])}")
        self.received = received = received + 1
        if frame.last_in_buffer or received == self.n:
            self.raw.write(b"".join(acks))
            acks.clear()
        if received == self.n:
            self.done.set_result(None)


async def connect(listener: Client, url: str) -> None:
    await ws_connect(lambda: listener, url)


async def connect_all(pairs: list[tuple[Client, str]], parallel: int = 50) -> None:
    for i in range(0, len(pairs), parallel):
        chunk = pairs[i : i + parallel]
        await asyncio.gather(*(connect(c, u) for c, u in chunk))
        await asyncio.wait_for(asyncio.gather(*(c.ready for c, _ in chunk)), 30)


def latency_stats(latencies: list[float]) -> dict[str, float]:
    lat = sorted(latencies)
    return {
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "p999_ms": percentile(lat, 0.999) * 1000,
    }


async def measure(start: Callable[[], None], *waits: asyncio.Future[None]) -> tuple[float, float]:
    cpu0, t0 = cpu_seconds(), perf_counter()
    start()
    await asyncio.wait_for(asyncio.gather(*waits), 900)
    return perf_counter() - t0, cpu_seconds() - cpu0


def disconnect(*clients: Client) -> None:
    for c in clients:
        if c.transport is not None:
            c.transport.disconnect()


async def e2e(args: argparse.Namespace) -> dict[str, Any]:
    """1 producer, K consumers; with K > 1 against a pub/sub broker every consumer gets all."""
    producer = Producer(frames(args.n, message_id=args.message_ids), args.window)
    consumers = [
        Consumer(args.n, producer.sent_at, check_order=not args.ceiling)
        for _ in range(args.consumers)
    ]
    url = args.url
    await connect_all(
        [(c, f"{url}/Consumers/Conn/{args.topic}/c{i}") for i, c in enumerate(consumers)]
    )
    await connect_all([(producer, f"{url}/Producers/Conn/{args.topic}/p")])
    elapsed, cpu = await measure(producer.pump, producer.done, *(c.done for c in consumers))
    disconnect(producer, *consumers)
    deliveries = args.n * len(consumers)
    return {
        "n": args.n,
        "deliveries": deliveries,
        "seconds": elapsed,
        "msgs_per_s": deliveries / elapsed,
        **latency_stats([x for c in consumers for x in c.latencies]),
        "loadgen_cpu_s": cpu,
    }


async def rate(args: argparse.Namespace) -> dict[str, Any]:
    """1 producer at a fixed rate, 1 consumer: latency when the broker is not saturated."""
    producer = PacedProducer(frames(args.n), args.n)
    consumer = Consumer(args.n, producer.sent_at, check_order=not args.ceiling)
    await connect_all([(consumer, f"{args.url}/Consumers/Conn/{args.topic}/c")])
    await connect_all([(producer, f"{args.url}/Producers/Conn/{args.topic}/p")])
    elapsed, cpu = await measure(lambda: producer.start(args.rate), producer.done, consumer.done)
    disconnect(producer, consumer)
    return {
        "n": args.n,
        "deliveries": args.n,
        "seconds": elapsed,
        "msgs_per_s": args.n / elapsed,
        **latency_stats(consumer.latencies),
        "loadgen_cpu_s": cpu,
    }


async def topics(args: argparse.Namespace) -> dict[str, Any]:
    """T topics, one producer and one consumer each, N/T messages per topic."""
    per = args.n // args.topics
    shared = frames(per)
    producers = [Producer(shared, min(per, args.window)) for _ in range(args.topics)]
    consumers = [Consumer(per, p.sent_at, check_order=False) for p in producers]
    url = args.url
    await connect_all([(c, f"{url}/Consumers/Conn/t{i}/c{i}") for i, c in enumerate(consumers)])
    await connect_all([(p, f"{url}/Producers/Conn/t{i}/p{i}") for i, p in enumerate(producers)])

    def start() -> None:
        for p in producers:
            p.pump()

    elapsed, cpu = await measure(start, *(p.done for p in producers), *(c.done for c in consumers))
    disconnect(*producers, *consumers)
    n = per * args.topics
    return {
        "n": n,
        "deliveries": n,
        "seconds": elapsed,
        "msgs_per_s": n / elapsed,
        **latency_stats([x for c in consumers for x in c.latencies]),
        "loadgen_cpu_s": cpu,
    }


async def fill(args: argparse.Namespace) -> dict[str, Any]:
    """Publish N messages with no consumer (ingest rate; memory per queued message)."""
    producer = Producer(frames(args.n), args.window)
    await connect_all([(producer, f"{args.url}/Producers/Conn/{args.topic}/fill")])
    elapsed, cpu = await measure(producer.pump, producer.done)
    disconnect(producer)
    return {"n": args.n, "seconds": elapsed, "msgs_per_s": args.n / elapsed, "loadgen_cpu_s": cpu}


async def delay(args: argparse.Namespace) -> dict[str, Any]:
    """N messages with DelayTime D sent at a fixed rate: error = arrival - (send + D)."""
    producer = PacedProducer(frames(args.n, delay=args.delay), args.n)
    consumer = Consumer(args.n, producer.sent_at, check_order=False, by_index=True)
    await connect_all([(consumer, f"{args.url}/Consumers/Conn/{args.topic}/c")])
    await connect_all([(producer, f"{args.url}/Producers/Conn/{args.topic}/p")])
    elapsed, cpu = await measure(lambda: producer.start(args.rate), producer.done, consumer.done)
    disconnect(producer, consumer)
    errors = sorted(x - args.delay for x in consumer.latencies)
    return {
        "n": args.n,
        "seconds": elapsed,
        "delay_s": args.delay,
        "early": sum(1 for e in errors if e < 0),
        "err_p50_ms": percentile(errors, 0.5) * 1000,
        "err_p99_ms": percentile(errors, 0.99) * 1000,
        "err_max_ms": errors[-1] * 1000 if errors else float("nan"),
        "loadgen_cpu_s": cpu,
    }


class HttpClient(asyncio.Protocol):
    """One keep-alive connection sending HTTP Send requests back to back."""

    def __init__(self, request: bytes, shared: dict[str, Any]) -> None:
        self.request = request
        self.shared = shared
        self.buf = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def send(self) -> None:
        shared = self.shared
        if shared["issued"] < shared["n"]:
            shared["issued"] += 1
            self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        shared = self.shared
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            i = buf.find(b"Content-Length: ", 0, end)
            if i < 0:
                raise RuntimeError(f"no Content-Length in {buf[:end]!r}")
            length = int(buf[i + 16 : buf.index(b"\r\n", i)])
            total = end + 4 + length
            if len(buf) < total:
                break
            if not buf.startswith(b'{"code":0', end + 4):
                shared["errors"] += 1
            buf = buf[total:]
            shared["completed"] += 1
            if shared["completed"] == shared["n"]:
                shared["done"].set_result(None)
            self.send()
        self.buf = buf


async def http(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.url.removeprefix("http://").removeprefix("ws://").split(":")
    body = b"topic=%s&messageData=%s&delayTime=0" % (args.topic.encode(), b"x" * 100)
    request = (
        b"POST /Producer/Send HTTP/1.1\r\nHost: %s\r\nsecretKey: test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), len(body), body)
    )
    loop = asyncio.get_running_loop()
    shared: dict[str, Any] = {
        "n": args.n,
        "issued": 0,
        "completed": 0,
        "errors": 0,
        "done": loop.create_future(),
    }
    conns = []
    for _ in range(args.conns):
        _, proto = await loop.create_connection(
            lambda: HttpClient(request, shared), host, int(port)
        )
        conns.append(proto)

    def start() -> None:
        for c in conns:
            c.send()

    elapsed, cpu = await measure(start, shared["done"])
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    if shared["errors"]:
        raise RuntimeError(f"{shared['errors']} HTTP Send requests failed")
    return {"n": args.n, "seconds": elapsed, "msgs_per_s": args.n / elapsed, "loadgen_cpu_s": cpu}


SCENARIOS = {
    "e2e": e2e,
    "rate": rate,
    "topics": topics,
    "fill": fill,
    "delay": delay,
    "http": http,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("url")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--topic", default="bench")
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--delay", type=int, default=1)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--ceiling", action="store_true", help="server sends constant pushes")
    parser.add_argument("--message-ids", action="store_true", help="e2e: a MessageId per frame")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(SCENARIOS[args.scenario](args))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
