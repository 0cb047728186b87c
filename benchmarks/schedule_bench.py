"""The console's schedule at scale, in-process: N delayed messages published in random
due order, then ``/Console/GetScheduled``'s query (a page of 50, all topics and one topic)
at the front, the middle and the end, and ``DeliverNow`` of random ones. Then the
``mq.isClean`` check (``Broker.expire``) over N messages created more than ``cleanTime`` ago
but delayed past it: what one check costs when it deletes nothing, and when it deletes
1,000 messages (plain ones, then delayed ones that came due ``cleanTime`` ago).

    python -m benchmarks.schedule_bench [N]
    python -m benchmarks.schedule_bench --live [N]    # the isClean check's loop stall

``--live`` runs the check in a real broker (``cleanTime`` 2 s, checked every second) that
holds N messages delayed by a day, and pings its console back to back from the moment
they are in for a few checks: the slowest answers show how long a check holds the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from kapokmq.client import ConsoleClient, Producer
from kapokmq.config import Config
from kapokmq.core.broker import Broker
from tests.harness import SECRET, BrokerProcess

PAGE = 50
CLEAN_TIME = 60
CHECKS = 20


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.schedule_bench")
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--live", action="store_true", help="the loop stall in a real broker")
    args = parser.parse_args()
    if args.live:
        asyncio.run(live_stall(args.n))
    else:
        in_process(args.n)
        clean_checks(args.n)


def in_process(n: int) -> None:
    broker = Broker(Config(), time.time)
    dues = list(range(60, 60 + n))
    random.Random(1).shuffle(dues)
    t0 = time.process_time()
    for i, delay in enumerate(dues):
        broker.publish(f"topic{i % 10}", "x" * 100, delay)
    publish = (time.process_time() - t0) / n * 1e6
    scheduler = broker.scheduler
    print(f"{n:,} delayed messages: {publish:.2f} us per delayed publish (CPU)")
    for offset in (0, n // 2, n - PAGE):
        for topic in (None, "topic3"):
            start = offset if topic is None else offset // 10
            t0 = time.perf_counter()
            for _ in range(100):
                total, page = scheduler.upcoming(topic, start, PAGE)
            took = (time.perf_counter() - t0) / 100 * 1e3
            print(
                f"  page of {len(page)} at {start:,} of {total:,} ({topic or 'all'}): {took:.3f} ms"
            )
    codes = random.Random(2).sample([m.code for m in broker.messages()], min(1000, n))
    t0 = time.perf_counter()
    for code in codes:
        broker.deliver_now(code)
    took = (time.perf_counter() - t0) / len(codes) * 1e6
    print(f"  deliver now: {took:.1f} us each; {scheduler.upcoming(None, 0, 0)[0]:,} left delayed")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def timed_check(broker: Broker, now: float) -> tuple[float, int]:
    """The longest tick of one check (a tick's step of it looks at ``clean_slice``
    messages; the next tick goes on), and how many messages the whole check deleted."""
    held = len(broker.store)
    longest = 0.0
    while True:
        t0 = time.perf_counter()
        broker.tick()
        longest = max(longest, time.perf_counter() - t0)
        deadline = broker.next_deadline()
        if deadline is None or deadline > now:
            return longest * 1e3, held - len(broker.store)


def clean_checks(n: int) -> None:
    config = Config()
    config.mq.cleanTime = CLEAN_TIME
    clock = Clock()
    start = clock.now
    broker = Broker(config, clock)
    day = 86_400
    for i in range(n):  # due in a day or two: older than cleanTime for hours, not stale
        broker.publish(f"topic{i % 10}", "x" * 100, day + i % day)
    clock.now += 2 * CLEAN_TIME
    first, deleted = timed_check(broker, clock.now)
    later: list[float] = []
    for _ in range(CHECKS):
        clock.now += config.mq.checkSpeed
        later.append(timed_check(broker, clock.now)[0])
    print(
        f"isClean check over {n:,} delayed messages older than cleanTime, none stale: "
        f"first {first:.2f} ms (longest tick), then median {statistics.median(later):.3f} ms "
        f"(max {max(later):.3f}); {deleted} deleted"
    )
    for _ in range(1000):
        broker.publish("plain", "x" * 100, 0)
    clock.now += 2 * CLEAN_TIME
    took, deleted = timed_check(broker, clock.now)
    print(f"  a check that deletes {deleted:,} plain messages: {took:.2f} ms")
    clock.now = start + day + 1000 + CLEAN_TIME  # the first 1,000 delayed ones came due
    took, deleted = timed_check(broker, clock.now)
    print(f"  a check that deletes {deleted:,} delayed messages (due cleanTime ago): {took:.2f} ms")


async def probe(console: ConsoleClient, seconds: float) -> str:
    """Ping back to back for ``seconds``: how long the answers took."""
    took: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await console.ping()
        took.append((time.perf_counter() - t0) * 1e3)
    took.sort()
    slowest = ", ".join(f"{t:.1f}" for t in took[:-6:-1])
    return (
        f"{len(took):,} pings in {seconds:.0f} s: median {statistics.median(took):.2f} ms, "
        f"p99 {took[int(len(took) * 0.99)]:.2f} ms, slowest {slowest} ms, "
        f"{sum(t > 10 for t in took)} over 10 ms"
    )


async def live_stall(n: int) -> None:
    broker = BrokerProcess({"mq.cleanTime": 2, "mq.checkSpeed": 1, "mq.isClean": 1})
    broker.start()
    try:
        async with Producer(broker.ws, "late", "bench", SECRET, max_in_flight=2000) as producer:
            for i in range(n):
                await producer.submit("x" * 100, 86_400 + i)
            await producer.flush()
        async with ConsoleClient(broker.http, SECRET) as console:
            # the checks of the first seconds find them older than cleanTime for the
            # first time; every later check finds all of them still there
            first = await probe(console, 4.0)
            later = await probe(console, 6.0)
            count = (await console.count())["delay"]
    finally:
        broker.stop()
        broker.cleanup()
    print(f"live broker, {count:,} messages delayed past cleanTime (checked every second)")
    print(f"  the first 4 s: {first}")
    print(f"  the next 6 s:  {later}")


if __name__ == "__main__":
    main()
