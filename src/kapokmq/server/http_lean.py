"""The lean path for ``POST /Producer/Send`` (docs/performance.md, issue 15).

aiohttp's request machinery (request and response objects, middleware, router, form
reader) cost about three quarters of the server's CPU per HTTP Send. This protocol serves
the common Send itself: httptools (llhttp) parses each request, the rules are
``accept_send``'s (server/send.py, shared with the aiohttp route) and every answer is
byte for byte what aiohttp would send (status 200, the same headers in the same order,
CORS included). Keep-alive and pipelining are served; the answers to one read go out in
one write, in order.

Anything else is not re-implemented here: at the first request this path does not serve
(another route or method, multipart or any other body type, chunked or compressed bodies,
``Expect``, upgrades, HTTP/1.0 or ``Connection: close``, bodies over MAX_BODY, a head it
cannot parse, a head aiohttp's parser refuses (see ``head_is_plain``), a form yarl will not
read, a wrong key (its answer waits for the key-guess throttle), an ``Origin`` header (the
Origin rule)) the connection, with that request's
bytes, is handed to aiohttp for good (server/listener.py ``hand_over``), which answers as
always.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import cast

from aiohttp.http import SERVER_SOFTWARE
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
from multidict import MultiDict
from yarl import query_to_pairs

from kapokmq.httpbase import CORS_HEADERS, key_matches
from kapokmq.server.listener import MAX_HEAD, bare_lf, hand_over
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.send import SendAnswer, accept_send, last_durable, settled

log = logging.getLogger(__name__)

SEND_PATH = b"/Producer/Send"
URLENCODED = b"application/x-www-form-urlencoded"
# Larger bodies go to aiohttp (which enforces client_max_size); a 100-byte Send is ~150 B.
MAX_BODY = 64 * 1024
MAX_FIELDS = 1000  # aiohttp's client_max_fields: more is its "too large" answer
# aiohttp's keep-alive timeout: an idle connection is closed after this many seconds.
IDLE_TIMEOUT = 75.0
# A header that makes a request one this path does not serve (aiohttp handles them).
# (Origin: a browser's request, judged by the Origin rule in aiohttp's middleware.)
AIOHTTP_ONLY = frozenset(
    (b"transfer-encoding", b"content-encoding", b"expect", b"upgrade", b"origin")
)
# What aiohttp's parser refuses with a 400 on top of llhttp (aiohttp/_http_parser.pyx): a
# header line longer than its max_field_size, more than max_headers headers, a second
# header of a "singleton" name, an HTTP/1.1 request without Host. Such a head goes to
# aiohttp, which words the 400: here a head longer than max_field_size or with as many
# lines as max_headers goes there whole (cheaper to test than each field, and aiohttp
# serves a long but valid one just the same). Content-Type, Content-Length, Host and
# Transfer-Encoding (AIOHTTP_ONLY) are checked by name in ``on_header``; these are the
# other singletons.
MAX_FIELD = 8190
MAX_HEADERS = 128
OTHER_SINGLETONS = frozenset(
    (b"content-location", b"content-range", b"etag", b"max-forwards", b"server", b"user-agent")
)

_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    + b"".join(f"{name}: {value}\r\n".encode() for name, value in CORS_HEADERS.items())
    + b"Content-Length: "
)
_SERVER = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode()
_date_second = 0
_date_line = b""


def response(body: bytes) -> bytes:
    """The whole HTTP answer aiohttp gives for a JSON ``body`` on an API route."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_line = f"\r\nDate: {formatdate(now, usegmt=True)}".encode()
    return b"%s%d%s%s%s" % (_HEAD, len(body), _date_line, _SERVER, body)


def plain_head(head: bytearray) -> bool:
    """Within aiohttp's size and header-count limits, every line ended by CRLF."""
    lines = head.count(b"\n")
    return len(head) <= MAX_FIELD and lines < MAX_HEADERS and lines == head.count(b"\r\n")


