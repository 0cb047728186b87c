"""frames.py: hand-built server frames (RFC 6455 5.2) and the batched writer."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from aiohttp import WSMsgType
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_websocket import WebSocketWriter

from kapokmq.frames import OK_FRAME, ReplyWriter, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_length_forms(size: int) -> None:
    frame = text_frame(b"x" * size)
    header = len(frame) - size
    assert frame[0] == 0x81  # FIN + text, never masked (server to client)
    assert header == (2 if size < 126 else 4 if size < 65536 else 10)
    assert frame.endswith(b"x" * size)


@pytest.mark.parametrize("size", [2, 125, 126, 65535, 65536])
async def test_frames_are_what_aiohttp_writes(size: int) -> None:
    """aiohttp's own (unmasked, server-side) writer is the oracle for the bytes."""
    transport = Transport()
    protocol = BaseProtocol(asyncio.get_running_loop())
    writer = WebSocketWriter(protocol, cast(asyncio.Transport, transport), use_mask=False)
    payload = b"z" * size
    await writer.send_frame(payload, WSMsgType.TEXT)
    assert b"".join(transport.writes) == text_frame(payload)


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


async def test_reply_writer_joins_a_loop_iteration_into_one_write() -> None:
    transport = Transport()
    writer = ReplyWriter(cast(asyncio.Transport, transport), asyncio.get_running_loop())
    for _ in range(3):
        writer.send(OK_FRAME)
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [OK_FRAME * 3]
    transport.closing = True
    writer.send(OK_FRAME)
    await asyncio.sleep(0)
    assert transport.writes == [OK_FRAME * 3] and writer.closed
