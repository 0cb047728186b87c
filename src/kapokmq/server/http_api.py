"""The HTTP producer and Console API (docs/protocol.md "HTTP API"), plus our extensions.

Every JSON answer is HTTP 200 with ``code`` 0 or -1, as in the original; map-shaped
answers have sorted keys because Go sorts map keys when encoding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from kapokmq.config import SECRETS, SECTIONS, Config
from kapokmq.core.broker import Broker
from kapokmq.core.lifetimes import EXPIRED, MAX_DELIVERIES
from kapokmq.core.trace import event_view
from kapokmq.httpbase import KEY_MISMATCH, json_response, key_matches
from kapokmq.model import Message, Status, code_key
from kapokmq.protocol import INT64_MAX
from kapokmq.server.forms import BadInput, field, int_field
from kapokmq.server.keys import NODES, RUNTIME
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.send import (
    KEY_MISMATCH_BODY,
    accept_batch,
    accept_send,
    batch_body,
    last_durable,
    parse_batch,
    settled,
)
from kapokmq.storage import StorageError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
STATUS_FILTERS = {
    "3": None,
    "-1": Status.WAITING,
    "0": Status.DELAYED,
    "1": Status.CONSUMED,
    "2": Status.DEAD,
}
MAX_PAGE_SIZE = 10_000


def error(reason: str) -> web.Response:
    return json_response({"code": -1, "msg": reason})


def runtime_of(request: web.Request) -> BrokerRuntime:
    runtime: BrokerRuntime = request.app[RUNTIME]
    return runtime


FormHandler = Callable[[web.Request, MultiDictProxy[Any]], Awaitable[web.Response]]


def console_key(config: Config) -> str:
    """The key the Console API wants: mq.consoleKey if set, else mq.secretKey."""
    return config.mq.consoleKey or config.mq.secretKey


def authorised(handler: FormHandler) -> Handler:
    """A Console route: check the key, parse the form, turn BadInput into a -1 answer."""
    return _guarded(handler, console_key)


async def key_accepted(request: web.Request, secret: str, bearer: bool = False) -> bool:
    """Does the request carry ``secret`` (the ``secretKey`` header, or with ``bearer``
    also ``Authorization: Bearer <key>``)? A wrong or missing key is answered only after
    the per-address throttle's delay (guard.py); a right one at once."""
    given = request.headers.get("secretKey")
    if given is None and bearer:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = token.strip()
    if key_matches(given, secret):
        return True
    await wrong_key(request)
    return False


async def wrong_key(request: web.Request) -> None:
    """Wait as long as the per-address throttle wants before a wrong-key answer."""
    delay = runtime_of(request).key_guard.wrong_key(request.remote or "")
    if delay:
        await asyncio.sleep(delay)


def _guarded(handler: FormHandler, key_of: Callable[[Config], str]) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not await key_accepted(request, key_of(runtime_of(request).config)):
            return json_response(KEY_MISMATCH)
        form = await read_form(request)
        if isinstance(form, str):
            return error(form)
        try:
            return await handler(request, form)
        except BadInput as exc:
            return error(str(exc))

    wrapped.__name__ = handler.__name__
    return wrapped


def too_large(request: web.Request) -> str:
    return (
        f"request body is larger than {request.client_max_size} bytes "
        "(messageData is limited by mq.maxMessageBytes)"
    )


async def read_form(request: web.Request) -> MultiDictProxy[Any] | str:
    """The request's form, or the text saying why its body cannot be read as one."""
    try:
        return await request.post()
    except web.HTTPRequestEntityTooLarge:
        return too_large(request)
    except Exception as exc:  # aiohttp raises ValueError, LookupError (charset),
        # RuntimeError (transfer encoding), InvalidHeader...: all mean a bad body
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot parse the form body: {reason}"


def time_field(form: MultiDictProxy[Any], name: str, default: int) -> int:
    raw = field(form, name).strip()
    if not raw:
        return default
    try:
        return int(time.mktime(time.strptime(raw, TIME_FORMAT)))
    except ValueError:
        raise BadInput(
            f"{name} must look like 2006-01-02 15:04:05 (local time), got {raw!r}"
        ) from None


# ---------------------------------------------------------------------------- producer
async def producer_send(request: web.Request) -> web.StreamResponse:
    """The rules are accept_send's (server/send.py), shared with the lean path."""
    form = await read_form(request)
    if not isinstance(form, str) and not form:
        form = _misplaced_fields(request) or form
    runtime = runtime_of(request)
    answer = accept_send(runtime, request.headers.get("secretKey"), form, request.remote or "")
    if answer.body is KEY_MISMATCH_BODY:
        await wrong_key(request)
    if answer.durable is not None:
        await runtime.wait_durable(answer.durable)
    return web.Response(body=settled(answer), content_type="application/json", charset="utf-8")


