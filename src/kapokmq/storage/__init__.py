"""Durable storage: snapshots and a write-ahead log (docs/durability.md)."""

from kapokmq.storage.layout import StorageError
from kapokmq.storage.manager import Storage, open_storage

__all__ = ["Storage", "StorageError", "open_storage"]
