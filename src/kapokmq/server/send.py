"""HTTP Send's rules in one place, without I/O (docs/protocol.md "HTTP API").

Two front ends serve ``POST /Producer/Send``: the aiohttp route (server/http_api.py) and
the lean path (server/http_lean.py). Both call ``accept_send``, so the key check, the order
in which fields are checked, delayTime parsing, the write gate, "queue full" and the
fsync=always barrier cannot drift apart. The caller answers with ``settled(answer)`` once
``answer.durable`` (if any) is done: never ``ok`` for a message whose WAL batch did not
reach the disk (docs/protocol.md "Refused writes").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from multidict import MultiDict

from kapokmq.httpbase import KEY_MISMATCH, key_matches
from kapokmq.model import dumps, json_string
from kapokmq.protocol import Extras, FrameError, SendItem, check_message_id
from kapokmq.server.forms import BadInput, Form, field, int_field
from kapokmq.server.runtime import BrokerRuntime, WritesRefused

KEY_MISMATCH_BODY = dumps(KEY_MISMATCH)
INT64 = range(-(1 << 63), 1 << 63)


@dataclass(slots=True)
class SendAnswer:
    """The JSON body to answer with; ``durable``: wait for it first (fsync ``always``:
    the disk; sync.ack 1: the slaves; else the WAL's write to the OS)."""

    body: bytes
    durable: asyncio.Future[None] | None = None


def error(reason: str) -> SendAnswer:
    return SendAnswer(dumps({"code": -1, "msg": reason}))


def settled(answer: SendAnswer) -> bytes:
    """The body to send once ``answer.durable`` is done: the storage error if it failed."""
    durable = answer.durable
    if durable is None:
        return answer.body
    if durable.cancelled():
        return error("storage unavailable: the write was cancelled").body
    failure = durable.exception()
    return answer.body if failure is None else error(str(failure)).body


def accept_send(
    runtime: BrokerRuntime, key: str | bytes | None, form: Form | str, ip: str = ""
) -> SendAnswer:
    """Check and publish one Send. ``form`` is the parsed form, or the text saying why
    the body could not be parsed (answered only to a caller with the right key). ``ip``
    is the client's, for the message trace."""
    if not key_matches(key, runtime.config.mq.secretKey):
        return SendAnswer(KEY_MISMATCH_BODY)
    if isinstance(form, str):
        return error(form)
    return publish_form(runtime, form, ip)


def publish_form(runtime: BrokerRuntime, form: Form, ip: str = "") -> SendAnswer:
    """Send's field rules, in the order the original checks them, then the publish."""
    try:
        delay = int_field(form, "delayTime")
        if delay not in INT64:
            raise BadInput("delayTime is out of the 64-bit integer range")
        ttl = int_field(form, "ttl", 0)
        if ttl < 0:
            raise BadInput("ttl must be a whole number of seconds >= 0")
        if ttl not in INT64:
            raise BadInput("ttl is out of the 64-bit integer range")
        message_id = check_message_id(field(form, "messageId"), "messageId")
        data = field(form, "messageData")
        topic = field(form, "topic")
    except (BadInput, FrameError) as exc:
        return error(str(exc))
    if not data or not topic:
        return error("Required data cannot be empty")
    limit = runtime.config.mq.maxMessageBytes
    if len(data.encode()) > limit:
        return error(f"messageData is larger than mq.maxMessageBytes ({limit})")
    item: SendItem = (data, delay, Extras(ttl, message_id)) if ttl or message_id else (data, delay)
    try:
        code = runtime.send(
            topic, item, ("", ip, "http") if runtime.broker.trace is not None else None
        )
    except WritesRefused as exc:  # the write gate, or "queue full"
        return error(exc.refusal.http_text)
    ticket = runtime.durable_ticket
    # the same bytes as dumps({"code": 0, "msg": code}), without its regex pass per answer
    body = b'{"code":0,"msg":%s}' % json_string(code)
    return SendAnswer(body, ticket() if ticket else runtime.written_ticket())


# ---------------------------------------------------------------------------- SendBatch
MAX_BATCH = 10_000
Item = Form | str  # a message's fields, or why the item cannot be one


def parse_batch(body: bytes) -> list[Item] | str:
    """A SendBatch body: a JSON array of objects, or one JSON object per line (NDJSON).
    Each object has Send's fields; a string or an integer value stands for the form text."""
    try:
        if body.lstrip()[:1] == b"[":
            objects = orjson.loads(body)
        else:
            objects = [orjson.loads(line) for line in body.splitlines() if line.strip()]
    except orjson.JSONDecodeError as exc:
        return f"cannot parse the batch: {exc}"
    if not isinstance(objects, list):
        return "cannot parse the batch: expected a JSON array of objects"
    if len(objects) > MAX_BATCH:
        return f"a batch holds at most {MAX_BATCH} messages, got {len(objects)}"
    return [_item(obj) for obj in objects]


def _item(obj: object) -> Item:
    if not isinstance(obj, dict):
        return "each message must be a JSON object"
    form: MultiDict[str] = MultiDict()
    for name, value in obj.items():
        if isinstance(value, str):
            form.add(name, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            form.add(name, str(value))
        elif value is not None:
            return f"{name} must be a string or an integer"
    return form


def accept_batch(
    runtime: BrokerRuntime, key: str | bytes | None, items: list[Item] | str, ip: str = ""
) -> list[SendAnswer] | SendAnswer:
    """SendBatch (docs/protocol.md): the key once, then every item by Send's rules, in
    order; one answer per item (see ``batch_body``), or one error for the whole request."""
    if not key_matches(key, runtime.config.mq.secretKey):
        return SendAnswer(KEY_MISMATCH_BODY)
    if isinstance(items, str):
        return error(items)
    return [
        error(item) if isinstance(item, str) else publish_form(runtime, item, ip) for item in items
    ]


def batch_body(answers: list[SendAnswer]) -> bytes:
    """``{"code":0,"data":[<each item's Send answer>]}`` once the last durable is done."""
    return b'{"code":0,"data":[%s]}' % b",".join([settled(a) for a in answers])


def last_durable(answers: list[SendAnswer]) -> asyncio.Future[None] | None:
    """The future to wait for: the WAL makes batches durable in order, so the last one."""
    last = None
    for answer in answers:
        if answer.durable is not None:
            last = answer.durable
    return last
