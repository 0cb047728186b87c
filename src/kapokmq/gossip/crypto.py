"""memberlist 0.2.2's keyring: AES-GCM encryption of packets and streams (sans-I/O).

Encrypted payload = ``[vsn u8][nonce 12][ciphertext + 16-byte tag]``. Version 1 (spoken
from protocol version 2 on) encrypts the message as is; version 0 (protocol 1) pads it
with PKCS7 first. Both are accepted on input. A UDP packet is one encrypted payload with
no additional data; a TCP stream message is ``[10][length u32 BE][payload]`` with those
five header bytes as the additional data. The first key of the ring encrypts; every key
is tried to decrypt, so keys can be rotated without downtime (docs/gossip.md, Encryption).
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Sequence
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kapokmq.gossip.codec import CodecError, MsgType

KEY_SIZES: Final = (16, 24, 32)
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
_BLOCK = 16
STREAM_HEADER_SIZE: Final = 5  # [10][length u32 BE]
# A stream payload over this is decrypted this much at a time (~1.5 ms of AES-GCM), so a
# 20 MiB stream (35 ms per key in one call) never holds the event loop (docs/gossip.md).
SLICE_BYTES: Final = 1 << 20


class DecryptError(CodecError):
    """No key of the ring could decrypt (or the payload is not encrypted at all)."""


def encryption_version(protocol_version: int) -> int:
    """The version a node speaking ``protocol_version`` writes (memberlist's rule)."""
    return 0 if protocol_version == 1 else 1


def encrypt_overhead(vsn: int) -> int:
    """Worst-case bytes encryption adds to a packet (version, nonce, padding, tag)."""
    return 1 + NONCE_SIZE + TAG_SIZE + (_BLOCK if vsn == 0 else 0)


def encrypted_length(vsn: int, size: int) -> int:
    padding = 0 if vsn >= 1 else _BLOCK - size % _BLOCK
    return 1 + NONCE_SIZE + size + padding + TAG_SIZE


class Keyring:
    """Keys in order; the first is primary (encrypts), all of them decrypt."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        unique: list[bytes] = []
        for key in keys:
            if len(key) not in KEY_SIZES:
                raise ValueError(f"gossip key size must be 16, 24 or 32 bytes, got {len(key)}")
            if key not in unique:
                unique.append(key)
        self.keys: tuple[bytes, ...] = tuple(unique)
        self._ciphers = [AESGCM(key) for key in unique]

    @classmethod
    def parse(cls, text: str) -> Keyring | None:
        """A keyring from ``base64[,base64...]`` (primary first); None for an empty text."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            return None
        keys: list[bytes] = []
        for i, part in enumerate(parts, 1):
            try:
                keys.append(base64.b64decode(part, validate=True))
            except (binascii.Error, ValueError):
                raise ValueError(f"gossip key {i} is not valid base64") from None
        return cls(keys)

    @property
    def primary(self) -> bytes:
        return self.keys[0]

    def encrypt(self, vsn: int, msg: bytes, aad: bytes | None = None) -> bytes:
        """``[vsn][nonce][ciphertext+tag]`` under the primary key."""
        if vsn == 0:
            pad = _BLOCK - len(msg) % _BLOCK
            msg = msg + bytes((pad,)) * pad
        elif vsn != 1:
            raise ValueError(f"unsupported encryption version {vsn}")
        nonce = os.urandom(NONCE_SIZE)
        return bytes((vsn,)) + nonce + self._ciphers[0].encrypt(nonce, msg, aad)

    def decrypt(self, payload: bytes, aad: bytes | None = None) -> bytes:
        """The plaintext of an encrypted payload, trying every key; raises DecryptError."""
        vsn = _check(payload)
        nonce = payload[1 : 1 + NONCE_SIZE]
        body = payload[1 + NONCE_SIZE :]
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, body, aad)
            except InvalidTag:
                continue
            return _unpad(vsn, plain)
        raise DecryptError(_NO_KEY)

    def decryption(self, payload: bytes, aad: bytes) -> Decryption:
        """A stream payload's decryption, done in slices (``Decryption.step``)."""
        return Decryption(self, payload, aad)

    def seal_stream(self, vsn: int, msg: bytes) -> bytes:
        """A stream message: ``[10][length][payload]``, the header authenticated."""
        header = bytes((MsgType.ENCRYPT,)) + struct.pack(">I", encrypted_length(vsn, len(msg)))
        return header + self.encrypt(vsn, msg, header)


_NO_KEY = "No installed keys could decrypt the message"


def _check(payload: bytes) -> int:
    """The encryption version of a payload that may be decrypted (memberlist's checks)."""
    if not payload:
        raise DecryptError("Cannot decrypt empty payload")
    vsn = payload[0]
    if vsn > 1:
        raise DecryptError(f"Unsupported encryption version {vsn}")
    if len(payload) < encrypted_length(vsn, 0):
        raise DecryptError(f"Payload is too small to decrypt: {len(payload)}")
    return vsn


def _unpad(vsn: int, plain: bytes) -> bytes:
    if vsn != 0:
        return plain
    pad = plain[-1] if plain else 0
    if not 0 < pad <= min(_BLOCK, len(plain)):
        raise DecryptError("bad padding")
    return plain[:-pad]


class Decryption:
    """A stream payload decrypted ``SLICE_BYTES`` at a time: call ``step()`` until it
    returns the plaintext (None: not done yet). Each key is tried in turn with
    cryptography's GCM decryptor, whose tag check at the end decides, exactly as
    ``Keyring.decrypt`` (a small payload is decrypted by that in one step)."""

    def __init__(self, keyring: Keyring, payload: bytes, aad: bytes) -> None:
        self._keyring = keyring
        self._payload = payload
        self._aad = aad
        self._vsn = _check(payload)
        body = memoryview(payload)[1 + NONCE_SIZE :]
        self._nonce = payload[1 : 1 + NONCE_SIZE]
        self._sealed = body[:-TAG_SIZE]
        self._tag = bytes(body[-TAG_SIZE:])
        self._key = 0
        self._offset = 0
        self._parts: list[bytes] = []
        self._decryptor: Any = None

    def step(self) -> bytes | None:
        if len(self._payload) <= SLICE_BYTES:
            return self._keyring.decrypt(self._payload, self._aad)
        if self._decryptor is None:
            if self._key >= len(self._keyring.keys):
                raise DecryptError(_NO_KEY)
            key = self._keyring.keys[self._key]
            cipher = Cipher(algorithms.AES(key), modes.GCM(self._nonce, self._tag))
            self._decryptor = cipher.decryptor()
            self._decryptor.authenticate_additional_data(self._aad)
            self._offset, self._parts = 0, []
        end = self._offset + SLICE_BYTES
        self._parts.append(self._decryptor.update(self._sealed[self._offset : end]))
        self._offset = end
        if self._offset < len(self._sealed):
            return None
        try:
            self._decryptor.finalize()
        except InvalidTag:
            self._decryptor = None
            self._key += 1
            return None
        return _unpad(self._vsn, b"".join(self._parts))
