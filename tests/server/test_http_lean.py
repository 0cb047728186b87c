"""The lean HTTP Send path (server/http_lean.py): the same answers as aiohttp, byte for byte
(Date and message codes aside), for what it serves and for what it hands to aiohttp;
keep-alive, pipelining, requests split over reads, one write per read, fsync=always."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httptools
import pytest
from aiohttp import web

from kapokmq.config import Config
from kapokmq.server import http_lean
from kapokmq.server.app import build_app
from kapokmq.server.http_lean import MAX_BODY, LeanHttp
from kapokmq.server.listener import MAX_HEAD
from kapokmq.server.main import listen
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.send import accept_send
from kapokmq.storage import open_storage
from kapokmq.storage.files import FileOps
from tests.server.test_session import use_ticket, use_tickets
from tests.storage.helpers import make_config

CODE = re.compile(rb"[0-9a-f]{32}")
FORM = b"topic=lean&messageData=hello%20world&delayTime=0"


def request(
    body: bytes = FORM,
    *,
    path: bytes = b"/Producer/Send",
    method: bytes = b"POST",
    version: bytes = b"1.1",
    key: bytes | None = b"test",
    content_type: bytes | None = b"application/x-www-form-urlencoded",
    extra: bytes = b"",
    length: bool = True,
) -> bytes:
    head = b"%s %s HTTP/%s\r\nHost: x\r\n" % (method, path, version)
    if key is not None:
        head += b"secretKey: %s\r\n" % key
    if content_type is not None:
        head += b"Content-Type: %s\r\n" % content_type
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + body


def multipart() -> bytes:
    body = (
        b"--b\r\nContent-Disposition: form-data; name=topic\r\n\r\nlean\r\n"
        b"--b\r\nContent-Disposition: form-data; name=messageData\r\n\r\nm\r\n"
        b"--b\r\nContent-Disposition: form-data; name=delayTime\r\n\r\n0\r\n--b--\r\n"
    )
    return request(body, content_type=b"multipart/form-data; boundary=b")


def chunked() -> bytes:
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(FORM), FORM)
    return request(body, length=False, extra=b"Transfer-Encoding: chunked\r\n")


# Served by the lean path, or handed to aiohttp: either way the answer must be aiohttp's.
CASES: dict[str, bytes] = {
    "send": request(),
    "send-key-header-case": request(extra=b"SECRETKEY: test\r\n", key=None),
    "send-two-keys-first-wins": request(key=b"test", extra=b"secretKey: nope\r\n"),
    "send-wrong-key": request(key=b"wrong"),
    "send-no-key": request(key=None),
    "send-bad-delay": request(b"topic=t&messageData=x&delayTime=soon"),
    "send-no-delay": request(b"topic=t&messageData=x"),
    "send-empty-data": request(b"topic=t&messageData=&delayTime=0"),
    "send-repeated-field": request(b"topic=a&topic=b&messageData=x&delayTime=1"),
    "send-plus-and-escapes": request(b"topic=t&messageData=a+b%E6%B6%88%zz&delayTime=0"),
    "send-trailing-newline": request(FORM + b"\r\n"),
    "send-empty-body": request(b""),
    "send-not-utf8": request(b"topic=t&messageData=\xff&delayTime=0"),
    "send-too-many-fields": request(b"&".join(b"f%d=1" % i for i in range(1001))),
    "send-body-over-lean-limit": request(b"topic=t&delayTime=0&messageData=" + b"x" * MAX_BODY),
    "send-body-over-client-max": request(b"topic=t&delayTime=0&messageData=" + b"y" * (4 << 20)),
    "send-charset": request(content_type=b"application/x-www-form-urlencoded; charset=utf-8"),
    "send-no-content-type": request(content_type=None),
    "send-json": request(b'{"topic":"t"}', content_type=b"application/json"),
    "send-multipart": multipart(),
    "send-chunked": chunked(),
    "send-query-string": request(path=b"/Producer/Send?x=1"),
    "send-expect": request(extra=b"Expect: 100-continue\r\n"),
    "send-get": request(b"", method=b"GET"),
    "send-options": request(b"", method=b"OPTIONS"),
    "ping": request(b"", path=b"/Console/Ping"),
    "unknown-route": request(path=b"/Producer/Sendx"),
}
# These end the connection (aiohttp closes it after answering).
LAST: dict[str, bytes] = {
    "send-connection-close": request(extra=b"Connection: close\r\n"),
    "send-http-1.0": request(version=b"1.0"),
    "garbage-head": b"POST /Producer/Send HTTP/1.1\r\nHost x\r\n\r\n",
    # heads llhttp takes but aiohttp's parser answers 400 (aiohttp/_http_parser.pyx)
    "no-host": request().replace(b"Host: x\r\n", b""),
    "two-hosts": request(extra=b"Host: y\r\n"),
    "two-user-agents": request(extra=b"User-Agent: a\r\nUser-Agent: b\r\n"),
    "header-over-max-field": request(extra=b"X-Long: %s\r\n" % (b"a" * 9000)),
    "too-many-headers": request(extra=b"".join(b"X-%d: 1\r\n" % i for i in range(130))),
    # a line ended by LF alone: aiohttp answers at once; CRLF CRLF never comes
    "bare-lf": request(extra=b"X-A: b\n"),
    "bare-lf-everywhere": request().replace(b"\r\n", b"\n"),
}


class Responses:
    """Collects HTTP responses with httptools (no hand-written parsing in tests either)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[tuple[int, list[tuple[bytes, bytes]], bytes]] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    def on_message_begin(self) -> None:
        self.headers, self.body = [], b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() != b"date":
            self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status != 100:  # an interim answer to Expect: 100-continue
            self.done.append((status, self.headers, CODE.sub(b"CODE", self.body)))


