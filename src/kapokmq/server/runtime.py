"""Drives the sans-I/O broker from the asyncio event loop.

Dispatch runs once per loop iteration after any change (so a burst of publishes becomes
one batched write per consumer), and one timer handle sleeps until the broker's next
deadline (delay due, redelivery, expiry check). Every write enters here: ``publish``
(HTTP Send), ``publish_many`` (a WebSocket producer's read) and ``replicate`` (a slave's
copy) consult the write gate and arm the timer themselves, so no caller has to.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kapokmq.config import Config
from kapokmq.core.broker import Broker, ReplicaExtras
from kapokmq.core.trace import Source
from kapokmq.guard import KeyGuard
from kapokmq.model import Code, Message, PushBatches, Status
from kapokmq.protocol import SendItem

if TYPE_CHECKING:
    from kapokmq.server.session import Session
    from kapokmq.storage import Storage
    from kapokmq.storage.wal import WalWriter


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why producer writes are refused right now (docs/protocol.md, "Refused writes").

    ``ws_text`` follows ``error: `` in a producer's reply frame; ``http_text`` is the ``msg``
    of HTTP Send's ``{"code":-1}`` answer."""

    ws_text: str
    http_text: str
    # a fault (storage failing, sync.ack 1 without its peer): /healthz answers 503; not so
    # for a slave following its master, read-only by design
    degraded: bool = True


QUEUE_FULL = Refusal("queue full", "queue full")


