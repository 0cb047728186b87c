"""Every client call ends, with an error that says what went wrong: a broker that stopped
answering, a port that accepts and never answers, a wrong key over HTTP, an unknown code."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from kapokmq.client import (
    ApiError,
    AuthenticationError,
    ClientClosedError,
    ClusterProducer,
    ConnectionLostError,
    ConsoleClient,
    Consumer,
    Producer,
)
from tests.harness import BrokerProcess


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A listening socket nobody accepts on: connects succeed, nothing is ever answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_silent_port_fails_in_time_and_says_so(silent_port: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionLostError, match=r"no answer within 0\.5 s"):
        async with Producer(silent_port, "t", "p", connect_timeout=0.5):
            pass
    with pytest.raises(ConnectionLostError, match=r"no answer within 0\.5 s"):
        async with Consumer(silent_port, "t", "c", connect_timeout=0.5):
            pass
    with pytest.raises(ConnectionLostError, match=r"cannot reach .* no answer within 0\.5 s"):
        async with ConsoleClient(silent_port, timeout=0.5) as console:
            await console.count()
    assert time.monotonic() - started < 10


async def test_send_to_a_stopped_broker_times_out(broker: BrokerProcess) -> None:
    assert broker.proc is not None
    async with Producer(broker.http, "frozen", "p", send_timeout=1.0) as producer:
        await producer.send("before")
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ConnectionLostError, match=r"no reply from .* within 1 s"):
                await producer.send("while stopped")
            assert time.monotonic() - started < 5
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        await producer.send("after")  # the session is still good once it answers again


async def test_receive_on_a_closed_consumer_says_so(broker: BrokerProcess) -> None:
    consumer = Consumer(broker.http, "closed", "c")
    await consumer.connect()
    await consumer.close()
    with pytest.raises(ClientClosedError, match="consumer is closed"):
        await consumer.receive(timeout=1)
    async for _ in consumer:  # iteration simply ends
        raise AssertionError("a closed consumer yielded a message")


async def test_http_wrong_key_and_unknown_code(broker: BrokerProcess) -> None:
    async with ConsoleClient(broker.http, "wrong") as console:
        with pytest.raises(AuthenticationError) as caught:
            await console.count()
    assert isinstance(caught.value, ApiError)  # still the ApiError of that answer
    async with ConsoleClient(broker.http) as console:
        with pytest.raises(ApiError, match="no message with code 'nope'"):
            await console.get_message("nope")


async def test_cluster_client_without_registry_leaves_nothing_open() -> None:
    producer = ClusterProducer("http://127.0.0.1:1", "t", "p")
    with pytest.raises(ConnectionLostError, match="cannot reach"):
        await producer.connect()
    assert producer._http is None  # the session it opened for the registry is closed
