"""The producer, consumer and /Sync WebSocket sessions, sans I/O: every rule of
docs/protocol.md "WebSocket sessions" in one place, for both engines.

An engine adapter (server/ws_picows.py, server/ws_aiohttp.py) turns bytes into whole
messages and hands each to ``Session.receive`` (or, within a read, appends it to the
session's ``inbox``, see there); the session answers through the
connection's transport (``write``, one per read) and asks the adapter, through a
``Link``, to close, pause or resume reading. The runtime (server/runtime.py) is the
broker side: its publish entry, its write gate, and its loop for the clock and the
scheduler (``time``/``call_soon``/``call_at``), a fake one in tests, so the machines run
without sockets (tests/server/test_session.py).

States and transitions (``State``; nothing else moves a session)::

    AWAITING_KEY --right key--------------------------------> OPEN (attached)
    AWAITING_KEY --5th wrong key / keyTimeout: close 1008---> CLOSING
    OPEN --a read's frames exceed the backlog room----------> HOLDING   (producer)
    HOLDING --room: held frames replayed as a fresh read----> OPEN
    OPEN --over mq.maxPendingBytes: close 1008--------------> CLOSING   (consumer)
    OPEN --over mq.maxPendingBytes, nothing read: abort-----> CLOSING   (slave)
    any --message above mq.maxMessageBytes: close 1009------> CLOSING
    any --connection lost-----------------------------------> CLOSED

An open producer's or consumer's messages of one read are kept in its ``inbox`` and
handled together once the read is done (``loop.call_soon``): a producer's are parsed and
published through the runtime's single publish entry, their replies going out in one
write, in frame order, after the disk under fsync ``always``; a consumer's acks are
applied in one call. The size limit is checked there too, in order: the messages before
one above ``mq.maxMessageBytes`` count, it closes the connection, the rest are dropped.
"""

from __future__ import annotations

import asyncio
import binascii
import enum
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from kapokmq.core.topics import ConsumerSession
from kapokmq.frames import OK_FRAME, ReplyWriter, text_frame
from kapokmq.httpbase import key_matches
from kapokmq.login import MATCHED, MAX_ATTEMPTS, MISMATCH, PROMPT
from kapokmq.model import ClientInfo, Code, Message, code_keys
from kapokmq.protocol import SendItem, parse_send_frames
from kapokmq.server.runtime import BrokerRuntime, WritesRefused

if TYPE_CHECKING:
    from kapokmq.core.broker import ProducerSession

log = logging.getLogger(__name__)


class CloseCode(enum.IntEnum):
    """The close codes a session sends (RFC 6455 7.4.1)."""

    NORMAL = 1000  # the answer to a client's close frame that gave no code
    GOING_AWAY = 1001  # shutdown
    PROTOCOL_ERROR = 1002  # broken fragmentation, an invalid close code
    POLICY_VIOLATION = 1008  # no right key (docs/protocol.md "Handshake")
    MESSAGE_TOO_BIG = 1009  # above mq.maxMessageBytes


class State(enum.Enum):
    AWAITING_KEY = "awaiting key"
    OPEN = "open"
    HOLDING = "holding for backlog room"
    CLOSING = "closing"
    CLOSED = "closed"


# for the per-frame checks: reading an Enum member (State.OPEN) costs ~200 ns on Python
# 3.11, a module global ~10 ns
_OPEN = State.OPEN
_HOLDING = State.HOLDING

PROMPT_FRAME = text_frame(PROMPT.encode())
MATCHED_FRAME = text_frame(MATCHED.encode())
MISMATCH_FRAME = text_frame(MISMATCH.encode())
NO_KEY = b"no secret key in time"
TOO_MANY_KEYS = b"too many wrong secret keys"
TOO_BIG = b"message too big"
SLOW_CONSUMER = b"slow consumer"
SLOW_SLAVE = b"slow slave"