def _misplaced_fields(request: web.Request) -> str | None:
    """Why a Send with no form field at all has none, when the fields were sent another
    way (a JSON body, the query string); the original reads only the form body too."""
    if request.content_type == "application/json":
        return (
            "the body is application/json, but /Producer/Send reads form fields "
            "(application/x-www-form-urlencoded or multipart/form-data): "
            "send -d messageData=...&topic=...&delayTime=0, or JSON to /Producer/SendBatch"
        )
    if request.query:
        return (
            "no form fields in the body: messageData, topic and delayTime are read from the "
            "form body (application/x-www-form-urlencoded or multipart/form-data), "
            "not from the query string"
        )
    if request.body_exists:  # a form sent as text/plain, or with no Content-Type at all
        sent = request.headers.get("Content-Type")
        return (
            f"the body is {'sent without a Content-Type' if sent is None else repr(sent)}, "
            "but /Producer/Send reads form fields: send it as "
            "application/x-www-form-urlencoded or multipart/form-data"
        )
    return None


async def producer_send_batch(request: web.Request) -> web.StreamResponse:
    """Extension: many Sends in one request (server/send.py accept_batch)."""
    try:
        items = parse_batch(await request.read())
    except web.HTTPRequestEntityTooLarge:
        items = too_large(request)
    runtime = runtime_of(request)
    answer = accept_batch(runtime, request.headers.get("secretKey"), items, request.remote or "")
    if not isinstance(answer, list) and answer.body is KEY_MISMATCH_BODY:
        await wrong_key(request)
    if isinstance(answer, list):
        durable = last_durable(answer)
        if durable is not None:
            await runtime.wait_durable(durable)
        body = batch_body(answer)
    else:
        body = answer.body
    return web.Response(body=body, content_type="application/json", charset="utf-8")