async def exchange(port: int, writes: list[bytes], answers: int) -> list[Any]:
    """Write each of ``writes`` once the previous one has had an answer; read until
    ``answers`` responses in all (or until the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    responses = Responses()
    try:
        for i, data in enumerate(writes):
            writer.write(data)
            wanted = answers if i == len(writes) - 1 else len(responses.done) + 1
            while len(responses.done) < wanted:
                chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
                if not chunk:
                    break
                responses.parser.feed_data(chunk)
    finally:
        writer.close()
    return responses.done


@pytest.fixture
async def servers() -> AsyncIterator[tuple[int, int]]:
    """(lean port, aiohttp-only port): the default listener, and server.wsEngine aiohttp."""
    started = []
    for engine in ("picows", "aiohttp"):
        config = Config()
        config.server.port = 0
        config.server.wsEngine = engine
        runtime = BrokerRuntime(config)
        runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
        await runner.setup()
        server = await listen(runtime, runner, None)
        started.append((runtime, runner, server))
    try:
        yield started[0][2].sockets[0].getsockname()[1], started[1][2].sockets[0].getsockname()[1]
    finally:
        for runtime, runner, server in started:
            server.close()
            await runner.cleanup()
            runtime.close()


@pytest.mark.timeout(60)
async def test_same_answers_as_aiohttp(
    servers: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    lean, plain = servers
    send = CASES["send"]
    served = []  # the lean path really answers (not aiohttp behind it)

    def counted(*args: Any) -> Any:
        served.append(args)
        return accept_send(*args)

    monkeypatch.setattr(http_lean, "accept_send", counted)
    for name, raw in CASES.items():
        # pipelined after a served Send (so the hand-over is mid-read), then one more Send
        for writes in ([send + raw + send], [send, raw + send]):
            expected = await exchange(plain, writes, 3)
            assert await exchange(lean, writes, 3) == expected, name
            assert expected[0][0] == 200 and b'"code":0' in expected[0][2], name
    for name, raw in LAST.items():
        # aiohttp answers a bad head with 400 for the whole read, so it comes on its own
        expected = await exchange(plain, [send, raw], 2)
        assert await exchange(lean, [send, raw], 2) == expected, name
        assert len(expected) == 2, name
    assert len(served) >= 3 * len(CASES)


async def test_first_request_with_bare_lf_is_answered(servers: tuple[int, int]) -> None:
    """The listener does not wait for a CRLF CRLF that an LF-only client never sends."""
    raw = CASES["ping"].replace(b"\r\n", b"\n")
    lean, plain = servers
    expected = await exchange(plain, [raw], 1)
    assert await exchange(lean, [raw], 1) == expected
    assert len(expected) == 1 and expected[0][0] == 400


async def test_pipelined_sends_keep_their_order(servers: tuple[int, int]) -> None:
    lean, _ = servers
    data = b"".join(request(b"topic=p&messageData=%d&delayTime=0" % i) for i in range(200))
    answers = await exchange(lean, [data + CASES["ping"] + CASES["send"]], 202)
    assert len(answers) == 202
    assert all(body == b'{"code":0,"msg":"CODE"}' for _, _, body in answers[:200])
    assert answers[200][2] == b'{"code":0}' and answers[201][2] == b'{"code":0,"msg":"CODE"}'


# ------------------------------------------------------------------ the protocol itself
class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.protocol: asyncio.BaseProtocol | None = None
        self.reading = True
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class Recorder(asyncio.Protocol):
    """Stands in for aiohttp's handler: records what it is handed."""

    def __init__(self) -> None:
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.data += data


