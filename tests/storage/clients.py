"""A steady pipelined producer and a recording consumer for crash tests (aiohttp)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from tests.harness import SECRET, BrokerProcess

PROMPT = "Please enter the secret key"
MATCHED = "Secret key matching succeeded"


async def login(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url, autoping=True)
    assert await ws.receive_str(timeout=5) == PROMPT
    await ws.send_str(SECRET)
    assert await ws.receive_str(timeout=5) == MATCHED
    return ws


class Producer:
    """Sends ``m-0, m-1, ...`` with up to ``window`` unanswered frames; counts the oks."""

    def __init__(self, window: int = 64) -> None:
        self.window = window
        self.sent = 0
        self.oks = 0
        self.ok_times: list[float] = []
        self._room = asyncio.Event()
        self._goals: list[tuple[int, asyncio.Event]] = []

    async def run(self, session: aiohttp.ClientSession, broker: BrokerProcess, topic: str) -> None:
        ws = await login(session, f"{broker.ws}/Producers/Conn/{topic}/p1")
        reader = asyncio.create_task(self._read(ws))
        try:
            while not reader.done():
                if self.sent - self.oks >= self.window:
                    self._room.clear()
                    await self._room.wait()
                    continue
                try:
                    await ws.send_str(f'{{"MessageData":"m-{self.sent}","DelayTime":0}}')
                except (ConnectionError, RuntimeError):
                    break
                self.sent += 1
        finally:
            await reader

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            assert msg.data == "ok", msg.data
            self.oks += 1
            self.ok_times.append(time.monotonic())
            self._room.set()
            while self._goals and self._goals[0][0] <= self.oks:
                self._goals.pop(0)[1].set()
        self._room.set()

    async def reached(self, oks: int, timeout: float = 20) -> None:
        event = asyncio.Event()
        if self.oks >= oks:
            return
        self._goals.append((oks, event))
        self._goals.sort(key=lambda g: g[0])
        await asyncio.wait_for(event.wait(), timeout)

    def acknowledged(self) -> set[str]:
        return {f"m-{i}" for i in range(self.oks)}


class Consumer:
    """Records every push (code -> data) and acks while ``acking`` is set."""

    def __init__(self, acking: bool = True) -> None:
        self.acking = acking
        self.received: dict[str, str] = {}
        self.acked: set[str] = set()
        self.duplicates = 0
        self._goal: tuple[int, asyncio.Event] | None = None

    async def run(self, session: aiohttp.ClientSession, broker: BrokerProcess, topic: str) -> None:
        ws = await login(session, f"{broker.ws}/Consumers/Conn/{topic}/c1")
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            pushed = orjson.loads(msg.data)
            code = pushed["MessageCode"]
            if code in self.received:
                self.duplicates += 1
            self.received[code] = pushed["MessageData"]
            if self.acking:
                try:
                    await ws.send_str(code)
                except (ConnectionError, RuntimeError):
                    break
                self.acked.add(code)
            goal = self._goal
            if goal is not None and len(self.received) >= goal[0]:
                goal[1].set()

    async def received_at_least(self, n: int, timeout: float = 20) -> None:
        if len(self.received) >= n:
            return
        event = asyncio.Event()
        self._goal = (n, event)
        await asyncio.wait_for(event.wait(), timeout)


async def console(session: aiohttp.ClientSession, broker: BrokerProcess, path: str, **form: object):
    async with session.post(
        f"{broker.http}/Console/{path}",
        data={k: str(v) for k, v in form.items()},
        headers={"secretKey": SECRET},
    ) as resp:
        body = await resp.json()
    assert body["code"] == 0, body
    return body.get("data")


async def wait_consumed(
    session: aiohttp.ClientSession, broker: BrokerProcess, n: int, timeout: float = 10
) -> None:
    """Poll until the broker has processed ``n`` acks (no event crosses the process line)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await console(session, broker, "CountMessage")
        if counts["consumed"] >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"broker shows {counts['consumed']} consumed, expected {n}")
        await asyncio.sleep(0.02)
