"""Drives the sans-I/O broker from the asyncio event loop.

Dispatch runs once per loop iteration after any change (so a burst of publishes becomes
one batched write per consumer), and one timer handle sleeps until the broker's next
deadline (delay due, redelivery, expiry check).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from kapokmq.config import Config
from kapokmq.core.broker import Broker
from kapokmq.model import Message


class WalStats(Protocol):
    """What /metrics reads from the write-ahead log."""

    appended: int
    syncs: int
    sync_seconds: float
    max_sync_seconds: float


class StorageHealth(Protocol):
    """What /healthz and /metrics read from durable storage (storage/manager.py)."""

    @property
    def fault(self) -> str | None: ...  # why storage is unavailable now; None when healthy

    @property
    def write_failures(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why producer writes are refused right now (docs/protocol.md, "Refused writes").

    ``ws_text`` follows ``error: `` in a producer's reply frame; ``http_text`` is the ``msg``
    of HTTP Send's ``{"code":-1}`` answer."""

    ws_text: str
    http_text: str


class BrokerRuntime:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.config = config
        self.broker = Broker(config, time.time, on_dirty=self._schedule_dispatch)
        self.broker.on_room = self._wake_producers
        self._dispatch_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._room = asyncio.Event()
        self._room.set()
        self.started_at = time.time()
        # Set by durable storage (fsync policy `always`): awaited before HTTP Send answers.
        self.durable_barrier: Callable[[], Awaitable[None]] | None = None
        # Same policy, for pipelined producers: a future done once everything published so
        # far is on disk (None if it already is); replies wait on it without blocking reads.
        self.durable_ticket: Callable[[], asyncio.Future[None] | None] | None = None
        # Set by durable storage in WAL mode, for /metrics.
        self.wal_stats: WalStats | None = None
        # Set by durable storage (any persistent mode), for /healthz and /metrics.
        self.storage_health: StorageHealth | None = None
        # Why writes are refused (None: accepted); see refuse_writes. Read on every publish.
        self.refusal: Refusal | None = None
        self._refusals: dict[str, Refusal] = {}
        # Set in cluster mode, for /metrics: refused gossip input by reason (gossip/state.py).
        self.gossip_refused: Callable[[], dict[str, int]] | None = None
        # live picows WebSocket connections, closed at shutdown (server/ws_picows.py)
        self.websockets: set[object] = set()
        self.rearm()

    # ---------------------------------------------------------------- write gate
    def refuse_writes(self, source: str, ws_text: str, http_text: str | None = None) -> None:
        """Refuse every producer write until ``accept_writes(source)``.

        Sources are independent (e.g. "storage" while the disk fails, "slave" while a
        master is followed); writes are accepted again once no source refuses them.
        Producers get ``error: <ws_text>`` (connection kept), HTTP Send
        ``{"code":-1,"msg":<http_text>}``."""
        self._refusals[source] = Refusal(ws_text, http_text or ws_text)
        self.refusal = next(iter(self._refusals.values()))

    def accept_writes(self, source: str) -> None:
        self._refusals.pop(source, None)
        self.refusal = next(iter(self._refusals.values()), None)

    # ---------------------------------------------------------------- publishing
    def publish(self, topic: str, data: str, delay: int) -> Message:
        msg = self.broker.publish(topic, data, delay)
        if delay > 0:
            self.rearm()
        return msg

    async def wait_for_room(self) -> None:
        """Block a producer while the backlog is at messageChanBuffer (back-pressure)."""
        while self.broker.full:
            self._room.clear()
            await self._room.wait()

    def _wake_producers(self) -> None:
        self._room.set()

    # ---------------------------------------------------------------- dispatch & timers
    def _schedule_dispatch(self) -> None:
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self.loop.call_soon(self._run_dispatch)

    def _run_dispatch(self) -> None:
        self._dispatch_pending = False
        if self.broker.dispatch():
            self.rearm()

    def rearm(self) -> None:
        """Make sure the timer fires by the broker's next deadline (call after restores)."""
        deadline = self.broker.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        # +1 ms: the loop may fire a timer up to its clock resolution early
        delay = max(0.0, deadline - time.time()) + 0.001
        self._timer = self.loop.call_at(self.loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.broker.tick()
        self.broker.dispatch()
        self.rearm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
