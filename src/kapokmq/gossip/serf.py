"""Helpers for running inside a serf cluster (serf 0.9 / memberlist 0.2.2).

Serf refuses members whose delegate protocol versions fall outside its
[2, 5] range and expects its tags, msgpack-encoded after a 0xFF marker, in
the node meta.
"""

from __future__ import annotations

from typing import Final

import msgpack

SERF_DELEGATE_VERSIONS: Final = (2, 5, 5)
_TAG_MAGIC: Final = 0xFF


def encode_tags(tags: dict[str, str]) -> bytes:
    """Node meta that ``serf members`` shows as ``k=v`` tags."""
    packed: bytes = msgpack.packb(dict(sorted(tags.items())), use_bin_type=False)
    meta = bytes((_TAG_MAGIC,)) + packed
    if len(meta) > 512:
        raise ValueError("serf tags exceed the 512-byte meta limit")
    return meta


def decode_tags(meta: bytes) -> dict[str, str]:
    """Serf's reading of a member's meta: tags map, or ``{"role": meta}``."""
    if not meta or meta[0] != _TAG_MAGIC:
        return {"role": meta.decode("utf-8", "replace")} if meta else {}
    raw = msgpack.unpackb(meta[1:], raw=True)
    return {
        k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
        for k, v in raw.items()
        if isinstance(k, bytes) and isinstance(v, bytes)
    }
