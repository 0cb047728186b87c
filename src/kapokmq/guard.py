"""Key-guess throttle: wrong secret keys are answered slowly to an address that keeps
sending them (docs/protocol.md, "Wrong keys").

Sans-I/O: the transports (WebSocket handshakes of both engines, every HTTP key check) call
``wrong_key(address)`` when a key does not match and wait the seconds it returns before
answering. The first ``free`` wrong keys from an address within ``window`` seconds are
answered at once; after that its wrong-key answers are spaced ``spacing`` seconds apart,
across all its connections and requests together. A right key is never delayed: it does
not go through here. IPv6 addresses are grouped by /64, which one host usually owns.
The table of addresses is bounded (least recently failing entries are forgotten first).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable

FREE = 20
WINDOW = 60.0
SPACING = 1.0
MAX_ADDRESSES = 10_000


class _Record:
    __slots__ = ("failures", "next_answer")

    def __init__(self, free: int) -> None:
        self.failures: deque[float] = deque(maxlen=free)  # times of the latest wrong keys
        self.next_answer = 0.0  # earliest time the next throttled answer may go out


def source_of(address: str) -> str:
    """The key an address is counted under: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if not isinstance(ip, ipaddress.IPv6Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


class KeyGuard:
    def __init__(
        self,
        clock: Callable[[], float],
        free: int = FREE,
        window: float = WINDOW,
        spacing: float = SPACING,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.clock = clock
        self.free = free
        self.window = window
        self.spacing = spacing
        self.max_addresses = max_addresses
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self.throttled = 0  # wrong-key answers that were delayed, for /metrics

    def wrong_key(self, address: str) -> float:
        """Record a wrong key from ``address``; seconds to wait before answering it."""
        now = self.clock()
        source = source_of(address)
        records = self._records
        record = records.get(source)
        if record is None:
            record = records[source] = _Record(self.free)
            if len(records) > self.max_addresses:
                records.popitem(last=False)
        else:
            records.move_to_end(source)
        failures = record.failures
        over = len(failures) == self.free and failures[0] > now - self.window
        failures.append(now)
        if not over:
            return 0.0
        answer_at = max(now, record.next_answer)
        record.next_answer = answer_at + self.spacing
        self.throttled += 1
        return answer_at - now

    def __len__(self) -> int:
        return len(self._records)
