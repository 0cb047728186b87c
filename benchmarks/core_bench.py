"""In-process cost of the broker's own code per message, without sockets:
parse producer frames, publish them as one read, dispatch, encode the pushes, ack them.

    python -m benchmarks.core_bench [N]                   # point-to-point, 1 consumer
    python -m benchmarks.core_bench [N] --subscribers 10  # pub/sub 1 -> 10, per delivery

The network benchmark (python -m benchmarks) measures the whole server; this isolates
the part we own, so a change to the core can be judged in seconds.
"""

from __future__ import annotations

import gc
import re
import sys
import time
from collections.abc import Callable

from kapokmq.config import Config
from kapokmq.core.broker import Broker
from kapokmq.model import ClientInfo, Message, encode_pushes
from kapokmq.protocol import parse_send_frame

_PUSHED_CODE = re.compile(rb'"MessageCode":"([^"]*)"')


def run(n: int, batch: int = 500, subscribers: int = 0) -> float:
    """Server CPU per message (point-to-point), or per delivery with ``subscribers``."""
    config = Config()
    if subscribers:
        config.mq.pushType = 2
    broker = Broker(config, time.time, on_dirty=lambda: None)
    try:  # the runtime's encoder, shared by every consumer session
        from kapokmq.model import PushBatches

        encode: Callable[[list[Message]], bytes] = PushBatches().frames
    except ImportError:  # a checkout from before it (benchmarks.ab)

        def encode(msgs: list[Message]) -> bytes:
            return b"".join(encode_pushes(msgs))

    written: list[bytes] = []
    sessions = []
    for i in range(max(1, subscribers)):
        pushed: list[bytes] = []

        def record(msgs: list[Message], pushed: list[bytes] = pushed) -> None:
            frames = encode(msgs)  # as a consumer session's deliver does
            written.append(frames)
            pushed.append(frames)

        sessions.append(
            (broker.attach_consumer(ClientInfo(f"c{i}", "bench", "", 0), record), pushed)
        )
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
        for session, pushed in sessions:  # each consumer's acks of one read
            # the codes as a consumer sends them back (the session decodes each frame)
            codes = _PUSHED_CODE.findall(b"".join(pushed))
            broker.ack_many(session, [code.decode() for code in codes])
            pushed.clear()
        written.clear()
    return (time.process_time() - t0) / (n * max(1, subscribers)) * 1e6


def main() -> None:
    args = sys.argv[1:]
    subscribers = 0
    if "--subscribers" in args:
        at = args.index("--subscribers")
        subscribers = int(args[at + 1])
        del args[at : at + 2]
    n = int(args[0]) if args else 200_000
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    runs = sorted(run(n, subscribers=subscribers) for _ in range(3))
    unit = "delivery" if subscribers else "msg"
    print(f"core: {runs[1]:.2f} us/{unit} (median of 3: {', '.join(f'{r:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()
