"""The secret-key login of every WebSocket endpoint (docs/protocol.md "Handshake"), the
texts both sides compare byte for byte: the server (server/session.py), the Python client
(client/connection.py) and a slave following its master (cluster/replication.py), which
also sends the heartbeat."""

from __future__ import annotations

PROMPT = "Please enter the secret key"
MATCHED = "Secret key matching succeeded"
MISMATCH = "Secret key matching error"
MAX_ATTEMPTS = 5  # wrong keys before the server closes with 1008
HEARTBEAT = b"hi"  # what a slave sends its master every second (docs/protocol.md)
# the upgrade header by which a slave of ours asks its master for our extension records
# (docs/protocol.md "Master-slave sync"); an original master ignores it
SYNC_EXTENSIONS = ("KapokMQ-Sync", "dedup")
