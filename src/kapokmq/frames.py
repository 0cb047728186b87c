"""Server-to-client WebSocket frames, built by hand so a batch goes out in one write.

Server frames are never masked (RFC 6455 5.1), so a text frame is a 2-10 byte header
plus the payload; joining many of them and calling ``transport.write`` once replaces one
coroutine and one system call per message.
"""

from __future__ import annotations

import asyncio
import struct

_FIN_TEXT = 0x81
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 65536:
        return _LEN16.pack(_FIN_TEXT, 126, n) + payload
    return _LEN64.pack(_FIN_TEXT, 127, n) + payload


OK_FRAME = text_frame(b"ok")


class ReplyWriter:
    """Queues frames and writes them all in one call at the end of the loop iteration.

    A burst of producer frames arrives in one read; answering each with its own write
    costs a system call per message. Order is kept because there is one queue per
    connection and it is flushed before any later write.
    """

    __slots__ = ("_frames", "_loop", "_transport")

    def __init__(
        self, transport: asyncio.Transport | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        if not self._frames:
            self._loop.call_soon(self.flush)
        self._frames.append(frame)

    def flush(self) -> None:
        frames = self._frames
        if not frames:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(frames) if len(frames) > 1 else frames[0])
        frames.clear()

    def stop(self) -> None:
        """Write what is queued, then nothing more: a close frame follows it."""
        self.flush()
        self._transport = None

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def buffered(self) -> int:
        """Bytes queued and not yet taken by the kernel (the peer is not reading them)."""
        transport = self._transport
        waiting = sum(map(len, self._frames))
        return waiting + (transport.get_write_buffer_size() if transport is not None else 0)
