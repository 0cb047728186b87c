"""The console's schedule at scale, in-process: N delayed messages published in random
due order, then ``/Console/GetScheduled``'s query (a page of 50, all topics and one topic)
at the front, the middle and the end, and ``DeliverNow`` of random ones.

    python -m benchmarks.schedule_bench [N]
"""

from __future__ import annotations

import random
import sys
import time

from kapokmq.config import Config
from kapokmq.core.broker import Broker

PAGE = 50


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
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
    codes = random.Random(2).sample([m.code for m in broker.messages()], 1000)
    t0 = time.perf_counter()
    for code in codes:
        broker.deliver_now(code)
    took = (time.perf_counter() - t0) / len(codes) * 1e6
    print(f"  deliver now: {took:.1f} us each; {scheduler.upcoming(None, 0, 0)[0]:,} left delayed")


if __name__ == "__main__":
    main()
