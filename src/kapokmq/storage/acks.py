"""Producer replies that wait for the disk without stalling the connection (fsync always).

A producer's frames keep being read and published while earlier ones wait for their fsync;
each reply is written, in order, once the WAL batch holding its message is on disk. So one
pipelined connection gets group commit too, instead of one fsync round trip per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

log = logging.getLogger(__name__)


class OrderedReplies:
    __slots__ = ("_queue", "_transport", "_waiting")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._queue: deque[tuple[asyncio.Future[None] | None, bytes]] = deque()
        self._waiting = False

    def send(self, reply: bytes, durable: asyncio.Future[None] | None) -> None:
        """Write ``reply`` after every earlier one and once ``durable`` (if any) is done."""
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
        transport = self._transport
        if transport.is_closing():
            return False
        if durable is not None and (durable.cancelled() or durable.exception() is not None):
            # never say `ok` for a message that did not reach the disk
            log.error("closing a producer: its messages could not be made durable")
            transport.abort()
            return False
        transport.write(reply)
        return True
