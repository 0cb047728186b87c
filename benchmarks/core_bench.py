"""In-process cost of the broker's own code per message, without sockets:
parse producer frames, publish them as one read, dispatch, encode the pushes, ack them.

    python -m benchmarks.core_bench [N]

The network benchmark (python -m benchmarks) measures the whole server; this isolates
the part we own, so a change to the core can be judged in seconds.
"""

from __future__ import annotations

import gc
import sys
import time

from kapokmq.config import Config
from kapokmq.core.broker import Broker
from kapokmq.model import ClientInfo, Message, encode_pushes
from kapokmq.protocol import parse_send_frame


def run(n: int, batch: int = 500) -> float:
    broker = Broker(Config(), time.time, on_dirty=lambda: None)
    written: list[bytes] = []
    pushed: list[Message] = []

    def record(msgs: list[Message]) -> None:  # as a consumer session's deliver does
        written.append(b"".join(encode_pushes(msgs)))
        pushed.extend(msgs)

    session = broker.attach_consumer(ClientInfo("c", "bench", "", 0), record)
    frames = [
        b'{"MessageData":"' + f"{i:010d}".encode() + b"x" * 90 + b'","DelayTime":0}'
        for i in range(n)
    ]
    gc.collect()
    t0 = time.process_time()
    for start in range(0, n, batch):
        # as the picows engine does per read: parse each frame, publish the read at once
        broker.publish_many(
            "bench", [parse_send_frame(raw) for raw in frames[start : start + batch]]
        )
        broker.dispatch()
        broker.ack_many(session, [msg.code for msg in pushed])
        pushed.clear()
        written.clear()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    runs = sorted(run(n) for _ in range(3))
    print(f"core: {runs[1]:.2f} us/msg (median of 3: {', '.join(f'{r:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()
