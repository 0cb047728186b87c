"""KapokMQ: a lightweight message queue over WebSocket, compatible with the Go KapokMQ."""

__version__ = "0.1.0"
