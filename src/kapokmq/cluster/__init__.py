"""Cluster mode: the Serena-compatible registry and broker membership over gossip.

* ``registry``: ``kapokmq registry``, a gossip node ``r:{addr}:{port}`` serving
  ``POST /Registry/GetNodes``.
* ``node``: a broker's membership (``mq:{addr}:{port}``), joined to the registry with retries.
* ``nodes``: naming rules and the GetNodes list shared by both.
* ``replication``: master-slave sync (a slave stays out of the gossip cluster).
"""