@pytest.fixture
async def lean() -> AsyncIterator[tuple[LeanHttp, FakeTransport, Recorder]]:
    runtime = BrokerRuntime(Config())
    recorder = Recorder()
    protocol = LeanHttp(runtime, lambda: recorder)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    yield protocol, transport, recorder
    protocol.connection_lost(None)
    runtime.close()


def answers_in(writes: list[bytes]) -> list[bytes]:
    responses = Responses()
    for data in writes:
        responses.parser.feed_data(data)
    return [body for _, _, body in responses.done]


async def test_split_into_single_bytes(lean: tuple[LeanHttp, FakeTransport, Recorder]) -> None:
    protocol, transport, recorder = lean
    for byte in CASES["send"] * 2:
        protocol.data_received(bytes([byte]))
    assert answers_in(transport.writes) == [b'{"code":0,"msg":"CODE"}'] * 2
    assert protocol.runtime.broker.store.unconsumed() == 2 and recorder.data == b""


async def test_one_write_per_read(lean: tuple[LeanHttp, FakeTransport, Recorder]) -> None:
    protocol, transport, _ = lean
    protocol.data_received(CASES["send"] * 5 + CASES["send"][:30])
    assert len(transport.writes) == 1 and len(answers_in(transport.writes)) == 5
    protocol.data_received(CASES["send"][30:])
    assert len(transport.writes) == 2


async def test_hand_over_gets_the_unserved_request_and_all_after_it(
    lean: tuple[LeanHttp, FakeTransport, Recorder],
) -> None:
    protocol, transport, recorder = lean
    rest = CASES["ping"] + CASES["send"]
    protocol.data_received(CASES["send"] + rest[:10])
    protocol.data_received(rest[10:])
    assert len(answers_in(transport.writes)) == 1
    assert transport.protocol is recorder and recorder.data == rest
    protocol.data_received(b"late")  # not ours any more: the transport feeds aiohttp now
    assert recorder.data == rest


async def test_oversized_head_goes_to_aiohttp(
    lean: tuple[LeanHttp, FakeTransport, Recorder],
) -> None:
    protocol, transport, recorder = lean
    head = b"POST /Producer/Send HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 1)
    protocol.data_received(head)
    assert transport.writes == [] and recorder.data == head


async def test_fsync_always_answers_once_on_disk(
    lean: tuple[LeanHttp, FakeTransport, Recorder],
) -> None:
    protocol, transport, recorder = lean
    loop = asyncio.get_running_loop()
    disk: asyncio.Future[None] = loop.create_future()
    use_ticket(protocol.runtime, lambda: disk)
    protocol.data_received(CASES["send"] * 2)
    protocol.data_received(CASES["send"] + CASES["ping"])  # read while waiting: held
    assert transport.writes == [] and not transport.reading
    assert protocol.runtime.broker.store.unconsumed() == 2
    disk.set_result(None)
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert answers_in(transport.writes)[:2] == [b'{"code":0,"msg":"CODE"}'] * 2
    # then the held read: its Send waits for the same (done) future, the Ping is aiohttp's
    assert len(answers_in(transport.writes)) == 3 and transport.reading
    assert recorder.data == CASES["ping"]


async def test_fsync_always_answers_when_the_wal_settles(
    lean: tuple[LeanHttp, FakeTransport, Recorder],
) -> None:
    """Not an iteration later, when the ticket's own callbacks run (as asyncio's do)."""
    protocol, transport, _ = lean
    tickets = use_tickets(protocol.runtime)
    protocol.data_received(CASES["send"] * 2)
    protocol.runtime.durable_settled()  # a sync that settled earlier tickets only
    assert transport.writes == [] and not transport.reading
    tickets[-1]._done = True  # settled; its callbacks have not run yet
    protocol.runtime.durable_settled()
    assert answers_in(transport.writes) == [b'{"code":0,"msg":"CODE"}'] * 2
    assert transport.reading
    tickets[-1].finish()  # its callbacks, later: nothing more to send
    assert len(transport.writes) == 1


