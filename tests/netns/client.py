"""A client run inside a test's namespace, one command per run:

* ``send URL N PREFIX [TIMEOUT]``: the codes of the messages answered ok (HTTP Send);
* ``drain URL TOPIC SECONDS``: consume and ack until nothing came for SECONDS; the codes;
* ``nodes URL``: a registry's GetNodes names;
* ``cluster-send URL N INTERVAL``: the broker (or ERR) of each message a ClusterProducer sent,
  and the seconds its send took.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import orjson

SECRET = "test"


async def send(url: str, n: int, prefix: str, timeout: float) -> None:
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            form = {"messageData": f"{prefix}-{i}", "topic": "t", "delayTime": "0"}
            try:
                async with session.post(
                    f"{url}/Producer/Send",
                    data=form,
                    headers={"secretKey": SECRET},
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as resp:
                    body = orjson.loads(await resp.read())
            except (aiohttp.ClientError, TimeoutError):
                continue
            if body.get("code") == 0:
                print(body["msg"])


async def drain(url: str, topic: str, quiet: float) -> None:
    ws_url = url.replace("http", "ws", 1) + f"/Consumers/Conn/{topic}/drain"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.receive_str(timeout=5)  # the key prompt
        await ws.send_str(SECRET)
        await ws.receive_str(timeout=5)  # matched
        while True:
            try:
                msg = await ws.receive(timeout=quiet)
            except TimeoutError:
                return
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            for line in msg.data.splitlines():
                code = orjson.loads(line)["MessageCode"]
                await ws.send_str(code)
                print(code)


async def nodes(url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/Registry/GetNodes", headers={"secretKey": SECRET}) as resp,
    ):
        for node in orjson.loads(await resp.read()) or []:
            print(node["Name"])


async def cluster_send(url: str, n: int, interval: float) -> None:
    """Send n messages through a ClusterProducer; one line per message: the broker (or ERR)
    and the send's seconds."""
    from kapokmq.client import ClusterProducer

    loop = asyncio.get_running_loop()
    async with ClusterProducer(url, "t", "cp", SECRET, check_interval=1.0, send_timeout=20) as p:
        for i in range(n):
            started = loop.time()
            try:
                name = await p.send(f"c{i}")
            except Exception as exc:
                name = f"ERR:{type(exc).__name__}"
            print(name, f"{loop.time() - started:.3f}", flush=True)
            await asyncio.sleep(interval)


def main() -> None:
    url, command, *rest = sys.argv[1:]
    if command == "send":
        asyncio.run(send(url, int(rest[0]), rest[1], float(rest[2]) if len(rest) > 2 else 5.0))
    elif command == "drain":
        asyncio.run(drain(url, rest[0], float(rest[1])))
    elif command == "nodes":
        asyncio.run(nodes(url))
    elif command == "cluster-send":
        asyncio.run(cluster_send(url, int(rest[0]), float(rest[1])))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
