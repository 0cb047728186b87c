"""The WAL encodes records with msgspec (four times faster than msgpack.Packer on the
append path); the files must stay byte for byte what msgpack writes, so files of either
build read the same (docs/durability.md "Files")."""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from kapokmq.model import Status
from kapokmq.storage.format import checksum

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(list(Status))
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner) | st.tuples(inner, inner), max_leaves=20
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=30))
def test_msgspec_writes_what_msgpack_writes(record: list[Any]) -> None:
    packed = msgpack.Packer().pack(record)
    assert msgspec.msgpack.Encoder().encode(record) == packed
    assert msgspec.msgpack.Encoder().encode(tuple(record)) == packed


def test_every_header_size_and_a_lone_surrogate_fail_alike() -> None:
    for n in (0, 15, 16, 65535, 65536):
        items = list(range(n))
        assert msgspec.msgpack.Encoder().encode(items) == msgpack.packb(items)
    for encode in (msgspec.msgpack.Encoder().encode, msgpack.Packer().pack):
        try:
            encode(["a\ud800"])
        except UnicodeEncodeError:
            continue
        raise AssertionError(f"{encode} encoded a lone surrogate")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=5000), st.integers(min_value=0, max_value=2**32 - 1))
def test_the_checksum_is_zlibs_crc32(data: bytes, start: int) -> None:
    """Frames are checked with ISA-L's CRC-32 where isal is installed: it must be the CRC
    earlier builds wrote (and chain from a running value the same way)."""
    assert checksum(data) == zlib.crc32(data)
    assert checksum(data, start) == zlib.crc32(data, start)
