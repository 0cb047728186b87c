"""A one-line progress display on stderr for long `kapokmq produce` runs."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """Redraws ``sent / confirmed`` (and a bar when the input size is known) a few times a second.

    Stays silent for the first ``delay`` seconds so small inputs print nothing.
    """

    def __init__(
        self, stream: TextIO, total_bytes: int | None, delay: float = 0.5, every: float = 0.2
    ) -> None:
        self._stream = stream
        self._total = total_bytes
        self._start = time.monotonic()
        self._delay = delay
        self._every = every
        self._last = 0.0
        self._shown = False

    def update(self, sent: int, confirmed: int, bytes_read: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (now - self._start < self._delay or now - self._last < self._every):
            return
        if force and not self._shown:
            return
        self._last = now
        self._shown = True
        elapsed = max(now - self._start, 1e-9)
        line = f"{sent} sent, {confirmed} confirmed, {confirmed / elapsed:,.0f} msg/s"
        if self._total:
            fraction = min(bytes_read / self._total, 1.0)
            filled = int(fraction * 30)
            line = f"[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} " + line
        self._stream.write("\r" + line + "\x1b[K")
        self._stream.flush()

    def finish(self, sent: int, confirmed: int, bytes_read: int) -> None:
        self.update(sent, confirmed, bytes_read, force=True)
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
