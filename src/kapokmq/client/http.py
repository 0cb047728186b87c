"""The HTTP API (docs/protocol.md "HTTP API"): `send_http` for /Producer/Send and
`ConsoleClient` for /Console/*."""

from __future__ import annotations

import datetime as dt
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

from kapokmq.client.connection import DEFAULT_SECRET_KEY, DEFAULT_URL, base_url
from kapokmq.client.errors import (
    ApiError,
    ApiKeyError,
    ConnectionLostError,
    ProtocolError,
    failure_reason,
)
from kapokmq.login import MISMATCH

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # Go's "2006-01-02 15:04:05", broker-local time
STATUS_ALL = 3

TimeLike = str | dt.datetime


def format_time(value: TimeLike) -> str:
    """A console time argument: datetimes are converted to local time, strings pass through."""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone().replace(tzinfo=None)
    return value.strftime(TIME_FORMAT)


class ConsoleClient:
    """Calls the broker's HTTP API. Every call raises ApiError on `{"code": -1}` (ApiKeyError,
    also an AuthenticationError, for a wrong key) and ConnectionLostError when there is no
    answer within ``timeout`` seconds.

    Use as an async context manager, or pass a shared aiohttp session.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = base_url(url, websocket=False)
        self._secret_key = secret_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http = session
        self._own_http = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def request(self, path: str, form: dict[str, str] | None = None) -> Any:
        """POST a form to ``path`` and return the decoded JSON (None for an empty body)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = self.url + path
        try:
            async with self._http.post(
                url,
                data=form or {},
                headers={"secretKey": self._secret_key},
                timeout=self._timeout,
            ) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = failure_reason(exc, self._timeout.total or 0)
            raise ConnectionLostError(f"cannot reach {url}: {reason}") from exc
        if status != 200:
            text = body[:200].decode("utf-8", "replace").strip()
            raise ProtocolError(f"{url} answered HTTP {status}: {text!r} (wrong address?)")
        if not body.strip():
            return None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            text = body[:200].decode("utf-8", "replace")
            raise ProtocolError(f"{url} answered non-JSON: {text!r}") from exc
        if isinstance(answer, dict) and answer.get("code") not in (0, None):
            reason = str(answer.get("msg", answer.get("data", "request failed")))
            if reason == MISMATCH:
                raise ApiKeyError(reason, answer)
            raise ApiError(reason, answer)
        return answer

    async def _data(self, path: str, form: dict[str, str] | None = None) -> Any:
        answer = await self.request(path, form)
        return answer.get("data") if isinstance(answer, dict) else answer

    async def send(
        self,
        topic: str,
        data: str,
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish one message over HTTP; returns its MessageCode (for a repeated
        ``message_id`` within the dedup window: the first message's code)."""
        form = {"topic": topic, "messageData": data, "delayTime": str(delay)}
        if ttl is not None:
            form["ttl"] = str(ttl)
        if message_id is not None:
            form["messageId"] = message_id
        answer = await self.request("/Producer/Send", form)
        return str(answer["msg"])

    async def ping(self) -> None:
        """Raises unless the broker answers `{"code": 0}` (also checks the key)."""
        await self.request("/Console/Ping")

    async def count(self) -> dict[str, int]:
        """Message counts: all, consumed, delay, unconsumed."""
        result: dict[str, int] = await self._data("/Console/CountMessage")
        return result

    async def config(self) -> dict[str, Any]:
        """The broker's configuration by yaml key."""
        result: dict[str, Any] = await self._data("/Console/GetConfig")
        return result

    async def clients(self) -> dict[str, list[dict[str, Any]]]:
        """Connected producers and consumers (`null` lists of the original become [])."""
        answer = await self.request("/Console/GetClients")
        return {
            "consumers": answer.get("consumers") or [],
            "producers": answer.get("producers") or [],
        }

    async def get_message(self, message_code: str) -> dict[str, Any]:
        """One message in wire form; ApiError if unknown."""
        try:
            result: dict[str, Any] = await self._data(
                "/Console/GetMessage", {"messageCode": message_code}
            )
        except ApiKeyError:
            raise
        except ApiError as exc:  # the broker says only "error" (docs/protocol.md)
            if exc.msg != "error":
                raise
            raise ApiError(f"no message with code {message_code!r}", exc.response) from exc
        return result

    async def del_message(self, message_code: str) -> None:
        """Delete one message."""
        await self.request("/Console/DelMessage", {"messageCode": message_code})

    async def list_messages(
        self,
        start: TimeLike,
        end: TimeLike,
        status: int = STATUS_ALL,
        topic: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Messages created in [start, end] (MessageData blanked), newest first."""
        form = _list_form(start, end, status, topic)
        if page is not None:
            form["page"] = str(page)
        if page_size is not None:
            form["pageSize"] = str(page_size)
        result: list[dict[str, Any]] | None = await self._data("/Console/GetMessageList", form)
        return result or []

    async def list_page(
        self,
        start: TimeLike,
        end: TimeLike,
        status: int = STATUS_ALL,
        topic: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of ``list_messages`` and how many messages matched in all."""
        form = _list_form(start, end, status, topic)
        form.update(page=str(page), pageSize=str(page_size))
        answer = await self.request("/Console/GetMessageList", form)
        return answer.get("data") or [], int(answer.get("total", 0))

    async def scheduled(
        self, topic: str | None = None, page: int = 1, page_size: int = 20
    ) -> tuple[list[dict[str, Any]], int, int]:
        """One page of the delayed messages, soonest first (MessageData blanked, plus
        ``DueTime``), how many are delayed in all (in ``topic``, if given), and the
        broker's clock (unix seconds) for countdowns."""
        form = {"page": str(page), "pageSize": str(page_size)}
        if topic:
            form["topic"] = topic
        answer = await self.request("/Console/GetScheduled", form)
        return answer.get("data") or [], int(answer.get("total", 0)), int(answer.get("now", 0))

    async def deliver_now(self, message_code: str) -> None:
        """Make a delayed message due at once; ApiError unless it is delayed."""
        await self.request("/Console/DeliverNow", {"messageCode": message_code})

    async def requeue(self, message_code: str) -> None:
        """Put a dead (or consumed) message back in its queue, attempts reset; ApiError
        unless it is dead or consumed."""
        await self.request("/Console/Requeue", {"messageCode": message_code})

    async def trace(self, message_code: str) -> list[dict[str, Any]]:
        """The message's trace events, oldest first (``mq.trace``); ApiError when tracing
        is off, no message has that code, or it has no trace."""
        result = await self._data("/Console/GetMessageTrace", {"messageCode": message_code})
        events: list[dict[str, Any]] = result["Events"]
        return events

    async def nodes(self) -> list[dict[str, Any]]:
        """Cluster nodes; [] when the broker is not clustered."""
        result = await self.request("/Console/GetNodes")
        return result if isinstance(result, list) else []


def _list_form(start: TimeLike, end: TimeLike, status: int, topic: str | None) -> dict[str, str]:
    form = {"startTime": format_time(start), "endTime": format_time(end), "status": str(status)}
    if topic:
        form["topic"] = topic
    return form


async def send_http(
    url: str,
    topic: str,
    data: str,
    secret_key: str = DEFAULT_SECRET_KEY,
    delay: int = 0,
    *,
    ttl: int | None = None,
    message_id: str | None = None,
    session: aiohttp.ClientSession | None = None,
    timeout: float = 30.0,
) -> str:
    """Publish one message with `POST /Producer/Send`; returns its MessageCode (arguments
    as for `ConsoleClient.send`)."""
    async with ConsoleClient(url, secret_key, timeout=timeout, session=session) as client:
        return await client.send(topic, data, delay, ttl=ttl, message_id=message_id)
