"""Module-scoped brokers: one process per test module where the settings are the same."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from unittest import mock

import pytest

from tests.harness import BrokerProcess

COMPAT_DIR = Path(__file__).resolve().parent
TEST_TIMEOUT = 30  # seconds, broker start-up included; each test aims at well under 20


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Bound every compatibility test in time unless it sets its own timeout."""
    for item in items:
        if item.path.is_relative_to(COMPAT_DIR) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


SRC = Path(__file__).resolve().parents[2] / "src"


def _pythonpath() -> str:
    """Make the broker subprocess run this checkout's code, not an installed copy."""
    rest = os.environ.get("PYTHONPATH", "")
    return f"{SRC}{os.pathsep}{rest}" if rest else str(SRC)


@contextlib.contextmanager
def started_broker(
    cwd: Path,
    settings: Mapping[str, object] | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[BrokerProcess]:
    """A broker running in ``cwd`` (so no stray ./application.yaml is read)."""
    proc = BrokerProcess(settings=dict(settings or {}), extra_args=extra_args, cwd=cwd)
    with mock.patch.dict(os.environ, {"PYTHONPATH": _pythonpath(), **(env or {})}):
        proc.start()
    try:
        yield proc
    finally:
        proc.cleanup()
