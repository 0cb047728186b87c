"""In-process helpers: a real BrokerRuntime with storage on a temp directory."""

from __future__ import annotations

from pathlib import Path

from kapokmq.config import Config
from kapokmq.model import Code, Message
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.storage import Storage, open_storage

FIELDS = (
    "code",
    "data",
    "topic",
    "create_time",
    "consumed_time",
    "delay_time",
    "status",
    "arrival",
    "attempts",
)


def make_config(data_dir: Path, **mq: object) -> Config:
    config = Config()
    config.mq.dataDir = str(data_dir)
    config.mq.isPersistent = 2
    for key, value in mq.items():
        setattr(config.mq, key, value)
    return config


def start(config: Config) -> tuple[BrokerRuntime, Storage]:
    runtime = BrokerRuntime(config)
    storage = open_storage(runtime)
    assert storage is not None
    return runtime, storage


def crash(runtime: BrokerRuntime, storage: Storage) -> None:
    """What a SIGKILL leaves: whatever reached the OS stays, nothing else is done."""
    if storage.wal is not None:
        storage.wal.flush()
        if storage.wal._timer is not None:
            storage.wal._timer.cancel()
    if storage._timer is not None:
        storage._timer.cancel()
    storage.datadir.close()
    storage.wal_executor.shutdown(wait=True)
    storage.snap_executor.shutdown(wait=True)
    runtime.close()


def state(messages: list[Message], attempts: bool = True) -> dict[Code, tuple[object, ...]]:
    """Everything that is persisted; pushes alone do not log ``attempts``."""
    fields = FIELDS if attempts else FIELDS[:-1]
    return {m.code: tuple(getattr(m, f) for f in fields) for m in messages}
