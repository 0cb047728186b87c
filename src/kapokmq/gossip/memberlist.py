"""The running gossip node: binds the transport to the membership state.

``Memberlist`` owns the asyncio side: the UDP/TCP handlers, the probe,
gossip and push/pull loops, and the suspicion timer. Every protocol decision
is delegated to ``Membership`` (state.py) so that it stays testable without
sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from kapokmq.gossip.codec import (
    COMPOUND_HEADER_OVERHEAD,
    COMPOUND_OVERHEAD,
    PACKET_BODIES,
    Ack,
    Alive,
    CodecError,
    Dead,
    ErrResp,
    IndirectPing,
    MsgType,
    Nack,
    Ping,
    PushNodeState,
    Suspect,
    add_crc,
    compress_payload,
    encode,
    ip_from_bytes,
    ip_to_bytes,
    make_compound,
    unpack,
    unwrap_packet,
)
from kapokmq.gossip.config import GossipConfig
from kapokmq.gossip.crypto import DecryptError, encrypt_overhead, encryption_version
from kapokmq.gossip.state import (
    GossipStats,
    Member,
    Membership,
    NodeEvent,
    NodeStatus,
    ProtocolMismatch,
)
from kapokmq.gossip.stream import (
    PushPull,
    StreamBudget,
    StreamMessage,
    StreamPolicy,
    UserStream,
    encode_stream,
    read_stream,
    seal_stream,
)
from kapokmq.gossip.transport import Address, Transport, connect

log = logging.getLogger(__name__)

Seed = tuple[str, int] | str
EventCallback = Callable[[NodeEvent], None]
_PUSH_PULL_SCALE_THRESHOLD = 32
_MAX_PUSH_PULL_REQUESTS = 128  # memberlist's maxPushPullRequests
# Refused input (GossipStats) is logged as one WARNING per this many seconds at most, with
# the counts and the last reason: a wrong key shows in the log without flooding it.
REFUSALS_LOGGED_EVERY = 10.0
_MERGE_SLICE = 256  # node states merged between two yields to the event loop


class EventStream:
    """Async iterator of NodeEvents; subscribed as soon as it is created."""

    def __init__(self, subscribers: list[asyncio.Queue[NodeEvent | None]]) -> None:
        self._subscribers = subscribers
        self._queue: asyncio.Queue[NodeEvent | None] = asyncio.Queue()
        subscribers.append(self._queue)
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> NodeEvent:
        if self._closed:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            await self.aclose()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._subscribers.remove(self._queue)


class JoinError(ConnectionError):
    """No seed could be joined; the message lists each seed's failure."""


class _PendingAck:
    """Waits for the ack (or counts the nacks) of one probe sequence number."""

    def __init__(self) -> None:
        self.acked = asyncio.Event()
        self.nacks = 0

    async def wait(self, timeout: float) -> bool:
        if self.acked.is_set():
            return True
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
            async with asyncio.timeout(max(timeout, 0.0)):
                await self.acked.wait()
        except TimeoutError:
            return False
        return True


def _parse_seed(seed: Seed, default_port: int) -> Address:
    if isinstance(seed, tuple):
        return seed
    host, sep, port = seed.rpartition(":")
    if not sep or "]" in port:
        return seed, default_port
    return host.strip("[]"), int(port)


def _push_pull_scale(interval: float, n: int) -> float:
    if n <= _PUSH_PULL_SCALE_THRESHOLD:
        return interval
    return (math.ceil(math.log2(n) - math.log2(_PUSH_PULL_SCALE_THRESHOLD)) + 1) * interval


def _pick_advertise_addr(bind_addr: str) -> str:
    if bind_addr not in ("", "0.0.0.0", "::"):
        return bind_addr
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent; this only picks a route
        addr: str = s.getsockname()[0]
        return addr
    return "127.0.0.1"


