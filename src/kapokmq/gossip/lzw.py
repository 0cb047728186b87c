"""LZW compatible with Go's ``compress/lzw`` (LSB order, 8-bit literals).

memberlist compresses packets and streams with Go's LZW, which Python's
standard library lacks. The writer reproduces Go's output byte for byte
(clear code first, table reset at code 4095, final code then EOF), so golden
vectors taken from Go can be compared directly.
"""

from __future__ import annotations

_LIT_WIDTH = 8
_CLEAR = 1 << _LIT_WIDTH  # 256
_EOF = _CLEAR + 1  # 257
_MAX_WIDTH = 12
_MAX_CODE = (1 << _MAX_WIDTH) - 1  # 4095


class LZWError(ValueError):
    """The input is not a valid Go LZW stream."""


class _BitWriter:
    """Packs variable-width codes least significant bit first."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._bits = 0
        self._n = 0

    def write(self, code: int, width: int) -> None:
        self._bits |= code << self._n
        self._n += width
        while self._n >= 8:
            self.out.append(self._bits & 0xFF)
            self._bits >>= 8
            self._n -= 8

    def flush(self) -> bytes:
        if self._n > 0:
            self.out.append(self._bits & 0xFF)
            self._bits = 0
            self._n = 0
        return bytes(self.out)


def compress(data: bytes) -> bytes:
    """Compress ``data`` exactly like Go's ``lzw.NewWriter(w, lzw.LSB, 8)``."""
    bw = _BitWriter()
    width = _LIT_WIDTH + 1
    hi = _EOF
    overflow = 1 << width
    table: dict[int, int] = {}

    def inc_hi() -> bool:
        """Advance the next code; returns True when the table was reset."""
        nonlocal hi, width, overflow
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            bw.write(_CLEAR, width)
            width = _LIT_WIDTH + 1
            hi = _EOF
            overflow = 1 << width
            table.clear()
            return True
        return False

    bw.write(_CLEAR, width)
    if not data:
        bw.write(_EOF, width)
        return bw.flush()

    code = data[0]
    for literal in data[1:]:
        key = (code << 8) | literal
        found = table.get(key)
        if found is not None:
            code = found
            continue
        bw.write(code, width)
        code = literal
        if inc_hi():
            continue
        table[key] = hi
    bw.write(code, width)
    inc_hi()
    bw.write(_EOF, width)
    return bw.flush()


def decompress(data: bytes, max_size: int) -> bytes:
    """Decode a Go LZW (LSB, 8) stream; the EOF code is required, as in Go.

    ``max_size`` caps the output: more than that raises LZWError (a decompression bomb).
    """
    decoder = Decoder(data, max_size)
    out = decoder.step(len(data) * 8)
    assert out is not None  # every code uses at least 9 of the input's bits
    return out


class Decoder:
    """A resumable decoder: ``step(n)`` decodes at most ``n`` codes, so a caller on an
    event loop can decode a large stream in slices (docs/gossip.md, Bounded work)."""

    def __init__(self, data: bytes, max_size: int) -> None:
        self._data = data
        self._max_size = max_size
        self._out = bytearray()
        self._entries: dict[int, bytes] = {}
        self._width = _LIT_WIDTH + 1
        self._hi = _EOF
        self._overflow = 1 << self._width
        self._last: bytes | None = None
        self._bits = 0
        self._nbits = 0
        self._pos = 0

    def step(self, max_codes: int) -> bytes | None:
        """Decode up to ``max_codes`` codes; the output once EOF is reached, else None."""
        data, out, entries = self._data, self._out, self._entries
        width, hi, overflow, last = self._width, self._hi, self._overflow, self._last
        bits, nbits, pos, end = self._bits, self._nbits, self._pos, len(data)
        max_size = self._max_size
        try:
            for _ in range(max_codes):
                while nbits < width:
                    if pos >= end:
                        raise LZWError("unexpected end of LZW stream")
                    bits |= data[pos] << nbits
                    pos += 1
                    nbits += 8
                code = bits & ((1 << width) - 1)
                bits >>= width
                nbits -= width

                if code < _CLEAR:
                    entry = bytes((code,))
                elif code == _CLEAR:
                    width = _LIT_WIDTH + 1
                    hi = _EOF
                    overflow = 1 << width
                    last = None
                    continue
                elif code == _EOF:
                    return bytes(out)
                elif code < hi and code in entries:
                    entry = entries[code]
                elif code == hi and last is not None:
                    entry = last + last[:1]
                else:
                    raise LZWError(f"invalid LZW code {code}")

                out += entry
                if len(out) > max_size:
                    raise LZWError(f"decompressed data larger than {max_size} bytes")
                if last is not None:
                    entries[hi] = last + entry[:1]
                last = entry
                hi += 1
                if hi >= overflow:
                    if width == _MAX_WIDTH:
                        last = None
                        hi -= 1
                    else:
                        width += 1
                        overflow <<= 1
            return None
        finally:
            self._width, self._hi, self._overflow, self._last = width, hi, overflow, last
            self._bits, self._nbits, self._pos = bits, nbits, pos
