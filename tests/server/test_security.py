"""B8: TLS by config and a separate console key."""

from __future__ import annotations

import ssl
import subprocess

import aiohttp
import pytest

from tests.harness import SECRET

PROMPT = "Please enter the secret key"
MATCHED = "Secret key matching succeeded"


@pytest.fixture
def certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_tls_serves_https_and_wss(broker_factory, certificate):
    cert, key = certificate
    broker = broker_factory(settings={"server.tlsCert": cert, "server.tlsKey": key})
    trust = ssl.create_default_context(cafile=str(cert))
    base = f"127.0.0.1:{broker.port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"https://{base}/Console/Ping", headers={"secretKey": SECRET}, ssl=trust
        ) as resp:
            assert await resp.json() == {"code": 0}
        async with session.ws_connect(f"wss://{base}/Consumers/Conn/t/c", ssl=trust) as ws:
            assert await ws.receive_str(timeout=5) == PROMPT
            await ws.send_str(SECRET)  # client-to-server frames through TLS too
            assert await ws.receive_str(timeout=5) == MATCHED
        with pytest.raises(aiohttp.ClientError):
            await session.post(f"http://{base}/Console/Ping", headers={"secretKey": SECRET})


async def test_console_key_guards_the_console_but_not_producers(broker_factory):
    broker = broker_factory(settings={"mq.consoleKey": "admin"})
    async with aiohttp.ClientSession() as session:

        async def post(path: str, key: str, **form: str) -> dict[str, object]:
            async with session.post(
                f"{broker.http}{path}", headers={"secretKey": key}, data=form
            ) as resp:
                body: dict[str, object] = await resp.json()
                return body

        assert (await post("/Console/Ping", SECRET))["code"] == -1
        assert await post("/Console/Ping", "admin") == {"code": 0}
        sent = await post("/Producer/Send", SECRET, messageData="x", topic="t", delayTime="0")
        assert sent["code"] == 0
        assert (await post("/Producer/Send", "admin", messageData="x", topic="t", delayTime="0"))[
            "code"
        ] == -1
        config = await post("/Console/GetConfig", "admin")
        data = config["data"]
        assert isinstance(data, dict)
        assert "consoleKey" not in data and "secretKey" not in data