class Memberlist:
    """A SWIM member wire-compatible with hashicorp/memberlist 0.2.2."""

    def __init__(self, config: GossipConfig, *, rng: random.Random | None = None) -> None:
        config.validate()
        self.config = config
        self._rng = rng or random.Random()
        self._state = Membership(config, clock=self._now, rng=self._rng)
        self._state.listener = self._dispatch_event
        self._transport = Transport(self._on_packet, self._on_stream)
        self._callbacks: list[EventCallback] = []
        self._subscribers: list[asyncio.Queue[NodeEvent | None]] = []
        self._acks: dict[int, _PendingAck] = {}
        self._seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._addr = ""
        self._port = 0
        self._running = False
        self._user_handler: Callable[[bytes], None] | None = None
        self._push_pulls_in_flight = 0
        # incoming streams still being read, oldest first: at the cap the oldest gives way
        self._reading: dict[asyncio.StreamWriter, None] = {}
        # what those streams hold together: two streams of the largest size accepted
        self._stream_budget = StreamBudget(2 * config.max_push_pull_bytes)
        self._logged_refusals: dict[str, int] = {}
        self._refusals_logged_at = -REFUSALS_LOGGED_EVERY
        self._last_refusal = ""
        self._keyring = config.keyring
        self._encrypt_out = config.keyring is not None and config.gossip_verify_outgoing
        self._encryption_version = encryption_version(config.protocol_version)
        self._stream_policy = StreamPolicy(
            keyring=config.keyring,
            verify_incoming=config.gossip_verify_incoming,
            max_bytes=config.max_push_pull_bytes,
            max_nodes=config.max_push_pull_nodes,
        )
        # Room a piggy-backing packet leaves for encryption (memberlist's sendMsg).
        self._packet_room = config.udp_buffer_size - (
            encrypt_overhead(self._encryption_version) if self._encrypt_out else 0
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the sockets, create our own alive entry and start the loops."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        bound = await self._transport.start(cfg.bind_addr, cfg.bind_port)
        self._addr = cfg.advertise_addr or _pick_advertise_addr(cfg.bind_addr)
        self._port = cfg.advertise_port or bound
        self._state.bootstrap(ip_to_bytes(self._addr), self._port)
        self._running = True
        self._spawn(self._probe_loop())
        self._spawn(self._gossip_loop())
        self._spawn(self._push_pull_loop())
        log.info("gossip node %s listening on %s:%d", cfg.name, self._addr, self._port)

    async def join(self, seeds: Iterable[Seed]) -> int:
        """Push/pull with each seed; returns how many answered, raises JoinError if none."""
        self._require_running()
        joined = 0
        errors: list[str] = []
        for seed in seeds:
            addr = _parse_seed(seed, self.config.bind_port or self._port)
            try:
                await self._push_pull(addr, join=True)
                joined += 1
            except (OSError, TimeoutError, CodecError, ProtocolMismatch) as exc:
                errors.append(f"{addr[0]}:{addr[1]}: {exc}")
                log.warning("failed to join %s:%d: %s", addr[0], addr[1], exc)
        if joined == 0:
            raise JoinError("could not join any seed: " + ("; ".join(errors) or "no seeds given"))
        return joined

    async def leave(self, timeout: float = 5.0) -> bool:
        """Broadcast our departure; True once it was gossiped (or nobody is listening)."""
        self._require_running()
        if self._state.leaving:
            return True
        done = asyncio.Event()
        self._state.leave(on_done=done.set)
        if not self._state.any_alive_peer():
            return True
        try:
            async with asyncio.timeout(timeout):
                await done.wait()
        except TimeoutError:
            log.warning("timed out waiting for the leave broadcast")
            return False
        return True

    async def shutdown(self) -> None:
        """Stop all loops and close the sockets, without telling anyone (no leave)."""
        if not self._running:
            return
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._transport.close()
        for queue in self._subscribers:
            queue.put_nowait(None)

    async def __aenter__(self) -> Memberlist:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # ------------------------------------------------------------ queries

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def address(self) -> Address:
        """The advertised (host, port), used for both UDP and TCP."""
        return self._addr, self._port

    @property
    def port(self) -> int:
        return self._port

    def members(self) -> list[Member]:
        """Alive and suspect members, ourselves included."""
        return self._state.members()

    def num_members(self) -> int:
        return len(self._state.members())

    def local_member(self) -> Member:
        return self._state.local()

    def all_nodes(self) -> list[Member]:
        """Every node in the table, dead and left ones included until reaped."""
        return self._state.all_nodes()

    @property
    def stats(self) -> GossipStats:
        """Counters of refused packets, streams and introductions."""
        return self._state.stats

    @property
    def encrypted(self) -> bool:
        return self._keyring is not None

    def update_meta(self, meta: bytes) -> None:
        """Publish new node metadata (incarnation + 1, gossiped to everyone)."""
        self._require_running()
        self._state.update_meta(meta)

    # ------------------------------------------------------------ events

    def add_listener(self, callback: EventCallback) -> None:
        """Call ``callback(NodeEvent)`` on every join, leave and update (in the loop)."""
        self._callbacks.append(callback)

    def events(self) -> EventStream:
        """Membership events from this call on, as an async iterator (ends at shutdown)."""
        return EventStream(self._subscribers)

    def on_user_message(self, handler: Callable[[bytes], None] | None) -> None:
        """Receive raw user messages (type 8), e.g. serf's own traffic."""
        self._user_handler = handler

    def _dispatch_event(self, event: NodeEvent) -> None:
        for callback in self._callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("gossip event callback failed")
        for queue in self._subscribers:
            queue.put_nowait(event)

    # ------------------------------------------------------------ helpers

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else time.monotonic()

    def _give_way(self, writer: asyncio.StreamWriter) -> None:
        """Close a stream still being read to make room for others (counted as refused)."""
        self.stats.streams_refused += 1
        writer.transport.abort()

    def _refused(self, why: str, src: Address) -> None:
        self._last_refusal = f"{why} (from {src[0]}:{src[1]})"
        log.debug("%s", self._last_refusal)

    def _log_refusals(self) -> None:
        """One WARNING per REFUSALS_LOGGED_EVERY at most, if input was refused since."""
        now = self._now()
        if now - self._refusals_logged_at < REFUSALS_LOGGED_EVERY:
            return
        counts = self.stats.as_dict()
        before = self._logged_refusals
        rises = [f"{n - before.get(k, 0)} {k}" for k, n in counts.items() if n > before.get(k, 0)]
        if rises:
            log.warning(
                "gossip input refused since the last such line: %s; last: %s",
                ", ".join(rises),
                self._last_refusal or "-",
            )
            self._logged_refusals, self._refusals_logged_at = counts, now

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError("gossip node is not running; call start() first")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _reschedule_timer(self) -> None:
        """Arm one timer for the earliest suspicion deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._state.next_deadline()
        if deadline is not None and self._loop is not None and self._running:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._state.expire_suspicions()
        self._reschedule_timer()

    # ------------------------------------------------------------ sending

    def _send(self, addr: Address, msg: bytes, target: str | None = None) -> None:
        """Send one message, piggy-backing queued broadcasts in a compound."""
        room = self._packet_room - len(msg) - COMPOUND_HEADER_OVERHEAD
        extra = self._state.broadcasts.get(COMPOUND_OVERHEAD, room)
        if extra:
            msg = make_compound([msg, *extra])
        self._send_raw(addr, msg, target)

    def _send_raw(self, addr: Address, payload: bytes, target: str | None) -> None:
        if self.config.enable_compression:
            compressed = compress_payload(payload)
            if len(compressed) < len(payload):
                payload = compressed
        if target is not None and self._state.pmax_of(target) >= 5:
            payload = add_crc(payload)
        if self._encrypt_out:
            assert self._keyring is not None
            payload = self._keyring.encrypt(self._encryption_version, payload)
        self._transport.send(payload, addr)

    def _seal(self, data: bytes) -> bytes:
        """An encoded stream message as it goes on the wire (encrypted if configured)."""
        if not self._encrypt_out:
            return data
        return seal_stream(data, self._keyring, self.config.protocol_version)

    def _self_ping(self, seq: int, target: str) -> Ping:
        return Ping(seq, target, ip_to_bytes(self._addr), self._port, self.name)

    # ------------------------------------------------------------ UDP input

    def _on_packet(self, data: bytes, src: Address) -> None:
        if not self._running:
            return
        if self._keyring is not None:
            try:
                data = self._keyring.decrypt(data)
            except DecryptError as exc:
                if self.config.gossip_verify_incoming:
                    self.stats.packets_unencrypted += 1
                    self._refused(f"decrypt packet failed: {exc}", src)
                    return
        try:
            messages = unwrap_packet(data)
        except CodecError as exc:
            self.stats.packets_malformed += 1
            self._refused(f"malformed packet: {exc}", src)
            return
        changed = False
        for msg in messages:
            try:
                changed |= self._handle_message(msg, src)
            except CodecError as exc:
                self.stats.packets_malformed += 1
                self._refused(f"bad message of type {msg[0]}: {exc}", src)
        if changed:
            self._reschedule_timer()

    def _handle_message(self, msg: bytes, src: Address) -> bool:
        """Handle one message; returns True if node states may have changed."""
        kind = msg[0]
        if kind == MsgType.USER:
            if self._user_handler is not None:
                self._user_handler(msg[1:])
            return False
        body_type = PACKET_BODIES.get(kind)
        if body_type is None:  # counted as malformed by the caller (Go: "not supported")
            raise CodecError(f"msg type ({kind}) not supported")
        body = unpack(body_type, msg[1:])
        if isinstance(body, Ping):
            self._handle_ping(body, src)
        elif isinstance(body, IndirectPing):
            self._handle_indirect_ping(body, src)
        elif isinstance(body, Ack):
            pending = self._acks.get(body.seq_no)
            if pending is not None:
                pending.acked.set()
        elif isinstance(body, Nack):
            pending = self._acks.get(body.seq_no)
            if pending is not None:
                pending.nacks += 1
        elif isinstance(body, Alive):
            self._state.on_alive(body)
            return True
        elif isinstance(body, Suspect):
            self._state.on_suspect(body)
            return True
        elif isinstance(body, Dead):
            self._state.on_dead(body)
            return True
        return False

    def _reply_addr(self, addr: bytes | None, port: int, src: Address) -> Address:
        if addr and port:
            return ip_from_bytes(addr), port
        return src

    def _handle_ping(self, ping: Ping, src: Address) -> None:
        if ping.node and ping.node != self.name:
            log.warning("got ping for unexpected node %r from %s:%d", ping.node, *src)
            return
        dest = self._reply_addr(ping.source_addr, ping.source_port, src)
        self._send(dest, encode(Ack(ping.seq_no, None)), ping.source_node or None)

    def _handle_indirect_ping(self, req: IndirectPing, src: Address) -> None:
        requester = self._reply_addr(req.source_addr, req.source_port, src)
        target: Address = (ip_from_bytes(req.target), req.port or self._port)
        seq = self._next_seq()
        pending = _PendingAck()
        self._acks[seq] = pending
        self._send(target, encode(self._self_ping(seq, req.node)), req.node)

        async def relay() -> None:
            try:
                if await pending.wait(self.config.probe_timeout):
                    self._send(requester, encode(Ack(req.seq_no, None)), req.source_node or None)
                elif req.nack:
                    self._send(requester, encode(Nack(req.seq_no)), req.source_node or None)
            finally:
                self._acks.pop(seq, None)

        self._spawn(relay())

    # ------------------------------------------------------------ TCP

    async def _on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        compress = self.config.enable_compression
        if self._push_pulls_in_flight >= _MAX_PUSH_PULL_REQUESTS:
            # A real peer sends its whole message at once; streams that hold a slot without
            # finishing theirs (an outsider's idle connections) must not lock peers out, so
            # the oldest one still being read is closed to make room (docs/gossip.md).
            self.stats.streams_refused += 1
            if not self._reading:
                log.warning("too many pending push/pull requests")
                return
            oldest = next(iter(self._reading))
            del self._reading[oldest]
            oldest.transport.abort()  # (counted above)
        # Counted from the first byte: a slow stream holds a slot like a finished one.
        self._push_pulls_in_flight += 1
        self._reading[writer] = None
        claim = self._stream_budget.claim(lambda: self._give_way(writer))
        try:
            try:
                msg = await read_stream(reader, self.config.tcp_timeout, self._stream_policy, claim)
            except CodecError as exc:
                self.stats.streams_refused += 1
                peer = writer.get_extra_info("peername") or ("?", 0)
                self._refused(f"refused stream: {exc}", (str(peer[0]), int(peer[1])))
                writer.write(self._seal(encode_stream(ErrResp(str(exc)), compress=compress)))
                await writer.drain()
                return
            finally:
                self._reading.pop(writer, None)
                claim.release()
            if isinstance(msg, PushPull):
                reply = PushPull(join=msg.join, states=self._state.push_pull_states())
                writer.write(self._seal(encode_stream(reply, compress=compress)))
                await writer.drain()
                try:
                    await self._merge(msg.states)
                except ProtocolMismatch as exc:
                    log.warning("failed push/pull merge: %s", exc)
                return
        finally:
            self._push_pulls_in_flight -= 1
        if isinstance(msg, Ping):
            if msg.node and msg.node != self.name:
                log.warning("got TCP ping for unexpected node %r", msg.node)
                return
            writer.write(self._seal(encode_stream(Ack(msg.seq_no, None), compress=compress)))
            await writer.drain()
        elif isinstance(msg, UserStream):
            if self._user_handler is not None:
                self._user_handler(msg.payload)
        else:
            log.debug("unexpected stream message %s", type(msg).__name__)

    async def _exchange(self, addr: Address, msg: StreamMessage, deadline: float) -> StreamMessage:
        """Open a stream, send ``msg``, read one reply, close."""
        timeout = deadline - self._now()
        reader, writer = await connect(addr, max(timeout, 0.001))
        try:
            writer.write(self._seal(encode_stream(msg, compress=self.config.enable_compression)))
            await writer.drain()
            timeout = max(deadline - self._now(), 0.001)
            return await read_stream(reader, timeout, self._stream_policy)
        finally:
            writer.close()

    async def _merge(self, states: list[PushNodeState]) -> None:
        """Merge a remote table in slices, so a big one does not hold the event loop."""
        try:
            self._state.verify_protocol(states)
            for start in range(0, len(states), _MERGE_SLICE):
                if start:
                    await asyncio.sleep(0)
                self._state.apply_remote(states[start : start + _MERGE_SLICE])
        finally:
            self._reschedule_timer()

    async def _push_pull(self, addr: Address, *, join: bool) -> None:
        request = PushPull(join=join, states=self._state.push_pull_states())
        reply = await self._exchange(addr, request, self._now() + self.config.tcp_timeout)
        if isinstance(reply, Ack | Ping | UserStream):
            raise CodecError(f"unexpected push/pull reply {type(reply).__name__}")
        if not isinstance(reply, PushPull):
            raise ConnectionError(f"remote error: {reply.error}")
        await self._merge(reply.states)

    async def _tcp_ping(self, target: Member, seq: int, deadline: float) -> bool:
        try:
            ping = self._self_ping(seq, target.name)
            reply = await self._exchange((target.addr, target.port), ping, deadline)
        except (OSError, TimeoutError, CodecError) as exc:
            log.debug("TCP ping to %s failed: %s", target.name, exc)
            return False
        return isinstance(reply, Ack) and reply.seq_no == seq

    # ------------------------------------------------------------ loops

    async def _stagger(self, interval: float) -> None:
        await asyncio.sleep(self._rng.uniform(0, interval))

    async def _probe_loop(self) -> None:
        interval = self.config.probe_interval
        await self._stagger(interval)
        while self._running:
            started = self._now()
            self._log_refusals()
            target = self._state.next_probe_target()
            if target is not None:
                try:
                    await self._probe(target)
                except Exception:
                    log.exception("probe of %s failed unexpectedly", target.name)
            # Like Go's ticker: a slow probe swallows the ticks it overran.
            elapsed = self._now() - started
            await asyncio.sleep(interval - (elapsed % interval))

    async def _probe(self, target: Member) -> None:
        cfg = self.config
        seq = self._next_seq()
        pending = _PendingAck()
        self._acks[seq] = pending
        try:
            msg = encode(self._self_ping(seq, target.name))
            if target.state == NodeStatus.SUSPECT:
                suspect = Suspect(target.incarnation, target.name, self.name)
                msg = make_compound([msg, encode(suspect)])
            sent = self._now()
            deadline = sent + self._state.awareness.scale(cfg.probe_interval)
            self._send((target.addr, target.port), msg, target.name)
            if await pending.wait(cfg.probe_timeout):
                self._state.awareness.apply_delta(-1)
                return

            expected_nacks = 0
            for relay in self._state.indirect_relays(target.name):
                want_nack = relay.protocol[1] >= 4
                expected_nacks += want_nack
                req = IndirectPing(
                    seq,
                    ip_to_bytes(target.addr),
                    target.port,
                    target.name,
                    want_nack,
                    ip_to_bytes(self._addr),
                    self._port,
                    self.name,
                )
                self._send((relay.addr, relay.port), encode(req), relay.name)

            tcp: asyncio.Task[bool] | None = None
            if not cfg.disable_tcp_pings and target.protocol[1] >= 3:
                tcp = asyncio.create_task(self._tcp_ping(target, self._next_seq(), deadline))
            acked = await pending.wait(deadline - self._now())
            if tcp is not None:
                if acked:
                    tcp.cancel()
                elif await tcp:
                    log.warning(
                        "was able to connect to %s over TCP but not UDP, "
                        "network may be misconfigured",
                        target.name,
                    )
                    return
            if acked:
                return
            if expected_nacks > 0:
                self._state.awareness.apply_delta(max(expected_nacks - pending.nacks, 0))
            else:
                self._state.awareness.apply_delta(1)
            log.info("suspect %s has failed, no acks received", target.name)
            self._state.on_suspect(Suspect(target.incarnation, target.name, self.name))
            self._reschedule_timer()
        finally:
            self._acks.pop(seq, None)

    async def _gossip_loop(self) -> None:
        cfg = self.config
        await self._stagger(cfg.gossip_interval)
        while self._running:
            self._gossip_once()
            await asyncio.sleep(cfg.gossip_interval)

    def _gossip_once(self) -> None:
        room = self._packet_room - COMPOUND_HEADER_OVERHEAD
        for target in self._state.gossip_targets():
            msgs = self._state.broadcasts.get(COMPOUND_OVERHEAD, room)
            if not msgs:
                return
            payload = msgs[0] if len(msgs) == 1 else make_compound(msgs)
            self._send_raw((target.addr, target.port), payload, target.name)

    async def _push_pull_loop(self) -> None:
        cfg = self.config
        await self._stagger(cfg.push_pull_interval)
        while self._running:
            target = self._state.push_pull_target()
            if target is not None:
                try:
                    await self._push_pull((target.addr, target.port), join=False)
                except Exception as exc:
                    log.warning("push/pull with %s failed: %s", target.name, exc)
            n = self._state.estimated_size()
            await asyncio.sleep(_push_pull_scale(cfg.push_pull_interval, n))


GossipNode = Memberlist

__all__ = ["GossipNode", "JoinError", "Memberlist"]
