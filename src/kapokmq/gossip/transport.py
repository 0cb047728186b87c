"""asyncio UDP socket and TCP listener sharing one port number.

memberlist advertises a single address:port that peers use for both UDP
packets and TCP streams, so both sockets must get the same port, including
when the caller asks for a free one (port 0).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]
PacketHandler = Callable[[bytes, Address], None]
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

_MAX_DATAGRAM = 65536


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: PacketHandler) -> None:
        self._handler = handler

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not data:
            return
        try:
            self._handler(data, (str(addr[0]), int(addr[1])))
        except Exception:  # one bad packet must not kill the endpoint
            log.exception("error handling gossip packet from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("gossip UDP error: %s", exc)


class Transport:
    """Owns the sockets; knows nothing about the protocol beyond framing."""

    def __init__(self, on_packet: PacketHandler, on_stream: StreamHandler) -> None:
        self._on_packet = on_packet
        self._on_stream = on_stream
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Bind both sockets; returns the port number they share."""
        loop = asyncio.get_running_loop()
        attempts = 20 if port == 0 else 1
        last_error: OSError | None = None
        for _ in range(attempts):
            server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
            bound = int(server.sockets[0].getsockname()[1])
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UDPProtocol(self._on_packet), local_addr=(host, bound)
                )
            except OSError as exc:
                last_error = exc
                server.close()
                await server.wait_closed()
                continue
            self._server, self._udp, self.port = server, udp, bound
            return bound
        raise OSError(f"could not bind UDP and TCP on the same port: {last_error}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._on_stream(reader, writer)
        except Exception as exc:
            log.debug("gossip stream error: %s", exc)
        finally:
            writer.close()

    def send(self, data: bytes, addr: Address) -> None:
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(data, addr)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            self._server = None


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(addr: Address, timeout: float) -> Connection:
    async with asyncio.timeout(timeout):
        return await asyncio.open_connection(addr[0], addr[1])