# Back-pressure (docs/protocol.md "Slow consumers"): a consumer whose connection has more
# than PAUSE_ABOVE bytes waiting in its write buffer (the kernel's socket buffer is full)
# gets no pushes until the buffer is down to RESUME_BELOW, looked at every DRAIN_POLL
# seconds, doubling up to DRAIN_POLL_MAX while it stays full. (Checked after each write
# rather than through pause_writing, which aiohttp keeps to itself.)
PAUSE_ABOVE = 64 * 1024
RESUME_BELOW = 16 * 1024
DRAIN_POLL = 0.005
DRAIN_POLL_MAX = 0.1
# The closing handshake (docs/protocol.md "WebSocket sessions"): after its close frame the
# broker keeps reading, and ignoring, what the client sends until the client's own close,
# then drops the connection. Dropping it at once would answer the client's next frame with
# a TCP reset, which can cost the client the close frame itself (a browser then sees 1006,
# not 1009). A client that does not answer, or does not even read its close frame (a slow
# consumer's waits behind what is already buffered for it), is cut off this many seconds
# later.
CLOSE_GRACE = 2.0
# Point-to-point: a consumer whose socket stays full and that acks nothing for this long is
# a slow consumer too; what it holds goes to the other consumers at once.
P2P_STALLED_AFTER = 5.0


# The codes a client's close frame may carry (docs/protocol.md "WebSocket sessions"): the
# assigned ones but 1004-1006 and 1015, and 3000-4999.
_SENDABLE_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015)))
INVALID_CLOSE_CODE = b"invalid close code"


def close_answer(code: int | None) -> tuple[int, bytes]:
    """The code and reason to answer a client's close frame with, on both engines: its own
    code (as the original's gorilla/websocket does), 1000 for a close frame without a code
    (``None``; 1005 must never be sent), 1002 for a code no close frame may carry. Both
    engines' libraries refuse a 1-byte payload and a reason that is not UTF-8 themselves
    (1002, 1007), and some of the invalid codes, not all (1006, 5000 and above pass)."""
    if code is None:
        return CloseCode.NORMAL, b""
    if code in _SENDABLE_CLOSE_CODES or 3000 <= code < 5000:
        return code, b""
    return CloseCode.PROTOCOL_ERROR, INVALID_CLOSE_CODE


def _first_above(payloads: list[bytes], limit: int) -> int:
    """The index of the first message above ``limit`` bytes (there is one)."""
    return next(i for i, payload in enumerate(payloads) if len(payload) > limit)


def ack_codes(payloads: list[bytes]) -> tuple[list[Code], bytes | None]:
    """The codes a consumer's ack messages name, as the broker keeps them
    (``model.code_key``): the text with invalid UTF-8 replaced and surrounding whitespace
    ignored (docs/protocol.md "Consumer session"). In C when every ack is 32 lowercase hex
    digits, the usual case: one join, one ``unhexlify`` (which takes hex digits only), one
    ``struct`` cut and ``int.from_bytes`` per code; each 32 bytes, as the total is 32 per
    ack and none is longer. Then also the codes' 16 bytes each, which is ``unhexlify``'s
    result (for ``Broker.ack_keys``); else None."""
    joined = b"".join(payloads)
    n = len(payloads)
    if (
        len(joined) == 32 * n
        and max(map(len, payloads)) == 32
        and not any(map(joined.__contains__, _UPPER_HEX))  # memchr: cheaper than lower()
    ):
        try:
            raw = _unhexlify(joined)
        except binascii.Error:
            pass
        else:
            if n <= _CUT_MOST:
                return list(map(_from_bytes, _cut(n)(raw))), raw
            # a consumer picks how many acks a read holds: cut in pieces of a few
            # sizes, not with a cutter per count (~35 bytes a field, kept)
            step = 16 * _CUT_MOST
            codes: list[Code] = []
            for at in range(0, len(raw), step):
                piece = raw[at : at + step]
                codes += map(_from_bytes, _cut(len(piece) >> 4)(piece))
            return codes, raw
    return code_keys(list(map(_ack_text, payloads))), None


def _cut(n: int) -> Callable[[bytes], tuple[bytes, ...]]:
    """The unpack of ``n`` 16-byte fields (``n`` at most ``_CUT_MOST``), kept."""
    cut = _CUTS.get(n)
    if cut is None:
        cut = _CUTS[n] = struct.Struct("16s" * n).unpack
    return cut


def _ack_text(payload: bytes) -> str:
    try:
        code = payload.decode()  # ~25 ns less than with an error handler
    except UnicodeDecodeError:
        code = payload.decode("utf-8", "replace")
    return code if len(code) == 32 else code.strip()


_CUTS: dict[int, Callable[[bytes], tuple[bytes, ...]]] = {}
_CUT_MOST = 256  # the cutters kept: at most ~1.2 MB for every count up to this
_UPPER_HEX = tuple(bytes((c,)) for c in b"ABCDEF")  # unhexlify takes these too
_unhexlify = binascii.unhexlify
_from_bytes = int.from_bytes


