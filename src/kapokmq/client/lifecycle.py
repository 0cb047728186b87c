"""What every connecting client shares: ``async with`` and, for consumers, receiving."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from kapokmq.client.errors import ClientClosedError
from kapokmq.client.message import Message


class Connectable:
    """``async with client:`` connects on entry and closes on exit."""

    async def connect(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class MessageStream:
    """``async for msg in consumer`` and ``await consumer.receive(timeout)``, both on top
    of the subclass's ``__anext__``."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        raise NotImplementedError

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message (auto-acked if so configured); TimeoutError after ``timeout``,
        ClientClosedError once the consumer is closed (where iteration just ends)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except StopAsyncIteration:
            raise ClientClosedError("consumer is closed") from None
