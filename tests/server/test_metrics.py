"""B7: /metrics exposes per-topic counters and, in WAL mode, fsync figures."""

from __future__ import annotations

import aiohttp

from tests.harness import SECRET


async def test_metrics_count_messages_and_wal_fsyncs(broker_factory):
    broker = broker_factory(settings={"mq.isPersistent": 2, "mq.fsync": "always"})
    async with aiohttp.ClientSession() as session:
        form = {"messageData": "m", "topic": "metered", "delayTime": "0"}
        async with session.post(
            f"{broker.http}/Producer/Send", data=form, headers={"secretKey": SECRET}
        ) as resp:
            assert (await resp.json())["code"] == 0
        async with session.get(f"{broker.http}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    assert 'kapokmq_messages_in_total{topic="metered"} 1.0' in text
    assert 'kapokmq_messages_stored{status="waiting"} 1.0' in text
    assert "kapokmq_wal_records_total 1.0" in text
    fsyncs = next(line for line in text.splitlines() if line.startswith("kapokmq_wal_fsyncs_total"))
    assert float(fsyncs.split()[-1]) >= 1