class LeanHttp(asyncio.Protocol):
    """One HTTP connection: Sends served here until a request that only aiohttp serves."""

    def __init__(self, runtime: BrokerRuntime, aiohttp: Callable[[], asyncio.BaseProtocol]):
        self.runtime = runtime
        self.aiohttp = aiohttp
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.buffer = bytearray()
        self.body_at = -1  # where the body of a request whose head is parsed starts
        self.body_length = 0
        self.waiting = False  # answers wait for the disk (fsync always): reading paused
        self.writing_paused = False
        self.last_read = 0.0
        self.idle: asyncio.TimerHandle | None = None
        # the request being parsed, filled by the parser's callbacks
        self.url = b""
        self.key: bytes | None = None
        self.content_type: bytes | None = None
        self.content_length: int | None = None
        self.host = False
        self.seen: set[bytes] | None = None  # OTHER_SINGLETONS met so far
        self.servable = True
        self.headers_done = False
        self.complete = False
        self.ip = ""  # the client's, for the message trace

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.key = self.content_type = None
        self.content_length = None
        self.host = False
        self.seen = None
        self.servable = True
        self.headers_done = self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"secretkey":
            if self.key is None:  # aiohttp's headers.get: the first one
                self.key = value
        elif name == b"content-type":
            self.servable = self.servable and self.content_type is None and value == URLENCODED
            self.content_type = value
        elif name == b"content-length":  # llhttp has checked it is a number
            self.servable = self.servable and self.content_length is None
            self.content_length = int(value)
        elif name == b"host":
            self.servable = self.servable and not self.host
            self.host = True
        elif name in AIOHTTP_ONLY:
            self.servable = False
        elif name in OTHER_SINGLETONS:
            if self.seen is None:
                self.seen = set()
            elif name in self.seen:
                self.servable = False
            self.seen.add(name)

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_message_complete(self) -> None:
        self.complete = True

    # ------------------------------------------------------------------ asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.runtime.broker.trace is not None:
            peer = transport.get_extra_info("peername")
            self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.runtime.http_connections.add(self)
        self.last_read = self.runtime.loop.time()
        self.idle = self.runtime.loop.call_later(IDLE_TIMEOUT, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.runtime.http_connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading its requests."""
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is not None and not self.waiting:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_read = self.runtime.loop.time()
        self.buffer += data
        if not self.waiting:
            self._serve()

    # ------------------------------------------------------------------ serving
    def _serve(self) -> None:
        """Answer every complete request in the buffer; hand over at one we do not serve."""
        buffer = self.buffer
        answers: list[SendAnswer] = []
        start = 0
        while True:
            if self.body_at < 0:  # a new request: parse its head
                head_end = buffer.find(b"\r\n\r\n", start)
                if head_end < 0:
                    if len(buffer) - start > MAX_HEAD or bare_lf(buffer[start:]):
                        return self._to_aiohttp(start, answers)
                    break
                head = buffer[start : head_end + 4]
                if not plain_head(head) or not self._parse_head(head):
                    return self._to_aiohttp(start, answers)
                self.body_at = head_end + 4 - start  # relative: the buffer is trimmed below
            body_start = start + self.body_at
            end = body_start + self.body_length
            if len(buffer) < end:
                break
            if not self._parse_body(buffer[body_start:end]):
                return self._to_aiohttp(start, answers)
            form = self._form(buffer[body_start:end])
            if form is None or not key_matches(self.key, self.runtime.config.mq.secretKey):
                return self._to_aiohttp(start, answers)
            try:
                answers.append(accept_send(self.runtime, self.key, form, self.ip))
            except Exception:  # a bug: say nothing rather than something wrong
                log.exception("HTTP Send failed; closing the connection")
                self._abort()
                return None
            self.body_at = -1
            start = end
        del buffer[:start]
        if answers:
            self._answer(answers)

    def _parse_head(self, head: bytearray) -> bool:
        """Feed one request head to the parser: True if it is a Send this path serves."""
        parser = self.parser
        try:
            parser.feed_data(head)
        except (HttpParserError, HttpParserUpgrade):
            return False
        if not (self.headers_done and self.servable and self.url == SEND_PATH):
            return False
        if not self.host:
            return False
        if parser.get_method() != b"POST" or parser.get_http_version() != "1.1":
            return False
        if not parser.should_keep_alive() or self.content_type is None:
            return False
        length = self.content_length or 0
        # the parser must agree: a body-less request is complete once its head is read
        if length > MAX_BODY or self.complete != (length == 0):
            return False
        self.body_length = length
        return True

    def _parse_body(self, body: bytearray) -> bool:
        if body:
            try:
                self.parser.feed_data(body)
            except (HttpParserError, HttpParserUpgrade):
                return False
        return self.complete

    def _form(self, body: bytearray) -> MultiDict[str] | None:
        """What aiohttp's request.post() makes of an urlencoded body; None if it would
        refuse it (not UTF-8, too many fields), so that aiohttp words the answer."""
        try:
            query = body.rstrip().decode()
            return MultiDict(query_to_pairs(query, max_fields=MAX_FIELDS, encoding="utf-8"))
        except ValueError:
            return None

    def _answer(self, answers: list[SendAnswer]) -> None:
        """Write the answers in one go, after the disk has them if any must wait."""
        last = last_durable(answers)
        if last is None or last.done():
            self._write(answers)
            return
        assert self.transport is not None
        self.waiting = True
        self.transport.pause_reading()
        self.runtime.after_durable(last, lambda: self._durable(answers))

    def _durable(self, answers: list[SendAnswer]) -> None:
        self.waiting = False
        if not self._write(answers):
            return
        if not self.writing_paused:
            assert self.transport is not None
            self.transport.resume_reading()
        self._serve()

    def _write(self, answers: list[SendAnswer]) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if len(answers) == 1:
            transport.write(response(settled(answers[0])))
        else:
            transport.write(b"".join([response(settled(a)) for a in answers]))
        return True

    def _to_aiohttp(self, start: int, answers: list[SendAnswer]) -> None:
        """Hand the connection, from the request at ``start`` on, to aiohttp for good."""
        if answers:  # earlier answers first; then aiohttp's, in order
            self.waiting = True
            last = last_durable(answers)
            if last is not None and not last.done():
                assert self.transport is not None
                self.transport.pause_reading()
                self.runtime.after_durable(last, lambda: self._hand_over_after(start, answers))
                return
            if not self._write(answers):
                return
        self._hand_over(start)

    def _hand_over_after(self, start: int, answers: list[SendAnswer]) -> None:
        if self._write(answers):
            assert self.transport is not None
            self.transport.resume_reading()
            self._hand_over(start)

    def _hand_over(self, start: int) -> None:
        assert self.transport is not None
        self.runtime.http_connections.discard(self)  # aiohttp closes it at shutdown
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        data = bytes(self.buffer[start:])
        self.buffer = bytearray()
        if self.writing_paused:  # our pause: aiohttp never resumes what it did not pause
            self.transport.resume_reading()
        hand_over(self.transport, self.aiohttp(), data)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _check_idle(self) -> None:
        """Close a connection that sent nothing for IDLE_TIMEOUT (as aiohttp's keep-alive)."""
        loop = self.runtime.loop
        quiet = loop.time() - self.last_read
        if quiet >= IDLE_TIMEOUT and not self.waiting and self.transport is not None:
            self.idle = None
            self.transport.close()
        else:
            self.idle = loop.call_later(max(0.1, IDLE_TIMEOUT - quiet), self._check_idle)


def close_all(runtime: BrokerRuntime) -> None:
    """Shutdown: close every connection still on the lean path (aiohttp closes its own),
    so no Send is accepted once storage has written its last snapshot."""
    for connection in list(runtime.http_connections):
        if isinstance(connection, LeanHttp) and connection.transport is not None:
            connection.transport.close()
