"""Server-to-client WebSocket frames, built by hand so a batch goes out in one write.

Server frames are never masked (RFC 6455 5.1), so a text frame is a 2-10 byte header
plus the payload; joining many of them and calling ``transport.write`` once replaces one
coroutine and one system call per message.
"""

from __future__ import annotations

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