# ---------------------------------------------------------------------------- console
@authorised
async def ping(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    return json_response({"code": 0})


@authorised
async def get_clients(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    consumers, producers = runtime_of(request).broker.clients()
    return json_response(
        {
            "code": 0,
            "consumers": [c.as_consumer() for c in consumers],
            "producers": [p.as_producer() for p in producers],
        }
    )


@authorised
async def get_consumers(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    consumers, _ = runtime_of(request).broker.clients()
    return json_response({"code": 0, "data": [c.as_consumer() for c in consumers]})


@authorised
async def get_producers(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    _, producers = runtime_of(request).broker.clients()
    return json_response({"code": 0, "data": [p.as_producer() for p in producers]})


@authorised
async def get_config(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    return json_response({"code": 0, "data": runtime_of(request).config.console_view()})


@authorised
async def get_config_sections(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    """Extension for the console: every config value grouped by its application.yaml section,
    in the file's order (server, mq, cluster, sync), secrets left out."""
    config = runtime_of(request).config
    sections: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = getattr(config, name)
        sections[name] = {
            f.name: getattr(section, f.name)
            for f in dataclasses.fields(section)
            if f.name not in SECRETS
        }
    return json_response({"code": 0, "data": sections})


@authorised
async def count_message(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    counts = runtime_of(request).broker.store.counts()
    return json_response(
        {
            "code": 0,
            "data": {
                "all": sum(counts.values()),
                "consumed": counts[Status.CONSUMED],
                "delay": counts[Status.DELAYED],
                "unconsumed": counts[Status.WAITING],
            },
        }
    )


def message_view(broker: Broker, msg: Message, with_data: bool = True) -> dict[str, Any]:
    """A message as the original's JSON object, plus our keys where they apply: ``TTL``
    and ``ExpiresAt`` (a TTL and, while it runs, when it dies), ``DeadReason`` (a dead
    message), ``History`` (its dead / re-queued events, oldest first)."""
    view = msg.to_dict(with_data)
    code = msg.code
    lifetimes = broker.lifetimes
    if lifetimes:
        ttl = lifetimes.ttl(code)
        if ttl:
            view["TTL"] = ttl
            deadline = lifetimes.deadline(code)
            if deadline is not None and msg.status is Status.WAITING:
                view["ExpiresAt"] = whole_seconds(deadline)
    letters = broker.dead_letters
    if letters:
        if msg.status is Status.DEAD:
            view["DeadReason"] = letters.reason(code) or ""
        if with_data:
            history = letters.history_view(code)
            if history:
                view["History"] = history
    return view


def required_code(form: MultiDictProxy[Any]) -> str:
    """The ``messageCode`` of our routes that act on one message (GetMessageTrace,
    DeliverNow, Requeue): a blank one is refused with one text everywhere (docs/protocol.md,
    "HTTP API"). The original's GetMessage and DelMessage keep their own answers."""
    code = field(form, "messageCode").strip()
    if not code:
        raise BadInput("messageCode is required")
    return code


def _lookup(request: web.Request, form: MultiDictProxy[Any]) -> Message | None:
    return runtime_of(request).broker.store.get(code_key(field(form, "messageCode").strip()))


@authorised
async def get_message(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    msg = _lookup(request, form)
    if msg is None:
        return json_response({"code": -1, "data": "error"})
    return json_response({"code": 0, "data": message_view(runtime_of(request).broker, msg)})


@authorised
async def get_message_trace(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    """Extension: a message's trace, oldest event first (docs/protocol.md "Message trace").
    A trace outlives its message, so a deleted message's trace is still answered."""
    code = required_code(form)
    broker = runtime_of(request).broker
    trace = broker.trace
    if trace is None:
        return error("message trace is off (mq.trace is 0)")
    key = code_key(code)
    events = trace.events_of(key)
    if events is None:
        if broker.store.get(key) is None:
            return error("no message with that messageCode")
        return error("that message has no trace (not sampled, or evicted by mq.traceMaxEvents)")
    return json_response(
        {"code": 0, "data": {"MessageCode": code, "Events": [event_view(e) for e in events]}}
    )


@authorised
async def del_message(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    runtime = runtime_of(request)
    if (refused := runtime.console_refusal()) is not None:
        return error(refused)
    runtime.broker.delete(field(form, "messageCode").strip())
    return await _answer_durably(runtime)


DEATH_REASONS = (EXPIRED, MAX_DELIVERIES)  # what GetMessageList's reason filter takes


@authorised
async def get_message_list(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    start = time_field(form, "startTime", 0)
    end = time_field(form, "endTime", 1 << 62)
    raw_status = field(form, "status").strip() or "3"
    if raw_status not in STATUS_FILTERS:
        raise BadInput(f"status must be one of 3 (all), -1, 0, 1, 2; got {raw_status!r}")
    topic = field(form, "topic") or None
    broker = runtime_of(request).broker
    found = broker.store.search(start, end, STATUS_FILTERS[raw_status], topic)
    reason = field(form, "reason").strip()
    if reason and reason not in DEATH_REASONS:  # a typo would silently list nothing
        raise BadInput(f"reason must be one of {', '.join(DEATH_REASONS)}; got {reason!r}")
    if reason:  # dead messages that died (last) for this reason
        reason_of = broker.dead_letters.reason
        found = [m for m in found if m.status is Status.DEAD and reason_of(m.code) == reason]
    page = int_field(form, "page", 0)
    size = int_field(form, "pageSize", 0)
    if page < 0 or size < 0 or size > MAX_PAGE_SIZE:
        raise BadInput(f"page must be >= 1 and pageSize between 1 and {MAX_PAGE_SIZE}")
    if not (page or size):
        return json_response({"code": 0, "data": [message_view(broker, m, False) for m in found]})
    # paged (extension): also say how many matched, so a console can draw its pager
    page = max(page, 1)
    size = size or 20
    window = found[(page - 1) * size : page * size]
    return json_response(
        {"code": 0, "data": [message_view(broker, m, False) for m in window], "total": len(found)}
    )


def _page_of(form: MultiDictProxy[Any]) -> tuple[int, int]:
    """(page, pageSize) of a paged extension: 1-based, 20 a page unless told."""
    page = int_field(form, "page", 1)
    size = int_field(form, "pageSize", 20)
    if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        raise BadInput(f"page must be >= 1 and pageSize between 1 and {MAX_PAGE_SIZE}")
    return page, size


def whole_seconds(moment: float) -> int:
    """A due time or deadline as unix seconds rounded up, within the 64-bit range that
    DelayTime and TTL have (a delay of 2^63-1 s from now would be past it)."""
    return min(math.ceil(moment), INT64_MAX)


@authorised
async def get_scheduled(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    """Extension: delayed messages by due time (MessageData blanked), with ``DueTime``."""
    page, size = _page_of(form)
    topic = field(form, "topic") or None
    total, upcoming = runtime_of(request).broker.scheduler.upcoming(topic, (page - 1) * size, size)
    broker = runtime_of(request).broker
    data = [
        {**message_view(broker, m, False), "DueTime": whole_seconds(due)} for due, m in upcoming
    ]
    # `now` rounded up as DueTime is, so DueTime - now is the whole seconds left: a delay
    # of 100 s counts down from 100, not 101 (a rounded-up due time less a truncated now)
    now = whole_seconds(broker.clock())
    return json_response({"code": 0, "data": data, "now": now, "total": total})


@authorised
async def deliver_now(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    """Extension: a delayed message becomes due now (on disk first under fsync always)."""
    runtime = runtime_of(request)
    if (refused := runtime.console_refusal()) is not None:
        return error(refused)
    if runtime.deliver_now(required_code(form)):
        return await _answer_durably(runtime)
    return error("no delayed message with that messageCode")


@authorised
async def requeue_message(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    """Extension: put a dead (or consumed) message back in its queue."""
    runtime = runtime_of(request)
    if (refused := runtime.console_refusal()) is not None:
        return error(refused)
    if runtime.requeue(required_code(form)):
        return await _answer_durably(runtime)
    return error("no dead or consumed message with that messageCode")


async def _answer_durably(runtime: BrokerRuntime) -> web.Response:
    """``{"code":0}`` for a console change, under fsync always once it is on disk (or the
    storage error if it cannot be), under everysec and no once the WAL wrote it to the OS
    (docs/durability.md): a SIGKILL right after the answer does not undo it."""
    if runtime.durable_barrier is not None:
        try:
            await runtime.durable_barrier()
        except StorageError as exc:
            return error(str(exc))
    elif (written := runtime.written_ticket()) is not None:
        await asyncio.wait([written])  # shared: never cancelled here, never raises
        if (failure := written.exception()) is not None:  # the write failed
            return error(str(failure))
    return json_response({"code": 0})


@authorised
async def stats(request: web.Request, form: MultiDictProxy[Any]) -> web.Response:
    """Extension for the console: counts incl. dead, per-topic figures, hourly creation."""
    runtime = runtime_of(request)
    broker = runtime.broker
    counts = broker.store.counts()
    topics = []
    for topic in sorted(broker.topics.values(), key=lambda t: t.name):
        s = topic.stats
        producers = sum(1 for p in broker.producers.values() if p.info.topic == topic.name)
        topics.append(
            {
                "acked": s.acked,
                "consumers": len(topic.consumers),
                "dead": s.dead,
                "inFlight": topic.in_flight(),
                "name": topic.name,
                "producers": producers,
                "published": s.published,
                "pushed": s.pushed,
                "ready": len(topic.ready),
                "redelivered": s.redelivered,
            }
        )
    return json_response(
        {
            "code": 0,
            "data": {
                "counts": {
                    "all": sum(counts.values()),
                    "consumed": counts[Status.CONSUMED],
                    "dead": counts[Status.DEAD],
                    "delay": counts[Status.DELAYED],
                    "unconsumed": counts[Status.WAITING],
                },
                "hourly": {str(h): n for h, n in sorted(broker.store.hourly().items())},
                "now": int(broker.clock()),
                "startedAt": int(runtime.started_at),
                "topics": topics,
                # GetMessageList's startTime/endTime are this broker's local time: a
                # console in another zone converts what it shows with this
                "utcOffset": time.localtime().tm_gmtoff,
            },
        }
    )


async def get_nodes(request: web.Request) -> web.StreamResponse:
    """Cluster members; an empty body when the broker is not clustered (as the original)."""
    if not await key_accepted(request, console_key(runtime_of(request).config)):
        return json_response(KEY_MISMATCH)
    nodes_provider = request.app.get(NODES)
    if nodes_provider is None:
        return web.Response(body=b"", content_type="application/json", charset="utf-8")
    return json_response(nodes_provider())


CONSOLE_ROUTES: dict[str, Handler] = {
    "/Producer/Send": producer_send,
    "/Producer/SendBatch": producer_send_batch,
    "/Console/Ping": ping,
    "/Console/GetClients": get_clients,
    "/Console/GetConsumers": get_consumers,
    "/Console/GetProducers": get_producers,
    "/Console/GetConfig": get_config,
    "/Console/GetConfigSections": get_config_sections,
    "/Console/CountMessage": count_message,
    "/Console/GetMessage": get_message,
    "/Console/DelMessage": del_message,
    "/Console/GetMessageTrace": get_message_trace,
    "/Console/GetMessageList": get_message_list,
    "/Console/GetMessageEasy": get_message_list,
    "/Console/GetNodes": get_nodes,
    "/Console/Requeue": requeue_message,
    "/Console/GetScheduled": get_scheduled,
    "/Console/DeliverNow": deliver_now,
    "/Console/Stats": stats,
}