async def test_aiohttp_send_wakes_when_the_wal_settles() -> None:
    """The aiohttp Send handlers wait with wait_durable: woken by the settle, not by the
    ticket's own callbacks (which never run here)."""
    runtime = BrokerRuntime(Config())
    tickets = use_tickets(runtime)
    take = runtime.durable_ticket
    assert take is not None
    waiting = asyncio.ensure_future(runtime.wait_durable(cast(Any, take())))
    await asyncio.sleep(0)
    runtime.durable_settled()  # a sync that settled earlier tickets only
    await asyncio.sleep(0)
    assert not waiting.done()
    tickets[0]._done = True
    runtime.durable_settled()
    await asyncio.sleep(0)
    assert waiting.done()
    runtime.close()


async def test_no_ok_when_the_disk_fails(lean: tuple[LeanHttp, FakeTransport, Recorder]) -> None:
    protocol, transport, _ = lean
    disk: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    use_ticket(protocol.runtime, lambda: disk)
    protocol.data_received(CASES["send"] * 2)
    disk.set_exception(OSError("storage unavailable: EIO"))
    await asyncio.sleep(0)
    failed = b'{"code":-1,"msg":"storage unavailable: EIO"}'
    assert answers_in(transport.writes) == [failed, failed]  # the connection stays
    assert not transport.aborted and transport.reading


async def test_idle_connection_is_closed(
    lean: tuple[LeanHttp, FakeTransport, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol, transport, _ = lean
    monkeypatch.setattr(http_lean, "IDLE_TIMEOUT", 0.05)
    protocol.connection_lost(None)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(CASES["send"])
    async with asyncio.timeout(5):
        while not transport.closed:
            await asyncio.sleep(0.02)
    assert len(transport.writes) == 1


async def test_a_client_that_does_not_read_is_not_read(
    lean: tuple[LeanHttp, FakeTransport, Recorder],
) -> None:
    protocol, transport, _ = lean
    protocol.pause_writing()
    assert not transport.reading
    protocol.resume_writing()
    assert transport.reading
    protocol.pause_writing()
    protocol.data_received(CASES["ping"])  # handed over: aiohttp's flow control from now on
    assert transport.protocol is not None and transport.reading


async def test_shutdown_closes_lean_connections_but_not_handed_over_ones() -> None:
    runtime = BrokerRuntime(Config())
    kept, handed = FakeTransport(), FakeTransport()
    for transport, data in ((kept, CASES["send"]), (handed, CASES["ping"])):
        protocol = LeanHttp(runtime, Recorder)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(data)
    http_lean.close_all(runtime)
    assert kept.closed and not handed.closed  # aiohttp's runner closes that one
    runtime.close()


class HeldFsync(FileOps):
    """The real calls, but every fsync waits until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def datasync(self, fd: int) -> None:
        self.entered.set()
        assert self.release.wait(20)
        super().datasync(fd)


@pytest.mark.timeout(60)
async def test_fsync_always_send_is_answered_only_after_the_fsync(tmp_path: Path) -> None:
    """A real socket, a real WAL: the lean path's answer waits for the fsync itself."""
    config = make_config(tmp_path, fsync="always")
    config.server.port = 0
    runtime = BrokerRuntime(config)
    files = HeldFsync()
    storage = open_storage(runtime, files)
    assert storage is not None
    runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
    await runner.setup()
    server = await listen(runtime, runner, None)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        files.entered.clear()
        writer.write(CASES["send"])
        await asyncio.to_thread(files.entered.wait, 20)  # the Send's batch is being synced
        with pytest.raises(TimeoutError):  # nothing answered while the fsync is held
            await asyncio.wait_for(reader.read(1), 0.3)
        files.release.set()
        responses = Responses()
        while not responses.done:
            responses.parser.feed_data(await asyncio.wait_for(reader.read(1 << 16), 10))
        assert responses.done[0][2] == b'{"code":0,"msg":"CODE"}'
        assert runtime.broker.store.unconsumed() == 1
    finally:
        files.release.set()
        writer.close()
        server.close()
        await runner.cleanup()
        await storage.close()
        runtime.close()
