"""HTTP Send under fsync everysec and no: its ``{"code":0}`` is written only once the
message's WAL record reached the OS, so a SIGKILL right after the answer loses nothing
answered (docs/durability.md "Guarantees"). Its record is written by the WAL's flush at
the end of the loop iteration; the answer was written in that same iteration, before."""

from __future__ import annotations

from pathlib import Path

import pytest
from multidict import MultiDict

from kapokmq.server.http_api import _answer_durably
from kapokmq.server.send import accept_batch, publish_form, settled
from tests.storage.helpers import make_config, start


@pytest.mark.parametrize("fsync", ["everysec", "no"])
async def test_an_http_send_is_answered_once_its_record_reached_the_os(
    tmp_path: Path, fsync: str
) -> None:
    runtime, storage = start(make_config(tmp_path, fsync=fsync))
    wal = storage.wal
    assert wal is not None
    form = MultiDict({"messageData": "m", "topic": "t", "delayTime": "0"})
    answers = [publish_form(runtime, form)]
    batch = accept_batch(runtime, runtime.config.mq.secretKey, [form, form])
    assert isinstance(batch, list)
    for answer in [*answers, *batch]:
        if answer.durable is not None:  # what both HTTP paths wait for before answering
            await answer.durable
        assert wal.written == wal.appended == 3, "answered before its record was written"
        assert settled(answer).startswith(b'{"code":0')
    await storage.close()


async def test_a_console_change_is_answered_once_its_record_reached_the_os(tmp_path: Path) -> None:
    """DelMessage, Requeue, DeliverNow: a SIGKILL right after their `{"code":0}` must not
    undo the change (everysec: the answer waits for the iteration's WAL write)."""
    runtime, storage = start(make_config(tmp_path, fsync="everysec"))
    wal = storage.wal
    assert wal is not None
    msg = runtime.broker.publish("t", "m")
    wal.flush()
    assert runtime.broker.delete(msg.code)
    answer = await _answer_durably(runtime)
    assert answer.status == 200
    assert wal.written == wal.appended, "answered before the change was written"
    await storage.close()
