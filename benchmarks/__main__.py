"""Benchmark runner (issue 7): a fresh server process per run, a separate load-generator
process (benchmarks/loadgen.py, picows), server and generator CPU per message, peak RSS,
medians of --repeat runs, a table on stdout and JSON in benchmarks/results/.

    python -m benchmarks                      # everything, 3 runs each (~10 min)
    python -m benchmarks --quick              # smaller sizes, 1 run each (< 2 min)
    python -m benchmarks --only e2e,fill --repeat 5

Scenarios: ceiling (bare aiohttp and picows relays: the transport's limit), e2e, latency,
fanout, topics, http, fill, aiohttp (the WebSocket scenarios on server.wsEngine aiohttp),
persistence, memory, recovery (1M queued messages: restart after SIGKILL from the WAL and
after a stop from the snapshot), delay. CPU per message is the main
figure on a shared machine: wall-clock rates move with the other load, CPU much less.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks.options import SCENARIOS, add_arguments
from benchmarks.recovery import summary as recovery_summary
from benchmarks.wrk import available as wrk_available
from tests.harness import SECRET, BrokerProcess

RESULTS = Path(__file__).resolve().parent / "results"
LISTENING = re.compile(r"listening on https?://[^:]+:(\d+)")


# ---------------------------------------------------------------------------- processes
class CeilingProcess:
    """A bare relay server (benchmarks/ceiling.py)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> CeilingProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ceiling", self.kind, "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        match = LISTENING.search(self.proc.stdout.readline())
        if match is None:
            raise RuntimeError(f"{self.kind} ceiling server did not start")
        self.port = int(match.group(1))
        return self

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def cleanup(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def run_loadgen(*args: str, timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode:
        raise RuntimeError(f"load generator failed: {args}\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cpu_of(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def loop_cpu_of(proc: psutil.Process) -> float:
    """CPU of the broker's main thread (the event loop), without its worker threads
    (WAL fsync, snapshot writing): what bounds the message rate. From the scheduler's
    nanosecond count where there is one (psutil's thread times move in 10 ms ticks:
    0.1 µs per message at 100,000 messages, the size of a WAL change)."""
    ran, _ = sched_seconds(proc.pid)
    if ran:
        return ran
    for thread in proc.threads():
        if thread.id == proc.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def sched_seconds(pid: int) -> tuple[float, float]:
    """Seconds the process's main thread has run on a CPU and has waited, runnable, for
    one (/proc/PID/schedstat; zeros where the kernel does not keep it)."""
    try:
        ran, waited, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(ran) / 1e9, int(waited) / 1e9


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def drive(pid: int, url: str, *loadgen_args: str, settle: float = 0.0) -> dict[str, Any]:
    """Run one load-generator scenario against a running server; add the server's figures."""
    ps = psutil.Process(pid)
    cpu0, rss0, loop0 = cpu_of(ps), ps.memory_info().rss, loop_cpu_of(ps)
    ran0, waited0 = sched_seconds(pid)
    result = run_loadgen(loadgen_args[0], url, *loadgen_args[1:])
    ran1, waited1 = sched_seconds(pid)
    if settle:
        time.sleep(settle)
    if result.get("seconds") and ran1:
        # Saturation: the loop either runs or waits for a CPU for this share of the
        # measured time; the rest it sleeps, waiting for the load generator (or the disk).
        result["server_running_share"] = (ran1 - ran0) / result["seconds"]
        result["server_cpu_wait_share"] = (waited1 - waited0) / result["seconds"]
    result["server_cpu_s"] = cpu_of(ps) - cpu0
    result["server_loop_cpu_s"] = loop_cpu_of(ps) - loop0
    result["server_rss_mb"] = ps.memory_info().rss / 1e6
    result["rss_growth_bytes"] = ps.memory_info().rss - rss0
    result["server_peak_mb"] = peak_rss_mb(pid)
    units = result.get("deliveries", result.get("n", 0))
    if units:
        result["server_us_per_msg"] = result["server_cpu_s"] / units * 1e6
        result["server_loop_us_per_msg"] = result["server_loop_cpu_s"] / units * 1e6
        result["loadgen_us_per_msg"] = result["loadgen_cpu_s"] / units * 1e6
    return result


def on_broker(
    settings: dict[str, object],
    *loadgen_args: str,
    cwd: Path | None = None,
    settle: float = 0.0,
    engine: str | None = None,
) -> dict[str, Any]:
    """Run the generator against a fresh broker (WebSockets on ``engine`` if given)."""
    if engine is not None:
        settings = {**settings, "server.wsEngine": engine}
    broker = BrokerProcess(settings=settings, cwd=cwd).start()
    try:
        assert broker.proc is not None
        return drive(broker.proc.pid, broker.ws, *loadgen_args, settle=settle)
    finally:
        broker.cleanup()


def drive_wrk(
    pid: int, http: str, seconds: float, check_count: bool, batch: int = 0
) -> dict[str, Any]:
    """wrk against a running server (benchmarks/wrk.py); with ``check_count``, the broker
    must hold at least as many messages as wrk got answers (errors are HTTP 200 too)."""
    from benchmarks.wrk import run_wrk

    ps = psutil.Process(pid)
    cpu0 = cpu_of(ps)
    result = run_wrk(http, threads=1, conns=16, seconds=seconds, batch=batch)
    result["server_cpu_s"] = cpu_of(ps) - cpu0
    result["server_peak_mb"] = peak_rss_mb(pid)
    result["server_us_per_msg"] = result["server_cpu_s"] / result["n"] * 1e6
    result["loadgen_us_per_msg"] = result["loadgen_cpu_s"] / result["n"] * 1e6
    if result["socket_errors"] or result["non_2xx"]:
        raise RuntimeError(f"wrk saw errors: {result}")
    if check_count:
        stored = stored_messages(http)
        if stored < result["n"]:
            raise RuntimeError(f"wrk got {result['n']} answers but only {stored} were stored")
    return result


def stored_messages(http: str) -> int:
    request = urllib.request.Request(
        f"{http}/Console/CountMessage", method="POST", headers={"secretKey": SECRET}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        count: int = json.loads(answer.read())["data"]["all"]
    return count


def wrk_on_broker(seconds: float, batch: int = 0) -> dict[str, Any]:
    broker = BrokerProcess().start()
    try:
        assert broker.proc is not None
        return drive_wrk(broker.proc.pid, broker.http, seconds, check_count=True, batch=batch)
    finally:
        broker.cleanup()


def wrk_on_ceiling(kind: str, seconds: float) -> dict[str, Any]:
    server = CeilingProcess(kind).start()
    try:
        assert server.proc is not None
        return drive_wrk(server.proc.pid, f"http://127.0.0.1:{server.port}", seconds, False)
    finally:
        server.cleanup()


def on_ceiling(kind: str, *loadgen_args: str) -> dict[str, Any]:
    server = CeilingProcess(kind).start()
    try:
        assert server.proc is not None
        return drive(server.proc.pid, server.ws, *loadgen_args)
    finally:
        server.cleanup()


# ---------------------------------------------------------------------------- scenarios
Row = dict[str, Any]


def median_of(runs: list[Row]) -> Row:
    row: Row = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        if len(values) == len(runs):
            row[key] = statistics.median(values)
    row["runs"] = len(runs)
    if len(runs) > 1 and "msgs_per_s" in row:
        row["msgs_per_s_all"] = [round(r["msgs_per_s"]) for r in runs]
        row["server_us_all"] = [round(r.get("server_us_per_msg", 0), 1) for r in runs]
    return row


def repeated(repeat: int, run: Callable[[], Row]) -> Row:
    return median_of([run() for _ in range(repeat)])


def scenario_rows(args: argparse.Namespace) -> dict[str, Row]:
    s = args.scale
    rep = args.repeat
    wanted = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = wanted - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    rows: dict[str, Row] = {}
    wrk_seconds = max(2.0, 8 * s)  # issue 15: wrk -d8s at full size

    def n(full: int) -> str:
        return str(max(1000, int(full * s)))

    def add(name: str, row: Row, unit: str = "msg/s", ceiling: str | None = None) -> None:
        row["unit"] = unit
        line = f"  {name}: {row.get('msgs_per_s', 0):,.0f} {unit}"
        if ceiling is not None:
            row["vs"] = ceiling
            ref, source = rows.get(ceiling), "this run"
            if ref is None:  # not measured now: the newest saved run that has it
                ref, source = saved_ceiling(ceiling)
            if ref is not None and ref.get("msgs_per_s") and "msgs_per_s" in row:
                row["fraction_of_ceiling"] = row["msgs_per_s"] / ref["msgs_per_s"]
                row["ceiling_msgs_per_s"] = ref["msgs_per_s"]
                row["ceiling_from"] = source
                line += f" = {row['fraction_of_ceiling']:.0%} of {ceiling} ({source})"
            else:
                line += f" (no {ceiling} measured yet: run the ceiling scenario)"
        if row.get("loadgen_us_per_msg", 0) > row.get("server_us_per_msg", float("inf")):
            line += (
                f"\n  WARNING: the load generator used more CPU than the server "
                f"({row['loadgen_us_per_msg']:.1f} vs {row['server_us_per_msg']:.1f} µs per unit)"
            )
        rows[name] = row
        print(line, file=sys.stderr, flush=True)

    if "ceiling" in wanted:
        for kind in ("aiohttp", "picows"):

            def relay(kind: str = kind) -> Row:
                return on_ceiling(kind, "e2e", "--n", n(200_000), "--ceiling")

            def ingest(kind: str = kind) -> Row:
                return on_ceiling(kind, "fill", "--n", n(200_000))

            add(f"ceiling {kind} relay e2e", repeated(rep, relay))
            add(f"ceiling {kind} ingest", repeated(rep, ingest))
        if wrk_available():
            for kind in ("httptools", "aiohttp"):

                def bare_http(kind: str = kind) -> Row:
                    return wrk_on_ceiling(f"http-{kind}", wrk_seconds)

                add(f"ceiling HTTP Send, bare {kind}", repeated(rep, bare_http), unit="req/s")
    e2e_ceiling = "ceiling picows relay e2e"  # the default WebSocket engine
    if "e2e" in wanted:
        add(
            "1 e2e p2p (1 prod, 1 cons acking)",
            repeated(rep, lambda: on_broker({}, "e2e", "--n", n(200_000))),
            ceiling=e2e_ceiling,
        )
    if "dedup" in wanted:
        add(
            "1b e2e p2p, a MessageId on every frame (dedup on)",
            repeated(rep, lambda: on_broker({}, "e2e", "--n", n(200_000), "--message-ids")),
            ceiling=e2e_ceiling,
        )
    if "latency" in wanted:
        add(
            f"2 latency at {args.rate:,.0f} msg/s",
            repeated(
                rep,
                lambda: on_broker({}, "rate", "--n", n(args.rate * 5), "--rate", str(args.rate)),
            ),
            ceiling=e2e_ceiling,
        )
    if "fanout" in wanted:
        add(
            "3 fan-out pub/sub 1 -> 10",
            repeated(
                rep,
                lambda: on_broker({"mq.pushType": 2}, "e2e", "--n", n(30_000), "--consumers", "10"),
            ),
            unit="deliv/s",
            ceiling=e2e_ceiling,
        )
    if "topics" in wanted:
        add(
            "4 1,000 topics x (1 prod, 1 cons)",
            repeated(rep, lambda: on_broker({}, "topics", "--n", n(200_000), "--topics", "1000")),
            ceiling=e2e_ceiling,
        )
    if "http" in wanted:
        add(
            "5 HTTP Send, 16 connections",
            repeated(rep, lambda: on_broker({}, "http", "--n", n(30_000), "--conns", "16")),
            unit="req/s",
        )
    if "wrk" in wanted:
        if not wrk_available():
            print("  skipped wrk: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        else:
            add(
                "5 HTTP Send, wrk -t1 -c16",
                repeated(rep, lambda: wrk_on_broker(wrk_seconds)),
                unit="req/s",
                ceiling="ceiling HTTP Send, bare httptools",
            )
    if "batch" in wanted and wrk_available():
        add(
            "5b HTTP SendBatch of 100, wrk -t1 -c16",
            repeated(rep, lambda: wrk_on_broker(wrk_seconds, batch=100)),
            unit="msg/s",
        )
    if "fill" in wanted:
        add(
            "ingest only (publish, no consumer)",
            repeated(rep, lambda: on_broker({}, "fill", "--n", n(200_000))),
            ceiling="ceiling picows ingest",
        )
    if "aiohttp" in wanted:
        ceiling = "ceiling aiohttp relay e2e"
        add(
            "1 e2e p2p [aiohttp engine]",
            repeated(rep, lambda: on_broker({}, "e2e", "--n", n(200_000), engine="aiohttp")),
            ceiling=ceiling,
        )
        add(
            f"2 latency at {args.rate:,.0f} msg/s [aiohttp engine]",
            repeated(
                rep,
                lambda: on_broker(
                    {}, "rate", "--n", n(args.rate * 5), "--rate", str(args.rate), engine="aiohttp"
                ),
            ),
            ceiling=ceiling,
        )
        add(
            "3 fan-out pub/sub 1 -> 10 [aiohttp engine]",
            repeated(
                rep,
                lambda: on_broker(
                    {"mq.pushType": 2},
                    "e2e",
                    "--n",
                    n(30_000),
                    "--consumers",
                    "10",
                    engine="aiohttp",
                ),
            ),
            unit="deliv/s",
            ceiling=ceiling,
        )
        add(
            "ingest only [aiohttp engine]",
            repeated(rep, lambda: on_broker({}, "fill", "--n", n(200_000), engine="aiohttp")),
            ceiling="ceiling aiohttp ingest",
        )
    if "persistence" in wanted:
        from benchmarks.persistence import MODES

        base: Row | None = None
        for mode, settings in MODES.items():
            # the same size for every mode: `always` keeps up now, and at 20k messages its
            # CPU figure moved in steps of 0.5 us (psutil counts 10 ms ticks)
            size = n(100_000)

            def run(settings: dict[str, object] = settings, size: str = size) -> Row:
                with tempfile.TemporaryDirectory(prefix="kmq-bench-") as tmp:
                    return on_broker(settings, "e2e", "--n", size, cwd=Path(tmp))

            row = repeated(rep, run)
            if base is None:
                base = row
            row["ratio_to_memory"] = row["msgs_per_s"] / base["msgs_per_s"]
            # on a shared machine the rate swings with the neighbours' load; the event loop's
            # CPU per message (memory-only's over this mode's) is the steadier form of the
            # same ratio (the WAL thread's fdatasync runs beside the loop)
            row["cpu_ratio_to_memory"] = (
                base["server_loop_us_per_msg"] / row["server_loop_us_per_msg"]
            )
            add(f"6 persistence: {mode}", row)
    if "memory" in wanted:
        sizes = [100_000] if args.quick else [100_000, 1_000_000]
        for count in sizes:

            def queued(count: int = count) -> Row:
                return on_broker({}, "fill", "--n", str(count), settle=0.5)

            row = repeated(rep, queued)
            row["bytes_per_msg_beyond_payload"] = row["rss_growth_bytes"] / count - 100
            add(f"7 memory, {count:,} queued", row)
    if "recovery" in wanted:
        from benchmarks import recovery

        def fill(pid: int, url: str) -> None:
            drive(pid, url, "fill", "--n", n(1_000_000))

        add(
            f"8 recovery of {int(n(1_000_000)):,} queued",
            repeated(rep, lambda: recovery.run(int(n(1_000_000)), fill)),
            unit="msg/s",
        )
    if "delay" in wanted:
        add(
            "7 delay accuracy (DelayTime 1 s)",
            repeated(
                rep,
                lambda: on_broker({}, "delay", "--n", n(5_000), "--rate", "5000", "--delay", "1"),
            ),
        )
    return rows


def saved_ceiling(name: str) -> tuple[Row | None, str]:
    """The ceiling row ``name`` from the newest saved run that measured it."""
    runs = sorted(RESULTS.glob("run-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in runs:
        try:
            row = json.loads(path.read_text())["rows"].get(name)
        except (OSError, ValueError, KeyError, AttributeError):
            continue
        if row is not None and row.get("msgs_per_s"):
            return row, path.name
    return None, ""


# ---------------------------------------------------------------------------- output
def fmt(value: object, spec: str) -> str:
    if isinstance(value, int | float):
        return format(value, spec)
    return "-"


def table(rows: dict[str, Row]) -> str:
    head = (
        f"| {'scenario':40} | {'rate':>9} | {'unit':7} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'p99.9 ms':>8} | {'srv µs/msg':>10} | {'gen µs/msg':>10} | {'srv peak MB':>11} | "
        f"{'of ceiling':>10} | other |"
    )
    lines = [head, "|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|"]
    for name, r in rows.items():
        other = []
        if "bytes_per_msg_beyond_payload" in r:
            other.append(f"{r['bytes_per_msg_beyond_payload']:.0f} B/msg beyond payload")
        if "wal_recovery_s" in r:
            other.append(recovery_summary(r))
        if "ratio_to_memory" in r:
            other.append(f"{r['ratio_to_memory']:.2f}x memory-only")
            if "cpu_ratio_to_memory" in r:
                other.append(
                    f"loop CPU {r['cpu_ratio_to_memory']:.2f}x "
                    f"({r['server_loop_us_per_msg']:.2f} µs/msg)"
                )
        if "err_p99_ms" in r:
            other.append(
                f"delay error p50 {r['err_p50_ms']:.1f} / p99 {r['err_p99_ms']:.1f} / "
                f"max {r['err_max_ms']:.1f} ms, {r['early']:.0f} early"
            )
        if "server_running_share" in r:
            other.append(
                f"server loop on a CPU {r['server_running_share']:.0%}, "
                f"waiting for one {r['server_cpu_wait_share']:.0%}"
            )
        if "msgs_per_s_all" in r:
            other.append(f"runs {r['msgs_per_s_all']}")
        if r.get("ceiling_from", "this run") != "this run":
            other.append(f"ceiling from {r['ceiling_from']}")
        lines.append(
            f"| {name:40} | {fmt(r.get('msgs_per_s'), '9,.0f')} | {r.get('unit', ''):7} | "
            f"{fmt(r.get('p50_ms'), '7.1f')} | {fmt(r.get('p99_ms'), '7.1f')} | "
            f"{fmt(r.get('p999_ms'), '8.1f')} | {fmt(r.get('server_us_per_msg'), '10.1f')} | "
            f"{fmt(r.get('loadgen_us_per_msg'), '10.1f')} | "
            f"{fmt(r.get('server_peak_mb'), '11.0f')} | "
            f"{fmt(r.get('fraction_of_ceiling', None) and 100 * r['fraction_of_ceiling'], '9.0f')}"
            f"{'%' if 'fraction_of_ceiling' in r else ' '} | {'; '.join(other)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if args.from_json:
        return report(args, Path(args.from_json))
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.scale is None:
        args.scale = 0.2 if args.quick else 1.0
    load = psutil.getloadavg()[0]
    started = time.time()
    rows = scenario_rows(args)
    print(table(rows))
    gen_heavy = [
        name
        for name, r in rows.items()
        if r.get("loadgen_us_per_msg", 0) > r.get("server_us_per_msg", float("inf"))
    ]
    if gen_heavy:
        print(f"warning: load generator used more CPU than the server in: {gen_heavy}")
    else:
        print("load generator CPU per message below the server's in every scenario")
    took = time.time() - started
    print(f"load average at start {load:.1f}, {psutil.cpu_count()} CPUs, {took:.0f} s")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"run-{int(started)}{'-' + args.label if args.label else ''}.json"
    meta = {"argv": sys.argv[1:], "load_average": load, "cpus": psutil.cpu_count()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"results: {out}")
    if args.report is not None:
        return report(args, out)
    return 0


def report(args: argparse.Namespace, run_json: Path) -> int:
    """Write the HTML report of ``run_json`` (benchmarks/report.py)."""
    from benchmarks.report import previous_run, write_report

    previous = Path(args.previous) if args.previous else previous_run(RESULTS, run_json)
    out = Path(args.report) if args.report else RESULTS / f"report-{run_json.stem}.html"
    write_report(run_json, out, previous)
    print(f"report: {out}" + (f" (compared with {previous})" if previous else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
