"""Shared life cycle of producer and consumer sessions: connect, serve, reconnect, close.

A subclass supplies `_serve` (read frames until the socket closes) and may hook
`_on_connected` (e.g. resend unconfirmed frames) and `_on_fatal` (fail waiters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from kapokmq.client.backoff import Backoff
from kapokmq.client.connection import (
    DEFAULT_HEARTBEAT,
    DEFAULT_SECRET_KEY,
    Role,
    open_session,
    session_url,
)
from kapokmq.client.errors import (
    AuthenticationError,
    ClientClosedError,
    ConnectionLostError,
    KapokMQError,
    ProtocolError,
)
from kapokmq.client.lifecycle import Connectable

log = logging.getLogger("kapokmq.client")


class Session(Connectable):
    """One logical client connection that survives broker restarts."""

    role: Role

    def __init__(
        self,
        url: str,
        topic: str,
        client_id: str,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if heartbeat is not None and heartbeat <= 0:
            raise ValueError("heartbeat must be positive (or None for no pings)")
        self.url = url
        self.topic = topic
        self.client_id = client_id
        self._ws_url = session_url(url, self.role, topic, client_id)
        self._secret_key = secret_key
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._heartbeat = heartbeat
        self._http = session
        self._own_http = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._fatal: KapokMQError | None = None
        self._closing = False
        # Set by _serve when the drop was the broker refusing a frame the caller has been
        # told about (close 1009): the reconnect is then routine, logged at INFO only.
        self._drop_explained = False
        self.reconnects = 0

    # -- public life cycle -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session with the broker is established."""
        return self._ws is not None and self._ready.is_set()

    async def connect(self) -> None:
        """Open the session. Raises AuthenticationError or ConnectionLostError at once.

        Only an established session is re-opened automatically after it drops.
        """
        async with self._connect_lock:
            self._check_usable()
            if self._runner is not None:
                return
            if self._http is None:
                self._http = aiohttp.ClientSession()
            try:
                ws = await open_session(
                    self._http,
                    self._ws_url,
                    self._secret_key,
                    self._connect_timeout,
                    self._heartbeat,
                )
            except BaseException:
                if self._own_http:  # nothing else holds it: do not leak an unclosed session
                    await self._http.close()
                    self._http = None
                raise
            await self._attach(ws)
            self._runner = asyncio.create_task(self._run(ws), name=f"kapokmq-{self.role}")

    async def close(self) -> None:
        """Stop reconnecting, close the socket and (if owned) the HTTP session."""
        if self._closing:
            return
        self._closing = True
        self._ready.set()  # wake waiters so they observe the closed state
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        self._on_fatal(ClientClosedError(f"{self.role[:-1].lower()} is closed"))
        if self._own_http and self._http is not None:
            await self._http.close()

    # -- for subclasses ----------------------------------------------------------------------

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read frames until the socket closes."""
        raise NotImplementedError

    async def _on_connected(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Called with a freshly handshaken socket before new work may use it."""

    def _on_fatal(self, exc: KapokMQError) -> None:
        """The session is over for good: fail whatever is waiting."""

    def _check_usable(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise ClientClosedError(f"{self.role[:-1].lower()} is closed")

    async def _wait_ready(self) -> aiohttp.ClientWebSocketResponse:
        """The live socket, waiting through a reconnect if one is under way."""
        while True:
            self._check_usable()
            ws = self._ws
            if ws is not None and self._ready.is_set():
                return ws
            if self._runner is None:
                await self.connect()
                continue
            await self._ready.wait()

    # -- internals ---------------------------------------------------------------------------

    async def _attach(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        await self._on_connected(ws)
        self._ready.set()

    def _fail(self, exc: KapokMQError) -> None:
        self._fatal = exc
        self._ready.set()
        self._on_fatal(exc)

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            try:
                await self._serve(ws)
            except Exception as exc:  # any read failure is a lost connection
                log.debug("%s %s: read failed: %r", self.role, self.client_id, exc)
            self._ready.clear()
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()
            if self._closing:
                return
            if not self._reconnect:
                self._fail(ConnectionLostError(f"connection to {self._ws_url} lost"))
                return
            while True:
                new_ws = await self._reopen()
                if new_ws is None:
                    return
                try:
                    await self._attach(new_ws)
                    break
                except Exception as exc:  # dropped again while resuming
                    log.info("%s %s: lost while resuming: %r", self.role, self.client_id, exc)
                    self._ready.clear()
                    self._ws = None
                    with contextlib.suppress(Exception):
                        await new_ws.close()
            ws = new_ws
            self.reconnects += 1

    async def _reopen(self) -> aiohttp.ClientWebSocketResponse | None:
        assert self._http is not None
        attempt = 0
        level = logging.INFO if self._drop_explained else logging.WARNING
        self._drop_explained = False
        log.log(level, "%s %s: connection lost, reconnecting", self.role, self.client_id)
        while True:
            if self._backoff.exhausted(attempt):
                self._fail(
                    ConnectionLostError(
                        f"connection to {self._ws_url} lost; gave up after {attempt} attempts"
                    )
                )
                return None
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1
            try:
                ws = await open_session(
                    self._http,
                    self._ws_url,
                    self._secret_key,
                    self._connect_timeout,
                    self._heartbeat,
                )
            except AuthenticationError as exc:
                self._fail(exc)
                return None
            except (ConnectionLostError, ProtocolError) as exc:
                log.info("%s %s: reconnect %d failed: %s", self.role, self.client_id, attempt, exc)
                continue
            log.log(level, "%s %s: reconnected", self.role, self.client_id)
            return ws
