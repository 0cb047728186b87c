"""Producer replies that wait for the disk without stalling the connection (fsync always).

A producer's frames keep being read and published while earlier ones wait for their fsync;
each reply is sent, in order, once the WAL batch holding its message is on disk. So one
pipelined connection gets group commit too, instead of one fsync round trip per message.
A batch that cannot be made durable is answered ``error: storage unavailable: <reason>``
for each of its messages, and the connection stays open (docs/durability.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from kapokmq.server.frames import OK_FRAME, text_frame


class Writer(Protocol):
    """What the connection offers (the server's ReplyWriter)."""

    @property
    def closed(self) -> bool: ...

    def send(self, frame: bytes) -> None: ...


class OrderedReplies:
    __slots__ = ("_queue", "_transport", "_waiting", "_writer")

    def __init__(self, writer: Writer, transport: asyncio.BaseTransport | None) -> None:
        self._writer = writer
        self._transport = transport
        self._queue: deque[tuple[asyncio.Future[None] | None, bytes]] = deque()
        self._waiting = False

    def send(self, reply: bytes, durable: asyncio.Future[None] | None) -> None:
        """Send ``reply`` after every earlier one and once ``durable`` (if any) is done."""
        if not self._queue and (durable is None or durable.done()):
            self._write(durable, reply)
            return
        self._queue.append((durable, reply))
        if not self._waiting:
            self._drain()

    def _drain(self, _: object = None) -> None:
        self._waiting = False
        queue = self._queue
        while queue:
            durable, reply = queue[0]
            if durable is not None and not durable.done():
                self._waiting = True
                durable.add_done_callback(self._drain)
                return
            queue.popleft()
            if not self._write(durable, reply):
                queue.clear()
                return

    def _write(self, durable: asyncio.Future[None] | None, reply: bytes) -> bool:
        if self._writer.closed:
            return False
        if durable is not None and (durable.cancelled() or durable.exception() is not None):
            # never say `ok` for a message that did not reach the disk: each `ok` of the
            # failed batch becomes `error: storage unavailable: ...`, the connection stays
            reason = str(durable.exception()) if not durable.cancelled() else "cancelled"
            reply = text_frame(f"error: {reason}".encode()) * (len(reply) // len(OK_FRAME))
        self._writer.send(reply)
        return True
