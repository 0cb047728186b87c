"""Load generator (separate process): picows WebSocket clients, the fastest available.

Usage: python -m benchmarks.loadgen e2e URL N [--window W]
       python -m benchmarks.loadgen fill URL N
Prints one JSON line with the results (throughput, latency percentiles, own CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

SECRET = b"test"
PROMPT = b"Please enter the secret key"
MATCHED = b"Secret key matching succeeded"
CODE = slice(16, 48)  # {"MessageCode":"<32 hex>"
INDEX = slice(65, 75)  # ..."MessageData":"<10 digits>


def payload(i: int) -> bytes:
    data = f"{i:010d}".encode() + b"x" * 90  # 100-byte MessageData
    return b'{"MessageData":"' + data + b'","DelayTime":0}'


class Client(WSListener):
    """Handshake, then hands frames to ``on_message``."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if not self.ready.done():
            if data == PROMPT:
                transport.send(WSMsgType.TEXT, SECRET)
            elif data == MATCHED:
                self.ready.set_result(None)
            return
        self.on_message(data)

    def on_message(self, data: bytes) -> None:
        raise NotImplementedError


class Producer(Client):
    def __init__(self, n: int, window: int) -> None:
        super().__init__()
        self.n = n
        self.window = window
        self.sent = 0
        self.oks = 0
        self.sent_at = [0.0] * n
        self.done = asyncio.get_running_loop().create_future()

    def pump(self) -> None:
        assert self.transport is not None
        limit = min(self.n, self.oks + self.window)
        send = self.transport.send
        sent_at = self.sent_at
        now = time.perf_counter()
        for i in range(self.sent, limit):
            sent_at[i] = now
            send(WSMsgType.TEXT, payload(i))
        self.sent = max(self.sent, limit)

    def on_message(self, data: bytes) -> None:
        if data != b"ok":
            raise RuntimeError(f"unexpected producer reply {data!r}")
        self.oks += 1
        if self.oks == self.n:
            self.done.set_result(None)
        elif self.sent - self.oks <= self.window // 2:
            self.pump()


class Consumer(Client):
    def __init__(self, n: int, sent_at: list[float] | None) -> None:
        super().__init__()
        self.n = n
        self.received = 0
        self.sent_at = sent_at
        self.latencies: list[float] = []
        self.done = asyncio.get_running_loop().create_future()

    def on_message(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, data[CODE])
        if self.sent_at is not None:
            self.latencies.append(time.perf_counter() - self.sent_at[int(data[INDEX])])
        self.received += 1
        if self.received == self.n:
            self.done.set_result(None)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def e2e(url: str, n: int, window: int, topic: str) -> dict[str, Any]:
    producer = Producer(n, window)
    consumer = Consumer(n, producer.sent_at)
    await ws_connect(lambda: consumer, f"{url}/Consumers/Conn/{topic}/bench-c")
    await ws_connect(lambda: producer, f"{url}/Producers/Conn/{topic}/bench-p")
    await asyncio.wait_for(asyncio.gather(consumer.ready, producer.ready), 10)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    producer.pump()
    await asyncio.wait_for(asyncio.gather(producer.done, consumer.done), 600)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    lat = sorted(consumer.latencies)
    for t in (producer.transport, consumer.transport):
        if t is not None:
            t.disconnect()
    return {
        "n": n,
        "seconds": elapsed,
        "msgs_per_s": n / elapsed,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "loadgen_cpu_s": cpu,
    }


async def fill(url: str, n: int, window: int, topic: str) -> dict[str, Any]:
    """Publish n messages with no consumer (for memory per queued message)."""
    producer = Producer(n, window)
    await ws_connect(lambda: producer, f"{url}/Producers/Conn/{topic}/bench-fill")
    await asyncio.wait_for(producer.ready, 10)
    t0 = time.perf_counter()
    producer.pump()
    await asyncio.wait_for(producer.done, 600)
    elapsed = time.perf_counter() - t0
    assert producer.transport is not None
    producer.transport.disconnect()
    return {"n": n, "seconds": elapsed, "msgs_per_s": n / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("e2e", "fill"))
    parser.add_argument("url")
    parser.add_argument("n", type=int)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--topic", default="bench")
    args = parser.parse_args()
    import uvloop

    scenario = e2e if args.scenario == "e2e" else fill
    result = uvloop.run(scenario(args.url, args.n, args.window, args.topic))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
