"""Cluster clients (docs/client.md, docs/cluster.md): follow a registry's broker list and
use every broker.

* `fetch_nodes` asks a registry (`POST /Registry/GetNodes`) for the live brokers.
* `ClusterProducer` keeps a `Producer` open to every broker and sends each message to one
  of them (round-robin or random). When a broker dies, the messages it had not confirmed
  are sent again to another broker: a send either returns the name of the broker that
  answered ``ok`` or raises. (At-least-once: a message whose ``ok`` was lost with the
  broker may be stored twice.)
* `ClusterConsumer` consumes one topic from every broker and merges the messages.

Both re-read the registry every ``check_interval`` seconds (and at once when a broker
fails), connecting to brokers that joined and closing the ones that left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from kapokmq.client.backoff import Backoff
from kapokmq.client.connection import DEFAULT_HEARTBEAT, DEFAULT_SECRET_KEY
from kapokmq.client.consumer import Consumer
from kapokmq.client.errors import (
    ApiError,
    AuthenticationError,
    ClientClosedError,
    ConnectionLostError,
    KapokMQError,
    ProtocolError,
    SendError,
)
from kapokmq.client.http import ConsoleClient
from kapokmq.client.lifecycle import Connectable, MessageStream
from kapokmq.client.message import Message
from kapokmq.client.producer import DataLike, Producer, encode_send, with_message_ids
from kapokmq.client.sync import _Closing, _SyncReceiver, run
from kapokmq.login import MISMATCH

log = logging.getLogger("kapokmq.client.cluster")

GET_NODES = "/Registry/GetNodes"
Strategy = Literal["round_robin", "random"]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One broker as the registry lists it (``Port`` is its HTTP port)."""

    name: str
    addr: str
    port: int

    def url(self, scheme: str = "http") -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{scheme}://{host}:{self.port}"