class WritesRefused(Exception):
    """Raised by the publish entries while the write gate is closed."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.ws_text)
        self.refusal = refusal


def steady_clock() -> Callable[[], float]:
    """Unix seconds that never step: the system clock at start plus the monotonic time
    since. Delays, redelivery, TTLs and timestamps are measured with it, so a step of the
    system clock (set by hand or by a time sync, a VM resumed) makes no message due early
    or late (docs/protocol.md "Delayed messages")."""
    offset = time.time() - time.monotonic()
    monotonic = time.monotonic
    return lambda: offset + monotonic()


class BrokerRuntime:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.config = config
        self.broker = Broker(
            config, steady_clock(), on_dirty=self._schedule_dispatch, on_room=self._wake_producers
        )
        self._room_waiters: list[Callable[[], None]] = []
        # every consumer session's push encoder: a pub/sub batch is encoded once
        self.push_batches = PushBatches()
        self._dispatch_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.started_at = self.broker.clock()
        # durable storage (storage/manager.py) once open: see storage_opened
        self.storage: Storage | None = None
        # A master with sync.ack 1 (replication_opened): done once the slaves confirmed
        # everything published so far.
        self.replica_ticket: Callable[[], asyncio.Future[None] | None] | None = None
        # Why writes are refused (None: accepted); see refuse_writes. Read on every publish.
        self.refusal: Refusal | None = None
        self._refusals: dict[str, Refusal] = {}
        # Cluster mode (cluster_joined), for /metrics: refused gossip input by reason.
        self.gossip_refused: Callable[[], dict[str, int]] | None = None
        # A master (sync_served), for /metrics: (slaves connected, bytes unread by them,
        # slaves cut for not reading).
        self.sync_figures: Callable[[], tuple[int, int, int]] | None = None
        # wrong secret keys per source address, WebSocket and HTTP (guard.py)
        self.key_guard = KeyGuard(self.loop.time)
        # fsync `always`: called once right after the WAL next settles tickets (after_durable)
        self._durable_waiting: list[Callable[[], None]] = []
        # live producer and consumer WebSocket sessions (server/session.py), closed at shutdown
        self.sessions: set[Session] = set()
        # live lean HTTP connections, closed at shutdown too (server/http_lean.py)
        self.http_connections: set[object] = set()
        self._rearm()

    # ---------------------------------------------------------------- storage, sync, cluster
    def storage_opened(self, storage: Storage) -> None:
        """Storage's hook (storage/manager.py StorageHost): read its state from now on."""
        self.storage = storage

    def replication_opened(self, ticket: Callable[[], asyncio.Future[None] | None]) -> None:
        """A master with sync.ack 1 (cluster/replication.py Replica): every ``ok`` also
        waits for ``ticket()``, done once the slaves hold what was published so far."""
        self.replica_ticket = ticket

    def sync_served(self, figures: Callable[[], tuple[int, int, int]]) -> None:
        """A master (cluster/replication.py ReplicationHub): /metrics reports ``figures()``,
        (slaves connected, bytes unread by them, slaves cut for not reading)."""
        self.sync_figures = figures

    def cluster_joined(self, refused: Callable[[], dict[str, int]]) -> None:
        """Cluster mode (server/main.py): /metrics reports the gossip input ``refused()``
        by reason (gossip/state.py)."""
        self.gossip_refused = refused

    @property
    def durable_barrier(self) -> Callable[[], Awaitable[None]] | None:
        """fsync `always`: awaited before HTTP Send answers."""
        storage = self.storage
        return storage.durable_barrier if storage is not None else None

    def written_ticket(self) -> asyncio.Future[None] | None:
        """What an HTTP answer waits for when ``durable_ticket`` gives nothing: the WAL
        write of the loop iteration under fsync everysec and no (``Storage.written_ticket``)."""
        storage = self.storage
        return storage.written_ticket() if storage is not None else None

    @property
    def wal_stats(self) -> WalWriter | None:
        """WAL mode, for /metrics."""
        storage = self.storage
        return storage.wal if storage is not None else None

    @property
    def storage_health(self) -> Storage | None:
        """Any persistent mode, for /healthz and /metrics (``fault``, ``write_failures``)."""
        return self.storage

    # ---------------------------------------------------------------- durable replies
    @property
    def durable_ticket(self) -> Callable[[], asyncio.Future[None] | None] | None:
        """What an ``ok`` waits for: the disk (fsync ``always``), the slaves (sync.ack 1),
        both, or nothing (None)."""
        storage = self.storage
        disk = storage.durable_ticket if storage is not None else None
        if self.replica_ticket is None:
            return disk
        if disk is None:
            return self.replica_ticket
        return self._both_tickets

    def _when_durable(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` once, right after the WAL next settles tickets (fsync ``always``);
        nothing without such a WAL (a replica's ticket alone is never settled there)."""
        storage = self.storage
        if storage is not None and storage.durable_ticket is not None:
            self._durable_waiting.append(wake)

    def after_durable(self, ticket: asyncio.Future[None], then: Callable[[], None]) -> None:
        """Call ``then()`` once ``ticket`` is done: in the WAL callback that settled it, so
        a reply waiting for it goes out then, not an iteration later behind the next read's
        work (docs/durability.md); else in the ticket's own done callback (a replica's
        ticket, a closing writer). The one rule for every reply that waits for the disk."""
        pending = True

        def once(_: object = None) -> None:
            nonlocal pending
            if not pending:
                return
            if ticket.done():
                pending = False
                then()
            else:  # a sync that settled earlier tickets only
                self._when_durable(once)

        ticket.add_done_callback(once)
        self._when_durable(once)

    async def wait_durable(self, ticket: asyncio.Future[None]) -> None:
        """``after_durable`` for a coroutine; never raises ``ticket``'s failure (shared)."""
        if ticket.done():
            return
        waiter: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not waiter.done():  # not cancelled with its request
                waiter.set_result(None)

        self.after_durable(ticket, wake)
        await waiter

    def durable_settled(self) -> None:
        """Storage's hook (StorageHost): the WAL settled tickets; wake who asked."""
        waiting, self._durable_waiting = self._durable_waiting, []
        for wake in waiting:
            wake()

    def _both_tickets(self) -> asyncio.Future[None] | None:
        storage = self.storage
        assert storage is not None and storage.durable_ticket is not None
        assert self.replica_ticket is not None
        disk, replica = storage.durable_ticket(), self.replica_ticket()
        if disk is None or replica is None:
            return replica if disk is None else disk
        both: asyncio.Future[None] = self.loop.create_future()

        def settle(_: object) -> None:
            if both.done():
                return
            for part in (disk, replica):
                if not part.done():
                    continue
                if part.cancelled():
                    both.cancel()
                    return
                failure = part.exception()
                if failure is not None:
                    both.set_exception(failure)
                    return
            if disk.done() and replica.done():
                both.set_result(None)

        disk.add_done_callback(settle)
        replica.add_done_callback(settle)
        return both

    # ---------------------------------------------------------------- write gate
    def refuse_writes(
        self, source: str, ws_text: str, http_text: str | None = None, *, degraded: bool = True
    ) -> None:
        """Refuse every producer write until ``accept_writes(source)``.

        Sources are independent (e.g. "storage" while the disk fails, "slave" while a
        master is followed); writes are accepted again once no source refuses them.
        Producers get ``error: <ws_text>`` (connection kept), HTTP Send
        ``{"code":-1,"msg":<http_text>}``; while a ``degraded`` refusal holds, /healthz
        answers 503."""
        self._refusals[source] = Refusal(ws_text, http_text or ws_text, degraded)
        self.refusal = next(iter(self._refusals.values()))

    def degraded(self) -> Refusal | None:
        """The refusal that makes /healthz answer 503, if any (see ``refuse_writes``)."""
        return next((r for r in self._refusals.values() if r.degraded), None)

    def accept_writes(self, source: str) -> None:
        self._refusals.pop(source, None)
        self.refusal = next(iter(self._refusals.values()), None)

    def console_refusal(self) -> str | None:
        """Why the console may not change messages (DelMessage, DeliverNow, Requeue): while
        storage fails (the change could not be logged, so a crash would undo it:
        docs/durability.md "When the disk fails"), or while this broker follows a master
        (it does not push), whose copy is the one that counts and would undo the change
        (docs/protocol.md "Master-slave sync")."""
        storage = self._refusals.get("storage")
        if storage is not None:
            return storage.http_text
        if not self.broker.paused:
            return None  # (a master holding its pushes at start still owns its messages)
        refusal = self._refusals.get("slave")
        return refusal.http_text if refusal is not None else None

    # ---------------------------------------------------------------- publishing
    def publish(self, topic: str, data: str, delay: int, ttl: int = 0) -> Message:
        """One message, refused like ``send``."""
        self._check_gate()
        msg = self.broker.publish(topic, data, delay, ttl)
        if delay > 0 or self.broker.lifetimes:  # a due time or an expiry to wake up for
            self._rearm()
        return msg

    def send(self, topic: str, item: SendItem, source: Source | None = None) -> str:
        """One message (HTTP Send); returns its code (for a dedup id seen within the
        window, the first message's). Refused while the gate is closed or the backlog is
        full (a producer connection is held instead, see ``when_room``)."""
        self._check_gate()
        code = self.broker.publish_once(topic, item, source)
        if item[1] > 0 or self.broker.lifetimes:  # a due time or an expiry to wake up for
            self._rearm()
        return code

    def deliver_now(self, code: Code) -> bool:
        """The console's DeliverNow: a delayed message is due at once (its TTL starts)."""
        if not self.broker.deliver_now(code):
            return False
        self._rearm()
        return True

    def requeue(self, code: Code) -> bool:
        """The console's Requeue: a dead or consumed message waits again (its TTL anew)."""
        if not self.broker.requeue(code):
            return False
        self._rearm()
        return True

    def _check_gate(self) -> None:
        refusal = self.refusal
        if refusal is not None:
            raise WritesRefused(refusal)
        if self.broker.full:
            raise WritesRefused(QUEUE_FULL)

    def publish_many(self, topic: str, items: list[SendItem], source: Source | None = None) -> int:
        """A producer's (MessageData, DelayTime) frames of one read, oldest first, as far as
        the backlog room allows; returns how many were taken. ``source`` names the
        producer in the message trace."""
        refusal = self.refusal
        if refusal is not None:
            raise WritesRefused(refusal)
        taken, delayed = self.broker.publish_many(topic, items, source)
        if delayed:
            self._rearm()
        return taken

    def replicate(self, record: Message, extras: ReplicaExtras | None = None) -> None:
        """A master's view of one message, with its TTL, dead-letter history and dedup id
        (the slave side of docs/protocol.md "Master-slave sync"); not gated: it is the
        master's write, not a producer's."""
        self.broker.replicate(record)
        if extras is not None:
            self.broker.replicate_extras(record.code, extras)
        if record.status is Status.DELAYED or (extras is not None and extras.ttl):
            self._rearm()

    def restored(self) -> None:
        """Storage has put recovered messages into the broker: their timers are due."""
        self._rearm()

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon once the backlog is below messageChanBuffer (a held
        producer, docs/protocol.md "Producer session")."""
        if self.broker.full:
            self._room_waiters.append(callback)
        else:
            self.loop.call_soon(callback)

    def _wake_producers(self) -> None:
        waiters, self._room_waiters = self._room_waiters, []
        for callback in waiters:  # soon, not now: the broker is inside an ack or a delete
            self.loop.call_soon(callback)

    # ---------------------------------------------------------------- dispatch & timers
    def _schedule_dispatch(self) -> None:
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self.loop.call_soon(self._run_dispatch)

    def _run_dispatch(self) -> None:
        self._dispatch_pending = False
        if self.broker.dispatch():
            self._rearm()

    def _rearm(self) -> None:
        """Make sure the timer fires by the broker's next deadline."""
        deadline = self.broker.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        # +1 ms: the loop may fire a timer up to its clock resolution early
        delay = max(0.0, deadline - self.broker.clock()) + 0.001
        self._timer = self.loop.call_at(self.loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.broker.tick()
        self.broker.dispatch()
        self._rearm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
