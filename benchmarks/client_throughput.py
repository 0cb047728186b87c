"""Client-side throughput: one pipelined Producer, one Consumer receiving and acking.

Starts its own broker on 127.0.0.1 (or uses --url) and reports msgs/s together with the CPU
share used by this client process and by the broker, to show which side is the bottleneck.
A bare aiohttp loop (--raw) doing the same protocol work gives the no-library baseline.

    PYTHONPATH=src python -m benchmarks.client_throughput -n 200000 [--uvloop] [--raw]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import psutil

from kapokmq.client import Consumer, Producer
from kapokmq.client.connection import open_session, session_url

Produce = Callable[[str, str, list[str], int], Awaitable[None]]
Consume = Callable[[str, str, int], Awaitable[None]]


@dataclass
class Result:
    name: str
    count: int
    seconds: float
    client_cpu: float
    broker_cpu: float

    def line(self) -> str:
        rate = self.count / self.seconds
        return (
            f"{self.name:<32} {self.count:>7} msgs {self.seconds:6.2f} s {rate:>8,.0f} msg/s"
            f"  client CPU {self.client_cpu / self.seconds:4.0%}"
            f" {self.client_cpu / self.count * 1e6:5.1f} us/msg"
            f"  broker CPU {self.broker_cpu / self.seconds:4.0%}"
        )


async def measure(
    name: str, count: int, broker: psutil.Process | None, work: Callable[[], Awaitable[None]]
) -> Result:
    me = psutil.Process()
    c0 = me.cpu_times()
    b0 = broker.cpu_times() if broker else None
    started = time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    c1 = me.cpu_times()
    broker_cpu = 0.0
    if broker and b0:
        b1 = broker.cpu_times()
        broker_cpu = (b1.user - b0.user) + (b1.system - b0.system)
    client_cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return Result(name, count, seconds, client_cpu, broker_cpu)


async def library_produce(url: str, topic: str, payloads: list[str], window: int) -> None:
    async with Producer(url, topic, "bench-p", max_in_flight=window) as producer:
        for data in payloads:
            await producer.submit(data)
        await producer.flush()


async def library_consume(url: str, topic: str, n: int) -> None:
    async with Consumer(url, topic, "bench-c") as consumer:
        for _ in range(n):
            msg = await consumer.receive(timeout=30)
            await msg.ack()


async def raw_produce(url: str, topic: str, payloads: list[str], window: int) -> None:
    """Baseline: the same frames over bare aiohttp, counting `ok` replies."""
    async with aiohttp.ClientSession() as http:
        ws = await open_session(http, session_url(url, "Producers", topic, "raw-p"), "test", 10)
        slots = asyncio.Semaphore(window)
        done = asyncio.Event()
        left = len(payloads)

        async def read() -> None:
            nonlocal left
            async for _ in ws:
                slots.release()
                left -= 1
                if left == 0:
                    done.set()
                    return

        reader = asyncio.create_task(read())
        for data in payloads:
            await slots.acquire()
            await ws.send_str(f'{{"MessageData":"{data}","DelayTime":0}}')
        await done.wait()
        await reader
        await ws.close()


async def raw_consume(url: str, topic: str, n: int) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await open_session(http, session_url(url, "Consumers", topic, "raw-c"), "test", 10)
        for _ in range(n):
            frame = await ws.receive_str(timeout=30)
            await ws.send_str(frame[16:48])  # the MessageCode of {"MessageCode":"<32 hex>",...
        await ws.close()


async def main(args: argparse.Namespace) -> None:
    broker_proc = None
    broker_ps: psutil.Process | None = None
    url = args.url
    if url is None:
        from tests.harness import BrokerProcess

        broker_proc = BrokerProcess().start()
        broker_ps = psutil.Process(broker_proc.proc.pid) if broker_proc.proc else None
        url = broker_proc.http
    payloads = [f"{i:010d}".ljust(args.size, "x") for i in range(args.n)]
    results: list[Result] = []
    variants: list[tuple[str, Produce, Consume]] = [("library", library_produce, library_consume)]
    if args.raw:
        variants.append(("raw aiohttp", raw_produce, raw_consume))
    try:
        for label, produce, consume in variants:
            topic = f"bench-{label.replace(' ', '-')}"

            async def produce_only(p: Produce = produce, t: str = topic) -> None:
                await p(url, t, payloads, args.window)

            async def consume_only(c: Consume = consume, t: str = topic) -> None:
                await c(url, t, args.n)

            async def together(p: Produce = produce, c: Consume = consume, t: str = topic) -> None:
                t += "-e2e"
                await asyncio.gather(p(url, t, payloads, args.window), c(url, t, args.n))

            for name, work in (
                ("produce", produce_only),
                ("consume+ack", consume_only),
                ("produce || consume", together),
            ):
                results.append(await measure(f"{label} {name}", args.n, broker_ps, work))
    finally:
        if broker_proc is not None:
            broker_proc.cleanup()
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"n={args.n} size={args.size}B window={args.window} client loop={loop}")
    for result in results:
        print(result.line())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=None, help="use this broker instead of starting one")
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100, help="payload bytes")
    parser.add_argument("--window", type=int, default=1000, help="producer max_in_flight")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--raw", action="store_true", help="also run the bare-aiohttp baseline")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.uvloop:
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
