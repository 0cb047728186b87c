"""Shared fixtures: a real broker process per test module or per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import BrokerProcess


@pytest.fixture
def broker_factory(tmp_path) -> Iterator[type[BrokerProcess]]:
    """Call ``broker_factory(settings={...})`` to get a started broker; all are cleaned up."""
    started: list[BrokerProcess] = []

    def make(settings: dict[str, object] | None = None, **kwargs) -> BrokerProcess:
        proc = BrokerProcess(settings=settings or {}, cwd=kwargs.pop("cwd", tmp_path), **kwargs)
        started.append(proc)
        return proc.start()

    yield make  # type: ignore[misc]
    for proc in started:
        proc.cleanup()


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    """A default broker (point-to-point, key `test`)."""
    proc: BrokerProcess = broker_factory()
    return proc
