"""Bind and advertise addresses for a gossip node that shares the HTTP server's address."""

from __future__ import annotations

UNSPECIFIED = ("", "0.0.0.0", "::")


def advertise_for(addr: str) -> str | None:
    """``server.addr`` is advertised as is, except an unspecified address (``0.0.0.0``):
    then the gossip library picks the routed local IP (Go would advertise 0.0.0.0)."""
    return None if addr in UNSPECIFIED else addr
