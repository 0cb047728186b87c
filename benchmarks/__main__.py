"""Benchmark runner: starts a fresh broker per scenario, drives it from a separate
load-generator process, and prints a table (also written as JSON to benchmarks/results/).

    python -m benchmarks [--n 200000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.harness import BrokerProcess

RESULTS = Path(__file__).resolve().parent / "results"


def run_loadgen(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def server_cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def e2e(n: int, settings: dict[str, object]) -> dict[str, Any]:
    broker = BrokerProcess(settings=settings).start()
    try:
        assert broker.proc is not None
        ps = psutil.Process(broker.proc.pid)
        cpu0 = server_cpu(ps)
        result = run_loadgen("e2e", broker.ws, str(n))
        result["server_cpu_s"] = server_cpu(ps) - cpu0
        result["server_rss_mb"] = ps.memory_info().rss / 1e6
        return result
    finally:
        broker.cleanup()


def memory_per_message(n: int) -> dict[str, Any]:
    broker = BrokerProcess().start()
    try:
        assert broker.proc is not None
        ps = psutil.Process(broker.proc.pid)
        rss0 = ps.memory_info().rss
        result = run_loadgen("fill", broker.ws, str(n))
        time.sleep(0.5)  # let the allocator settle before reading RSS
        rss1 = ps.memory_info().rss
        result["bytes_per_msg"] = (rss1 - rss0) / n
        result["bytes_per_msg_beyond_payload"] = (rss1 - rss0) / n - 100
        return result
    finally:
        broker.cleanup()


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--memory-n", type=int, default=100_000)
    parser.add_argument("--only", choices=("e2e", "memory"), default=None)
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    if args.only in (None, "e2e"):
        rows["e2e p2p (1 prod, 1 cons, ack each)"] = median_of(
            [e2e(args.n, {}) for _ in range(args.repeat)]
        )
    if args.only in (None, "memory"):
        rows[f"memory, {args.memory_n} queued"] = memory_per_message(args.memory_n)
    print(
        f"{'scenario':42} {'msgs/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'srv cpu':>8} "
        f"{'gen cpu':>8} {'B/msg':>8}"
    )
    for name, r in rows.items():
        print(
            f"{name:42} {r.get('msgs_per_s', 0):10.0f} {r.get('p50_ms', 0):8.1f} "
            f"{r.get('p99_ms', 0):8.1f} {r.get('server_cpu_s', 0):8.2f} "
            f"{r.get('loadgen_cpu_s', 0):8.2f} {r.get('bytes_per_msg', 0):8.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"run-{int(time.time())}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
