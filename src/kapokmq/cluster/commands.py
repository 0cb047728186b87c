"""`kapokmq registry` (the Serena equivalent) and `kapokmq nodes` (list a cluster's brokers)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "registry",
        help="run a cluster registry (Serena)",
        description="Run a KapokMQ registry: brokers with cluster.isCluster=1 join its gossip "
        "port, and clients ask POST /Registry/GetNodes for the live brokers. Defaults: "
        "127.0.0.1:8031, gossip port 8041, secret key 'test'. "
        "Precedence: defaults < yaml < KAPOKMQ_* env < flags.",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="application.yaml with server: and registry: sections "
        "(default: ./application.yaml if it has a registry: section)",
    )
    p.add_argument("--addr", help="HTTP and gossip address (server.addr)")
    p.add_argument("--port", type=int, help="HTTP port (server.port; 0 = any free port)")
    p.add_argument("--secret-key", help="secret key (registry.secretKey)")
    p.add_argument("--gossip-port", type=int, help="gossip port (registry.gossipPort)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any setting, e.g. --set registry.gossipPort=8041 (repeatable)",
    )
    from kapokmq.service import add_logging_options

    add_logging_options(p)
    p.set_defaults(func=run_registry_command)
    register_nodes(subparsers)


def registry_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from kapokmq.service import flag_overrides

    return flag_overrides(
        args,
        {
            "addr": "server.addr",
            "port": "server.port",
            "secret_key": "registry.secretKey",
            "gossip_port": "registry.gossipPort",
        },
    )


def run_registry_command(args: argparse.Namespace) -> int:
    from kapokmq.cluster.registry import run_registry
    from kapokmq.cluster.settings import load_registry_config
    from kapokmq.service import run_service

    return run_service(
        args,
        lambda: load_registry_config(args.config, overrides=registry_overrides(args)),
        run_registry,
    )


def register_nodes(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "nodes",
        help="list a cluster's live brokers",
        description="Ask a registry (POST /Registry/GetNodes) for the live brokers of its cluster.",
    )
    p.add_argument(
        "--registry",
        default=os.environ.get("KAPOKMQ_REGISTRY", "http://127.0.0.1:8031"),
        help="registry URL (default: $KAPOKMQ_REGISTRY or http://127.0.0.1:8031)",
    )
    p.add_argument(
        "--secret-key",
        default=os.environ.get("KAPOKMQ_SECRET_KEY", "test"),
        help="the registry's secret key (default: $KAPOKMQ_SECRET_KEY or 'test')",
    )
    p.add_argument("--json", action="store_true", help="print the registry's JSON array")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    p.set_defaults(func=nodes_command)


def nodes_command(args: argparse.Namespace) -> int:
    from kapokmq.client.cluster import fetch_nodes
    from kapokmq.client.errors import KapokMQError

    try:
        nodes = asyncio.run(fetch_nodes(args.registry, args.secret_key, timeout=args.timeout))
    except KapokMQError as exc:
        print(f"kapokmq: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"kapokmq: {exc}", file=sys.stderr)
        return 2
    if args.json:
        rows = [{"Name": n.name, "Addr": n.addr, "Port": str(n.port)} for n in nodes]
        print(json.dumps(rows))
        return 0
    if not nodes:
        print("no live brokers", file=sys.stderr)
        return 0
    width = max(len(n.name) for n in nodes)
    print(f"{'NAME':<{width}}  URL")
    for n in nodes:
        print(f"{n.name:<{width}}  {n.url()}")
    return 0