def parse_nodes(answer: object) -> list[NodeInfo]:
    """Decode a GetNodes answer: a JSON array of ``{"Name","Addr","Port"}`` (or null)."""
    if answer is None:
        return []  # the original registry encodes an empty list as null
    if not isinstance(answer, list):
        raise ProtocolError(f"GetNodes answered {str(answer)[:200]!r}, not a list")
    nodes = []
    for item in answer:
        try:
            nodes.append(NodeInfo(str(item["Name"]), str(item["Addr"]), int(item["Port"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad GetNodes entry {item!r}") from exc
    return nodes


async def fetch_nodes(
    registry_url: str,
    secret_key: str = DEFAULT_SECRET_KEY,
    *,
    timeout: float = 10.0,
    session: aiohttp.ClientSession | None = None,
) -> list[NodeInfo]:
    """The live brokers of a cluster, from its registry (e.g. ``http://127.0.0.1:8031``).

    Raises ConnectionLostError if the registry can't be reached, AuthenticationError on a
    wrong key, ProtocolError if the answer is not a node list.
    """
    async with ConsoleClient(registry_url, secret_key, timeout=timeout, session=session) as api:
        try:
            answer = await api.request(GET_NODES)
        except ApiError as exc:
            if exc.msg == MISMATCH:
                raise AuthenticationError(
                    f"the registry rejected the secret key: {exc.msg}"
                ) from exc
            raise
    return parse_nodes(answer)


class _Follower(Connectable):
    """Registry polling and the connect/close bookkeeping shared by both cluster clients."""

    kind = "client"

    def __init__(
        self,
        registry_url: str,
        secret_key: str,
        *,
        registry_secret_key: str | None,
        check_interval: float,
        scheme: str,
        connect_timeout: float,
        session: aiohttp.ClientSession | None,
    ) -> None:
        if check_interval <= 0:
            raise ValueError("check_interval must be positive")
        self.registry_url = registry_url
        self.check_interval = check_interval
        self.scheme = scheme
        self.connect_timeout = connect_timeout
        self._secret_key = secret_key
        self._registry_key = secret_key if registry_secret_key is None else registry_secret_key
        self._http = session
        self._own_http = session is None
        self._listed: dict[str, NodeInfo] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, KapokMQError] = {}  # why each broker's last connect failed
        self._poll_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._closers: set[asyncio.Task[None]] = set()
        self._connect_lock = asyncio.Lock()
        self._started = False
        self._closing = False
        self.refreshes = 0

    # -- life cycle --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Read the registry (errors raised at once) and connect to every broker listed."""
        async with self._connect_lock:
            if self._closing:
                raise ClientClosedError(f"cluster {self.kind} is closed")
            if self._started:
                return
            if self._http is None:
                self._http = aiohttp.ClientSession()
            try:
                nodes = await self._fetch()
            except BaseException:
                if self._own_http:  # a failed first connect leaves nothing open
                    await self._http.close()
                    self._http = None
                raise
            self._started = True
            self._reconcile(nodes)
            if self._connecting:
                await asyncio.wait(list(self._connecting.values()), timeout=self.connect_timeout)
            refused = [n for n, e in self._failures.items() if isinstance(e, AuthenticationError)]
            if nodes and not self._connected_names() and len(refused) == len(nodes):
                # Retrying cannot help, and a consumer would otherwise wait forever.
                await self.close()
                raise AuthenticationError(
                    f"every broker the registry lists rejected the secret key: "
                    f"{', '.join(sorted(refused))}"
                )
            self._poll_task = asyncio.create_task(
                self._poll_loop(), name=f"kapokmq-cluster-{self.kind}"
            )

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._changed.set()
        tasks = [t for t in (self._poll_task, *self._connecting.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_all()
        if self._own_http and self._http is not None:
            await self._http.close()

    # -- membership --------------------------------------------------------------------------

    @property
    def listed(self) -> list[NodeInfo]:
        """The brokers the registry listed at the last successful poll."""
        return list(self._listed.values())

    async def refresh(self) -> None:
        """Poll the registry now (also done every ``check_interval``)."""
        self._reconcile(await self._fetch())

    async def _fetch(self) -> list[NodeInfo]:
        return await fetch_nodes(
            self.registry_url, self._registry_key, timeout=self.connect_timeout, session=self._http
        )

    async def _poll_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
            except KapokMQError as exc:
                log.warning("cluster %s: registry %s: %s", self.kind, self.registry_url, exc)

    def _reconcile(self, nodes: list[NodeInfo]) -> None:
        self.refreshes += 1
        if self._closing:
            return
        listed = {n.name: n for n in nodes}
        self._listed = listed
        for name in [n for n in self._failures if n not in listed]:
            del self._failures[name]
        for name in self._connected_names():
            if name not in listed:
                log.info("cluster %s: %s left the cluster; closing", self.kind, name)
                self._forget(name)
        loop = asyncio.get_running_loop()
        now = loop.time()
        for name, node in listed.items():
            if name in self._connecting or self._is_connected(name):
                continue
            if now < self._retry_at.get(name, 0.0):
                continue
            task = asyncio.create_task(self._open(node), name=f"kapokmq-cluster-connect-{name}")
            self._connecting[name] = task

    async def _open(self, node: NodeInfo) -> None:
        try:
            await self._attach(node)
        except AuthenticationError as exc:
            log.error("cluster %s: %s rejected the secret key: %s", self.kind, node.name, exc)
            self._failures[node.name] = exc
            self._retry_later(node.name)
        except (KapokMQError, OSError) as exc:
            log.info("cluster %s: cannot connect to %s: %s", self.kind, node.name, exc)
            failure = exc if isinstance(exc, KapokMQError) else ConnectionLostError(str(exc))
            self._failures[node.name] = failure
            self._retry_later(node.name)
        else:
            self._retry_at.pop(node.name, None)
            self._failures.pop(node.name, None)
            log.info("cluster %s: connected to %s", self.kind, node.name)
            self._changed.set()
            self._changed = asyncio.Event()
        finally:
            self._connecting.pop(node.name, None)

    def _retry_later(self, name: str) -> None:
        self._retry_at[name] = asyncio.get_running_loop().time() + self.check_interval

    def _node_failed(self, name: str) -> None:
        """A broker's connection died: forget it, and ask the registry at once."""
        self._forget(name)
        self._retry_later(name)
        self._wake.set()

    # -- for subclasses ----------------------------------------------------------------------

    async def _attach(self, node: NodeInfo) -> None:
        raise NotImplementedError

    def _connected_names(self) -> list[str]:
        raise NotImplementedError

    def _is_connected(self, name: str) -> bool:
        raise NotImplementedError

    def _forget(self, name: str) -> None:
        """Stop using the broker ``name`` and close its connection in the background."""
        raise NotImplementedError

    async def _close_all(self) -> None:
        raise NotImplementedError

    def _spawn_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await closer()

        task = asyncio.create_task(run())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)


class ClusterProducer(_Follower):
    """Publishes to ``topic`` on every broker of a cluster.

    ``await send(data)`` returns the name of the broker that stored the message. If that
    broker's connection drops before it answers, the message is sent to another broker;
    if no broker accepts it within ``send_timeout`` seconds, ConnectionLostError is raised.
    A broker's own refusal (``error: ...``) raises SendError at once.
    """

    kind = "producer"

    def __init__(
        self,
        registry_url: str,
        topic: str,
        producer_id: str,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        registry_secret_key: str | None = None,
        strategy: Strategy = "round_robin",
        check_interval: float = 5.0,
        send_timeout: float = 30.0,
        max_in_flight: int = 1000,
        connect_timeout: float = 10.0,
        close_timeout: float = 10.0,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        scheme: str = "http",
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if strategy not in ("round_robin", "random"):
            raise ValueError("strategy must be 'round_robin' or 'random'")
        super().__init__(
            registry_url,
            secret_key,
            registry_secret_key=registry_secret_key,
            check_interval=check_interval,
            scheme=scheme,
            connect_timeout=connect_timeout,
            session=session,
        )
        self.topic = topic
        self.producer_id = producer_id
        self.strategy = strategy
        self.send_timeout = send_timeout
        self.max_in_flight = max_in_flight
        self.close_timeout = close_timeout
        self.heartbeat = heartbeat
        self._producers: dict[str, Producer] = {}
        self._order: list[str] = []
        self._turn = itertools.count()
        self._rng = rng or random.Random()
        self.failovers = 0
        self.sent: dict[str, int] = {}

    @property
    def nodes(self) -> list[str]:
        """Names of the brokers messages are being sent to now."""
        return list(self._order)

    async def send(
        self,
        data: DataLike,
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish one message; returns the name of the broker that answered ``ok``.

        ``ttl`` and ``message_id`` as for `Producer.send`; a broker dedups only what it
        stored itself, so a repeat sent to another broker is stored again."""
        # a bad argument raises here, not on every broker
        encode_send(data, delay, ttl=ttl, message_id=message_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout
        last_error: KapokMQError | None = None
        while True:
            if self._closing:
                raise ClientClosedError("cluster producer is closed")
            if not self._started:
                await self.connect()
            picked = self._pick()
            if picked is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    if last_error is None and self._failures:
                        name, failure = next(reversed(self._failures.items()))
                        last_error = ConnectionLostError(f"{name}: {failure}")
                    why = f"; last error: {last_error}" if last_error else ""
                    raise ConnectionLostError(
                        f"no broker of the cluster accepted the message within "
                        f"{self.send_timeout:g}s{why}"
                    )
                self._wake.set()  # ask the registry now
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self.check_interval)):
                        await changed.wait()
                continue
            name, producer = picked
            try:
                await producer.send(data, delay, ttl=ttl, message_id=message_id)
            except SendError:
                raise
            except (ConnectionLostError, ClientClosedError, ProtocolError) as exc:
                last_error = exc
                self.failovers += 1
                if self._producers.get(name) is producer:
                    log.warning("cluster producer: lost %s (%s); failing over", name, exc)
                    self._node_failed(name)
                continue
            self.sent[name] = self.sent.get(name, 0) + 1
            return name

    async def send_many(
        self,
        items: Iterable[DataLike],
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_ids: Iterable[str | None] | None = None,
        return_exceptions: bool = False,
    ) -> list[str | BaseException]:
        """Publish a batch concurrently (each broker's window bounds what is in flight).

        ``ttl`` and ``message_ids`` as for `Producer.send_many`. Returns, per item, the
        broker name that stored it or the exception. Unless ``return_exceptions``, the
        first failure is raised after every send finished.
        """
        results: list[str | BaseException] = await asyncio.gather(
            *(
                self.send(item, delay, ttl=ttl, message_id=message_id)
                for item, message_id in with_message_ids(items, message_ids)
            ),
            return_exceptions=True,
        )
        if not return_exceptions:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    def _pick(self) -> tuple[str, Producer] | None:
        order = self._order
        if not order:
            return None
        if self.strategy == "random":
            name = self._rng.choice(order)
        else:
            name = order[next(self._turn) % len(order)]
        return name, self._producers[name]

    # -- connections -------------------------------------------------------------------------

    async def _attach(self, node: NodeInfo) -> None:
        producer = Producer(
            node.url(self.scheme),
            self.topic,
            self.producer_id,
            self._secret_key,
            max_in_flight=self.max_in_flight,
            reconnect=False,  # a lost broker is failed over, not waited for
            connect_timeout=self.connect_timeout,
            close_timeout=self.close_timeout,
            send_timeout=self.send_timeout,  # a broker that stops answering is failed over
            heartbeat=self.heartbeat,  # ... noticed within 1.5 x this (connection.py)
            session=self._http,
        )
        await producer.connect()
        if self._closing or node.name not in self._listed:
            await producer.close()
            return
        self._producers[node.name] = producer
        self._order = sorted(self._producers)

    def _connected_names(self) -> list[str]:
        return list(self._producers)

    def _is_connected(self, name: str) -> bool:
        return name in self._producers

    def _forget(self, name: str) -> None:
        producer = self._producers.pop(name, None)
        self._order = sorted(self._producers)
        if producer is not None:
            # A broker that left answers what it has; unanswered sends fail over.
            self._spawn_close(producer.close)

    async def _close_all(self) -> None:
        producers = list(self._producers.values())
        self._producers.clear()
        self._order = []
        await asyncio.gather(*(p.close() for p in producers), return_exceptions=True)
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)


class ClusterConsumer(MessageStream, _Follower):
    """Consumes ``topic`` from every broker of a cluster; ``async for msg in consumer``.

    Each message is acked on the broker that delivered it (``await msg.ack()``). A broker
    that drops is reconnected to while the registry lists it, and closed once it doesn't.
    """

    kind = "consumer"

    def __init__(
        self,
        registry_url: str,
        topic: str,
        consumer_id: str,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        registry_secret_key: str | None = None,
        auto_ack: bool = False,
        buffer: int = 1000,
        check_interval: float = 5.0,
        connect_timeout: float = 10.0,
        backoff: Backoff | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        scheme: str = "http",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        super().__init__(
            registry_url,
            secret_key,
            registry_secret_key=registry_secret_key,
            check_interval=check_interval,
            scheme=scheme,
            connect_timeout=connect_timeout,
            session=session,
        )
        self.topic = topic
        self.consumer_id = consumer_id
        self.auto_ack = auto_ack
        self.buffer = buffer
        self.backoff = backoff or Backoff(initial=0.1, maximum=2.0)
        self.heartbeat = heartbeat
        self._consumers: dict[str, Consumer] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(buffer)
        self.received: dict[str, int] = {}

    @property
    def nodes(self) -> list[str]:
        """Names of the brokers being consumed from now."""
        return sorted(self._consumers)

    async def __anext__(self) -> Message:
        if not self._started and not self._closing:
            await self.connect()
        if self._closing and self._queue.empty():
            raise StopAsyncIteration
        msg = await self._queue.get()
        if msg is None:
            self._queue.put_nowait(None)  # every other waiter ends too
            raise StopAsyncIteration
        if self.auto_ack:
            await msg.ack()
        return msg

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    # -- connections -------------------------------------------------------------------------

    async def _attach(self, node: NodeInfo) -> None:
        consumer = Consumer(
            node.url(self.scheme),
            self.topic,
            self.consumer_id,
            self._secret_key,
            buffer=self.buffer,
            reconnect=True,  # a restart is waited for while the registry lists the broker
            backoff=self.backoff,
            connect_timeout=self.connect_timeout,
            heartbeat=self.heartbeat,
            session=self._http,
        )
        await consumer.connect()
        if self._closing or node.name not in self._listed:
            await consumer.close()
            return
        self._consumers[node.name] = consumer
        self._pumps[node.name] = asyncio.create_task(self._pump(node.name, consumer))

    async def _pump(self, name: str, consumer: Consumer) -> None:
        async def ack(code: str) -> None:
            # The broker is gone or was closed: it redelivers (or lost) the message anyway.
            with contextlib.suppress(ClientClosedError, ConnectionLostError):
                await consumer.ack(code)

        try:
            async for msg in consumer:
                msg._ack = ack
                self.received[name] = self.received.get(name, 0) + 1
                await self._queue.put(msg)
        except KapokMQError as exc:
            log.warning("cluster consumer: %s failed: %s", name, exc)
        finally:
            if self._consumers.get(name) is consumer and not self._closing:
                self._pumps.pop(name, None)
                self._node_failed(name)

    def _connected_names(self) -> list[str]:
        return list(self._consumers)

    def _is_connected(self, name: str) -> bool:
        return name in self._consumers

    def _forget(self, name: str) -> None:
        consumer = self._consumers.pop(name, None)
        pump = self._pumps.pop(name, None)
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
        if consumer is not None:
            self._spawn_close(consumer.close)

    async def _close_all(self) -> None:
        consumers = list(self._consumers.values())
        pumps = list(self._pumps.values())
        self._consumers.clear()
        self._pumps.clear()
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)


# -- blocking wrappers ------------------------------------------------------------------------


class SyncClusterProducer(_Closing):
    """Blocking `ClusterProducer` (same arguments), run on `kapokmq.client.sync`'s loop."""

    def __init__(self, registry_url: str, topic: str, producer_id: str, *args: Any, **kw: Any):
        async def make() -> ClusterProducer:
            producer = ClusterProducer(registry_url, topic, producer_id, *args, **kw)
            await producer.connect()
            return producer

        self._producer = run(make())

    @property
    def nodes(self) -> list[str]:
        return self._producer.nodes

    def send(
        self,
        data: DataLike,
        delay: int = 0,
        timeout: float | None = None,
        *,
        ttl: int | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish one message; returns the name of the broker that stored it."""
        return run(self._producer.send(data, delay, ttl=ttl, message_id=message_id), timeout)

    def send_many(
        self,
        items: Iterable[DataLike],
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_ids: Iterable[str | None] | None = None,
        return_exceptions: bool = False,
        timeout: float | None = None,
    ) -> list[str | BaseException]:
        batch = list(items)
        ids = None if message_ids is None else list(message_ids)
        coro = self._producer.send_many(
            batch, delay, ttl=ttl, message_ids=ids, return_exceptions=return_exceptions
        )
        return run(coro, timeout)

    def close(self) -> None:
        run(self._producer.close())


class SyncClusterConsumer(_SyncReceiver):
    """Blocking `ClusterConsumer`: ``for msg in consumer: ...; msg.ack()``."""

    def __init__(self, registry_url: str, topic: str, consumer_id: str, *args: Any, **kw: Any):
        async def make() -> ClusterConsumer:
            consumer = ClusterConsumer(registry_url, topic, consumer_id, *args, **kw)
            await consumer.connect()
            return consumer

        self._cluster = self._consumer = run(make())

    @property
    def nodes(self) -> list[str]:
        return self._cluster.nodes
