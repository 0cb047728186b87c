"""The Origin rule (server/origins.py) on a real broker, for both WebSocket engines: with
the default key a foreign page is refused (403), the broker's own console and every
client without Origin are not; server.allowedOrigins lists the pages that may; a key of
one's own keeps the original's anything-goes; preflights are always 204 with CORS."""

from __future__ import annotations

import aiohttp
import pytest

from tests.compat.wsclient import MATCHED, PROMPT
from tests.harness import SECRET, BrokerProcess

FOREIGN = "http://evil.example"
APP = "http://app.example:3000"

pytestmark = pytest.mark.parametrize("engine", ["picows", "aiohttp"])


async def upgrade_status(broker: BrokerProcess, origin: str | None, key: str = SECRET) -> int:
    """101 when the upgrade (and the handshake) went through, else the HTTP status."""
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(f"{broker.ws}/Consumers/Conn/t/c", headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        assert await ws.receive_str(timeout=5) == PROMPT
        await ws.send_str(key)
        assert await ws.receive_str(timeout=5) == MATCHED
        await ws.close()
        return 101


async def api_status(broker: BrokerProcess, origin: str | None, key: str = SECRET) -> int:
    headers = {"secretKey": key, **({"Origin": origin} if origin else {})}
    url = f"{broker.http}/Console/Ping"
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as resp:
        if resp.status == 200:
            assert await resp.json() == {"code": 0}
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        return resp.status


async def send_status(broker: BrokerProcess, origin: str) -> int:
    """An urlencoded HTTP Send, the request the lean path serves (server/http_lean.py)."""
    form = {"messageData": "m", "topic": "t", "delayTime": "0"}
    headers = {"secretKey": SECRET, "Origin": origin}
    url = f"{broker.http}/Producer/Send"
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # the second on a kept-alive connection
            async with session.post(url, data=form, headers=headers) as resp:
                await resp.read()
                status = resp.status
    return status


async def preflight(broker: BrokerProcess, origin: str) -> None:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    url = f"{broker.http}/Console/Ping"
    async with aiohttp.ClientSession() as session, session.options(url, headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "secretKey" in resp.headers["Access-Control-Allow-Headers"]


async def test_default_key_refuses_foreign_pages(broker_factory, engine):
    broker = broker_factory(settings={"server.wsEngine": engine})
    own = f"http://127.0.0.1:{broker.port}"
    assert await upgrade_status(broker, FOREIGN) == 403
    assert await api_status(broker, FOREIGN) == 403
    assert await send_status(broker, FOREIGN) == 403
    assert await upgrade_status(broker, "null") == 403  # a file:// page
    assert await upgrade_status(broker, own) == 101  # the console the broker serves
    assert await api_status(broker, own) == 200
    assert await upgrade_status(broker, None) == 101  # not a browser
    assert await api_status(broker, None) == 200
    await preflight(broker, FOREIGN)
    assert "refused" in broker.log()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{broker.http}/healthz", headers={"Origin": FOREIGN}) as resp,
    ):
        assert resp.status == 200  # public, whatever the page (docs/protocol.md "Origins")
        assert (await resp.json())["status"] == "ok"


async def test_allowed_origins_lists_the_pages_that_may(broker_factory, engine):
    broker = broker_factory(
        settings={"server.wsEngine": engine, "server.allowedOrigins": f"{APP}, null"}
    )
    assert await upgrade_status(broker, APP) == 101
    assert await api_status(broker, APP) == 200
    assert await upgrade_status(broker, "null") == 101
    assert await upgrade_status(broker, FOREIGN) == 403
    assert await api_status(broker, FOREIGN) == 403
    assert await api_status(broker, f"http://127.0.0.1:{broker.port}") == 200


async def test_own_key_or_star_allows_every_origin(broker_factory, engine):
    own_key = broker_factory(settings={"server.wsEngine": engine, "mq.secretKey": "s3cret"})
    assert await upgrade_status(own_key, FOREIGN, "s3cret") == 101
    assert await api_status(own_key, FOREIGN, "s3cret") == 200
    star = broker_factory(settings={"server.wsEngine": engine, "server.allowedOrigins": "*"})
    assert await upgrade_status(star, FOREIGN) == 101
    assert await api_status(star, FOREIGN) == 200


async def test_an_empty_key_refuses_foreign_pages_as_the_default_key_does(broker_factory, engine):
    """An empty secret key is as well known as `test` (the banner warns of both): a page of
    another origin could drive the broker with it, so it is refused the same way."""
    broker = broker_factory(settings={"server.wsEngine": engine, "mq.secretKey": ""})
    assert await upgrade_status(broker, FOREIGN, "") == 403
    assert await api_status(broker, FOREIGN, "") == 403
    assert await api_status(broker, None, "") == 200
    await preflight(broker, FOREIGN)