def error_frame(reason: str) -> bytes:
    """A producer's `error: <reason>` reply (docs/protocol.md "Producer session")."""
    return text_frame(f"error: {reason}".encode())


# ---------------------------------------------------------------------------- what it drives
class Transport(Protocol):
    """The connection's byte stream (an asyncio transport): where replies and pushes go."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class Link(Protocol):
    """What only the engine can do: the WebSocket closing handshake and read flow control."""

    def close(self, code: int, reason: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


# ---------------------------------------------------------------------------- the machines
class Session:
    """Handshake, size limit and fragments: what both roles share."""

    role = "client"

    def __init__(
        self,
        host: BrokerRuntime,
        transport: Transport,
        link: Link,
        topic: str,
        client_id: str,
        ip: str,
    ) -> None:
        self.host = host
        self.transport = transport
        self.link = link
        self.topic = topic
        self.client_id = client_id
        self.ip = ip
        self.peer = f"{self.role} {client_id!r}@{topic!r} from {ip}"
        mq = host.config.mq
        self.secret_key = mq.secretKey
        self.key_timeout = float(mq.keyTimeout)
        self.limit = mq.maxMessageBytes
        self.state = State.AWAITING_KEY
        self.attempts = 0
        # a wrong-key answer held back by the key-guess throttle, and keys sent meanwhile
        self._answer: asyncio.TimerHandle | None = None
        self._waiting_keys: list[bytes] = []
        # the frames of a fragmented message so far, None outside one (engines that
        # deliver raw frames look at it per frame: an attribute, not a property call)
        self.fragments: list[bytes] | None = None
        # The whole messages of the current read, handled once it is done (open producers
        # and consumers). While it is not empty, the read's first message has scheduled
        # that, so an engine may append a whole message (outside a fragmented one) here
        # instead of calling ``receive``: one Python call less per frame (picows).
        self.inbox: list[bytes] = []
        self._fragments_size = 0
        loop = host.loop
        self.deadline: float | None = loop.time() + self.key_timeout
        self._key_timer: asyncio.TimerHandle | None = loop.call_at(
            self.deadline, self._no_key_in_time
        )
        host.sessions.add(self)
        transport.write(PROMPT_FRAME)

    # ------------------------------------------------------------------ input
    def receive(self, payload: bytes) -> None:
        """One whole text or binary message from the client."""
        if len(payload) > self.limit:
            self._close(CloseCode.MESSAGE_TOO_BIG, TOO_BIG)
        elif self.state is State.AWAITING_KEY:
            self._handshake(payload)

    def receive_fragment(self, payload: bytes, continuation: bool, fin: bool) -> None:
        """One frame of a fragmented message (RFC 6455 5.4); whole ones go to ``receive``."""
        if continuation:
            if self.fragments is None:
                self._close(CloseCode.PROTOCOL_ERROR, b"continuation without a first frame")
                return
        else:
            if self.fragments is not None:
                self._close(CloseCode.PROTOCOL_ERROR, b"new message inside a fragmented one")
                return
            self.fragments = []
            self._fragments_size = 0
        self._fragments_size += len(payload)
        if self._fragments_size > self.limit:
            self._close(CloseCode.MESSAGE_TOO_BIG, TOO_BIG)
            return
        self.fragments.append(payload)
        if fin:
            whole = b"".join(self.fragments)
            self.fragments = None
            self.receive(whole)

    def connection_lost(self) -> None:
        """The connection is gone (either side closed it)."""
        self._cancel_key_timer()
        if self._answer is not None:
            self._answer.cancel()
            self._answer = None
        self.host.sessions.discard(self)
        was_open = self.state is not State.AWAITING_KEY and self._attached()
        self.state = State.CLOSED
        if was_open:
            self._detach()
            log.info("%s disconnected", self.peer)

    def close(self, code: int, reason: bytes) -> None:
        """Close from the server side (shutdown: 1001)."""
        self._close(code, reason)

    def close_received(self, code: int | None) -> tuple[int, bytes]:
        """The client's close frame (its code, None without one): what it sent before is
        published and answered ahead of the close frame that answers it, what follows is
        ignored (RFC 6455 5.5.1), on both engines. Returns the code and reason to answer
        with (``close_answer``)."""
        if self.state is not State.CLOSING and self.state is not State.CLOSED:
            self._before_close()
            self.state = State.CLOSING
        return close_answer(code)

    # ------------------------------------------------------------------ handshake
    def _handshake(self, payload: bytes) -> None:
        if self._answer is not None:  # keys are answered in order: after the held one
            if len(self._waiting_keys) < MAX_ATTEMPTS:
                self._waiting_keys.append(payload)
            return
        if key_matches(payload, self.secret_key):
            self._cancel_key_timer()
            self.transport.write(MATCHED_FRAME)
            self.state = State.OPEN
            log.info("%s connected%s", self.peer, self._attach())
            return
        self.attempts += 1
        # the key-guess throttle (guard.py): an address that keeps sending wrong
        # keys, over any number of connections, gets its answers one per second
        delay = self.host.key_guard.wrong_key(self.ip)
        if delay <= 0:
            self._wrong_key()
            return
        self.link.pause_reading()
        loop = self.host.loop
        self._answer = loop.call_at(loop.time() + delay, self._throttled_answer)

    def _wrong_key(self) -> None:
        self.transport.write(MISMATCH_FRAME)
        if self.attempts >= MAX_ATTEMPTS:
            log.warning("closing %s after %d wrong secret keys", self.peer, MAX_ATTEMPTS)
            self._close(CloseCode.POLICY_VIOLATION, TOO_MANY_KEYS)
        else:
            self.transport.write(PROMPT_FRAME)

    def _throttled_answer(self) -> None:
        self._answer = None
        if self.state is not State.AWAITING_KEY:
            return
        self._wrong_key()
        if self.state is not State.AWAITING_KEY:
            return
        self.link.resume_reading()
        waiting, self._waiting_keys = self._waiting_keys, []
        for key in waiting:  # the first wrong one holds the rest back again
            self._handshake(key)

    def _no_key_in_time(self) -> None:
        self._key_timer = None
        if self.state is State.AWAITING_KEY:
            log.warning("closing %s: no secret key within %g s", self.peer, self.key_timeout)
            self._close(CloseCode.POLICY_VIOLATION, NO_KEY)

    def _cancel_key_timer(self) -> None:
        self.deadline = None
        if self._key_timer is not None:
            self._key_timer.cancel()
            self._key_timer = None

    def _close(self, code: int, reason: bytes) -> None:
        """Send the close frame; nothing is written after it. The engine ends the
        connection when the client answers it, or ``_cut_off`` after CLOSE_GRACE."""
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return
        self._before_close()
        self.state = State.CLOSING
        self.link.close(code, reason)
        self.link.resume_reading()  # the client's answer must be read (a held producer)
        loop = self.host.loop
        loop.call_at(loop.time() + CLOSE_GRACE, self._cut_off)

    def _cut_off(self) -> None:
        if self.state is not State.CLOSED:
            self.transport.abort()

    def _closed(self) -> bool:
        """Nothing more may be written: the close frame is out, or the connection gone."""
        state = self.state
        return state is State.CLOSING or state is State.CLOSED or self.transport.is_closing()

    def _info(self) -> ClientInfo:
        return ClientInfo(self.client_id, self.topic, self.ip, int(self.host.broker.clock()))

    # ------------------------------------------------------------------ per role
    def _attach(self) -> str:
        """Join the broker (or the feed); returns what the "connected" log line adds."""
        raise NotImplementedError

    def _attached(self) -> bool:
        raise NotImplementedError

    def _detach(self) -> None:
        raise NotImplementedError

    def _before_close(self) -> None:
        """Last words before a close frame (a producer's pending replies)."""


class ProducerWebSocket(Session):
    """`/Producers/Conn/{topic}/{id}`: frames in, one `ok` or `error: …` each, in order."""

    role = "producer"

    def __init__(
        self,
        host: BrokerRuntime,
        transport: Transport,
        link: Link,
        topic: str,
        client_id: str,
        ip: str,
    ) -> None:
        self.producer: ProducerSession | None = None
        self._held: deque[bytes] = deque()  # frames waiting for backlog room, in order
        self._out: list[bytes] = []  # replies of the current read
        self._flush_pending = False  # _flush is scheduled
        self._ordered: _DurableReplies | None = None
        super().__init__(host, transport, link, topic, client_id, ip)
        # who published, in the message trace (one tuple per connection)
        self.source = (client_id, ip, "ws:" + host.config.server.wsEngine)

    def receive(self, payload: bytes) -> None:
        """Keep the frame; the read's frames are parsed and published together once it
        is done (one parse call per read, not per frame)."""
        if self.state is not _OPEN:
            if self.state is _HOLDING and len(payload) <= self.limit:
                self._held.append(payload)  # already in the read buffer when reading paused
            else:
                super().receive(payload)
            return
        inbox = self.inbox
        if not inbox:  # the read's first: answer them all once it is done
            self.host.loop.call_soon(self.end_of_read)
        inbox.append(payload)

    def end_of_read(self) -> None:
        """Publish the read's frames; answer them in one write once the dispatch they
        caused has run (pushes before replies: a producer that is answered first floods
        the broker faster than it delivers, e2e p50 6 ms -> 260 ms)."""
        if self._publish_pending():
            self._close(CloseCode.MESSAGE_TOO_BIG, TOO_BIG)
        if self._out and not self._flush_pending:
            self._flush_pending = True
            self.host.loop.call_soon(self._flush)

    def _publish_pending(self) -> bool:
        """Parse and publish the frames received so far, in order: each run of messages
        up to a bad frame is published, then the bad frame answered with its error. A
        full backlog holds the rest, the bad frames among them, for ``on_room``. Stops
        at a frame above the size limit: returns True if there was one (the caller
        closes the connection; it and the frames after it are dropped)."""
        raw = self.inbox
        if not raw:
            return False
        self.inbox = []
        too_big = max(map(len, raw)) > self.limit
        if too_big:
            raw = raw[: _first_above(raw, self.limit)]
        self._publish_frames(raw)
        return too_big

    def _publish_frames(self, raw: list[bytes]) -> None:
        start = 0
        while start < len(raw):
            items, error = parse_send_frames(raw, start)
            taken = self._publish(items) if items else 0
            if taken < len(items):  # backlog full: stop reading until there is room
                self._held.extend(raw[start + taken :])
                self._hold()
                return
            if error is None:
                return
            self._reply(error_frame(str(error)), False)
            start += len(items) + 1

    def _publish(self, items: list[SendItem]) -> int:
        """One run of parsed frames, answered; returns how many the backlog took (all
        of them when writes are refused: they are answered with the refusal)."""
        try:
            taken = self.host.publish_many(self.topic, items, self.source)
        except WritesRefused as exc:
            self._reply(error_frame(exc.refusal.ws_text) * len(items), False)
            return len(items)
        if taken:
            self._reply(OK_FRAME * taken if taken > 1 else OK_FRAME, True)
        return taken

    def _reply(self, frames: bytes, durable: bool) -> None:
        """Replies wait for the disk under fsync ``always`` (docs/durability.md)."""
        ticket = self.host.durable_ticket
        if ticket is None and self._ordered is None:
            self._out.append(frames)
            return
        if self._ordered is None:
            self._ordered = _DurableReplies(self)
        self._ordered.send(frames, ticket() if durable and ticket is not None else None)

    def _flush(self) -> None:
        self._flush_pending = False
        out = self._out
        if not out:
            return
        self._out = []
        if self._closed():
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    # ------------------------------------------------------------------ backlog hold
    def _hold(self) -> None:
        if self.transport.is_closing():  # disconnected: nobody to answer
            return
        self.state = State.HOLDING
        self.link.pause_reading()
        self.host.when_room(self.on_room)

    def on_room(self) -> None:
        """The backlog has room: the held frames go the way of a fresh read."""
        if self.state is not State.HOLDING:
            return
        self.state = State.OPEN
        held, self._held = self._held, deque()
        for payload in held:
            self.receive(payload)  # held again if the backlog fills up again
        self.end_of_read()
        if self.state is State.OPEN:
            self.link.resume_reading()

    # ------------------------------------------------------------------ attach/detach
    def _attach(self) -> str:
        self.producer = self.host.broker.attach_producer(self._info())
        return ""

    def _attached(self) -> bool:
        return self.producer is not None

    def _detach(self) -> None:
        self._publish_pending()  # received in full: stored even though no `ok` can go back
        self._out = []
        assert self.producer is not None
        self.host.broker.detach_producer(self.producer)
        self.producer = None

    def _before_close(self) -> None:
        self._publish_pending()
        self._flush()


class ConsumerWebSocket(Session):
    """`/Consumers/Conn/{topic}/{id}`: pushes out, acks (message codes) in."""

    role = "consumer"

    def __init__(
        self,
        host: BrokerRuntime,
        transport: Transport,
        link: Link,
        topic: str,
        client_id: str,
        ip: str,
    ) -> None:
        self.consumer: ConsumerSession | None = None
        self._paused_since = 0.0  # broker clock when back-pressure last paused its pushes
        super().__init__(host, transport, link, topic, client_id, ip)

    def receive(self, payload: bytes) -> None:
        if self.state is _OPEN:
            inbox = self.inbox
            if not inbox:  # the read's first: apply them all once the read is done
                self.host.loop.call_soon(self.end_of_read)
            inbox.append(payload)
        else:
            super().receive(payload)

    def end_of_read(self) -> None:
        if self._apply_acks():
            self._close(CloseCode.MESSAGE_TOO_BIG, TOO_BIG)

    def _apply_acks(self) -> bool:
        """Apply the read's acks, up to one above the size limit: returns True if there
        was one (the caller closes the connection; it and the acks after it are dropped)."""
        payloads = self.inbox
        if not payloads or self.consumer is None:
            return False
        self.inbox = []
        too_big = max(map(len, payloads)) > self.limit
        if too_big:
            payloads = payloads[: _first_above(payloads, self.limit)]
        if payloads:
            self.host.broker.ack_keys(self.consumer, *ack_codes(payloads))
        return too_big

    def deliver(self, batch: list[Message]) -> None:
        """The broker's push callback: all frames of a batch in one write.

        Messages that could not be written stay in the in-flight table and go back to
        the queue when the connection's loss detaches the session.
        """
        transport = self.transport
        if self.state is not _OPEN or transport.is_closing():  # the close frame is out
            return
        try:
            transport.write(self.host.push_batches.frames(batch))
        except Exception:  # never let one broken connection stop dispatch for the others
            log.exception("push to %s failed; closing it", self.peer)
            transport.abort()
            return
        consumer = self.consumer
        if (
            transport.get_write_buffer_size() > PAUSE_ABOVE
            and consumer is not None
            and not consumer.paused
        ):
            broker = self.host.broker
            broker.pause_pushes(consumer)
            self._paused_since = broker.clock()
            self._check_drained_in(DRAIN_POLL)

    def _check_drained_in(self, seconds: float) -> None:
        loop = self.host.loop
        loop.call_at(loop.time() + seconds, self._check_drained, seconds)

    def _check_drained(self, waited: float) -> None:
        consumer = self.consumer
        if consumer is None or self.state is not State.OPEN:
            return
        broker = self.host.broker
        if self.transport.get_write_buffer_size() <= RESUME_BELOW:
            broker.resume_pushes(consumer)
        elif not broker.cut_stalled(consumer, self._paused_since, P2P_STALLED_AFTER):
            self._check_drained_in(min(2 * waited, DRAIN_POLL_MAX))

    def _slow(self) -> None:
        """The broker cut this session: more than mq.maxPendingBytes was queued for it
        (it is detached already; what it held in point-to-point is queued again)."""
        log.warning(
            "closing %s: slow consumer (more than mq.maxPendingBytes queued for it)", self.peer
        )
        self._close(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER)

    def _attach(self) -> str:
        self.consumer = self.host.broker.attach_consumer(self._info(), self.deliver, self._slow)
        return ""

    def _attached(self) -> bool:
        return self.consumer is not None

    def _before_close(self) -> None:
        self._apply_acks()  # those before the close count; none after it

    def _detach(self) -> None:
        self._apply_acks()
        assert self.consumer is not None
        self.host.broker.detach_consumer(self.consumer)
        self.consumer = None


class SyncFeed(Protocol):
    """The master's side of docs/protocol.md "Master-slave sync" (cluster/replication.py
    ReplicationHub), injected into the app by server/main.py."""

    def attach(self, writer: ReplyWriter, extended: bool, cut: Callable[[str], None]) -> Any:
        """Stream the store, then every change, to a slave that just logged in
        (``extended``: one of ours, it asked for our extension records; ``cut(reason)``
        closes it when it stops reading); returns the feed's handle for that slave."""

    def received(self, slave: Any, payload: bytes) -> None:
        """A frame from the slave: its heartbeat, acks, hand-back."""

    def detach(self, slave: Any) -> None: ...


def sync_frame_limit(max_message_bytes: int) -> int:
    """The largest frame a slave may send: heartbeats and hand-back frames, which hold
    records of at most HAND_BACK_BYTES (cluster/replication.py) or one record of a message
    of up to mq.maxMessageBytes with its keys."""
    return max(1 << 16, max_message_bytes + 4096)


class SyncWebSocket(Session):
    """`/Sync/Conn`: a slave logs in like a client, then receives the feed."""

    role = "slave"

    def __init__(
        self,
        host: BrokerRuntime,
        transport: Transport,
        link: Link,
        feed: SyncFeed,
        ip: str,
        extended: bool = False,
    ) -> None:
        self.feed = feed
        self.extended = extended
        self.writer: ReplyWriter | None = None
        self.slave: Any = None  # the feed's handle, once logged in
        super().__init__(host, transport, link, "", "", ip)
        self.peer = f"slave from {ip}"
        self.limit = sync_frame_limit(self.limit)

    def receive(self, payload: bytes) -> None:
        writer = self.writer
        if self.state is _OPEN and writer is not None and len(payload) <= self.limit:
            self.feed.received(self.slave, payload)
        else:
            super().receive(payload)

    def _attach(self) -> str:
        self.writer = ReplyWriter(cast(asyncio.Transport, self.transport), self.host.loop)
        self.slave = self.feed.attach(self.writer, self.extended, self._cut)
        return f"; streaming {len(self.host.broker.store)} stored messages"

    def _cut(self, reason: str) -> None:
        """The feed gave up on this slave (it stopped reading): a close frame would wait
        behind everything it did not read, so the connection is dropped at once."""
        log.warning("closing %s: %s", self.peer, reason)
        self._close(CloseCode.POLICY_VIOLATION, SLOW_SLAVE)
        self.transport.abort()

    def _attached(self) -> bool:
        return self.writer is not None

    def _before_close(self) -> None:
        if self.writer is not None:
            self.writer.stop()

    def _detach(self) -> None:
        assert self.writer is not None
        self.writer.flush()
        self.feed.detach(self.slave)
        unread = self.writer.buffered()
        self.writer = None
        if unread:  # (its heartbeat went unanswered, say) a new connection starts afresh
            log.warning("%s gone with %d bytes it did not read: dropped", self.peer, unread)
            self.transport.abort()


ROLES: dict[str, type[ProducerWebSocket] | type[ConsumerWebSocket]] = {
    "Producers": ProducerWebSocket,
    "Consumers": ConsumerWebSocket,
}


def close_all(host: BrokerRuntime) -> None:
    """Shutdown: close every session's connection with 1001 (going away)."""
    for session in list(host.sessions):
        session.close(CloseCode.GOING_AWAY, b"server shutting down")


# ---------------------------------------------------------------------------- durable replies
class _DurableReplies:
    """A producer's replies that wait for the disk without stalling the connection.

    Frames keep being read and published while earlier ones wait for their fsync; each
    reply goes out, in order, once the WAL batch holding its message is on disk, so one
    pipelined connection gets group commit instead of an fsync round trip per message.
    The replies a sync releases are written by the WAL's own callback (``after_durable``),
    not an iteration later behind the next read's work.
    A batch that cannot be made durable is answered ``error: storage unavailable: <reason>``
    for each of its messages, and the connection stays open (docs/durability.md).
    """

    __slots__ = ("_queue", "_session", "_waiting")

    def __init__(self, session: ProducerWebSocket) -> None:
        self._session = session
        self._queue: deque[tuple[asyncio.Future[None] | None, bytes]] = deque()
        self._waiting = False  # the first reply's ticket is not done yet

    def send(self, reply: bytes, durable: asyncio.Future[None] | None) -> None:
        """Send ``reply`` after every earlier one and once ``durable`` (if any) is done."""
        self._queue.append((durable, reply))
        if not self._waiting:
            self._drain()

    def _drain(self) -> None:
        queue = self._queue
        session = self._session
        while queue:
            durable, reply = queue[0]
            if durable is not None and not durable.done():
                self._waiting = True
                session.host.after_durable(durable, self._done)
                return
            queue.popleft()
            if durable is not None and (durable.cancelled() or durable.exception() is not None):
                # never say `ok` for a message that did not reach the disk: each `ok` of the
                # failed batch becomes `error: storage unavailable: ...`, the connection stays
                reason = str(durable.exception()) if not durable.cancelled() else "cancelled"
                reply = error_frame(reason) * (len(reply) // len(OK_FRAME))
            session._out.append(reply)

    def _done(self) -> None:
        self._waiting = False
        self._drain()
        self._session._flush()
