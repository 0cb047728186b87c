"""`kapokmq serve`: run a broker."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kapokmq.config import load_config
from kapokmq.service import add_logging_options, flag_overrides, run_service


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run a broker",
        description="Run a KapokMQ broker. With no config file it uses embedded defaults "
        "(127.0.0.1:8011, secret key 'test'). Precedence: defaults < yaml < KAPOKMQ_* env < flags.",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="application.yaml (default: ./application.yaml, else ./config/application.yaml "
        "as the original lays it out, if present)",
    )
    p.add_argument("--addr", help="listen address (server.addr)")
    p.add_argument("--port", type=int, help="listen port (server.port; 0 = any free port)")
    p.add_argument("--secret-key", help="secret key (mq.secretKey)")
    p.add_argument(
        "--push-type", type=int, choices=(1, 2), help="1 point-to-point, 2 publish/subscribe"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any other setting, e.g. --set mq.pushRetryTime=10 (repeatable)",
    )
    p.add_argument(
        "--recover-skip-corrupt",
        action="store_true",
        help="start even if a snapshot or WAL segment is corrupt, keeping what can be read "
        "(mq.recoverSkipCorrupt=1)",
    )
    add_logging_options(p)
    p.set_defaults(func=serve)


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = flag_overrides(
        args,
        {
            "addr": "server.addr",
            "port": "server.port",
            "secret_key": "mq.secretKey",
            "push_type": "mq.pushType",
        },
    )
    if getattr(args, "recover_skip_corrupt", False):
        overrides["mq.recoverSkipCorrupt"] = 1
    return overrides


def serve(args: argparse.Namespace) -> int:
    from kapokmq.server.main import run_broker

    return run_service(
        args, lambda: load_config(args.config, overrides=collect_overrides(args)), run_broker
    )
