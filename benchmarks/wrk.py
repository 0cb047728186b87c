"""HTTP Send under wrk (Debian's `wrk`): the load the original was measured with (issue 15).

    python -m benchmarks.wrk URL [--threads 1] [--conns 16] [--seconds 8] [--batch N]

wrk is a C load generator (one epoll loop per thread, keep-alive connections, one request
in flight per connection), so it costs far less CPU per request than a Python client and
the server is what is measured. Every request is the same `POST /Producer/Send` with a
100-byte `messageData`, form-urlencoded. Prints one JSON line: requests, req/s, latency
percentiles from wrk's own histogram (its Lua `done` hook), and wrk's CPU seconds.
``--batch N`` sends ``POST /Producer/SendBatch`` with a JSON array of N such messages.

Every answer is HTTP 200, errors included (docs/protocol.md "HTTP API"), so wrk cannot tell a
refused Send from a stored one; the runner checks the broker's message count afterwards
instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BODY = "topic=bench&messageData=" + "x" * 100 + "&delayTime=0"
BATCH_ITEM = '{"topic":"bench","messageData":"%s","delayTime":0}' % ("x" * 100)
SCRIPT = """
wrk.method = "POST"
wrk.body = 'BODY'
wrk.headers["Content-Type"] = "CONTENT_TYPE"
wrk.headers["secretKey"] = "test"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str, threads: int = 1, conns: int = 16, seconds: float = 8, batch: int = 0
) -> dict[str, Any]:
    """One wrk run against ``url`` (http://host:port); its figures and its own CPU time.
    With ``batch``, each request is a ``/Producer/SendBatch`` of that many messages and
    ``n`` counts messages."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="kmq-wrk-") as tmp:
        script = Path(tmp) / "send.lua"
        if batch:
            path, body, content_type = "SendBatch", f"[{','.join([BATCH_ITEM] * batch)}]", "json"
        else:
            path, body, content_type = "Send", BODY, "x-www-form-urlencoded"
        script.write_text(
            SCRIPT.replace("BODY", body).replace("CONTENT_TYPE", f"application/{content_type}")
        )
        command = [
            wrk,
            f"-t{threads}",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            str(script),
        ]
        proc = subprocess.Popen(
            [*command, f"{url}/Producer/{path}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # wait4 gives the child's own CPU time, which Popen.wait() would throw away
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read().decode()
        err = proc.stderr.read().decode()
    if proc.returncode:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err or out}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    elapsed = result["duration_us"] / 1e6
    n = result["requests"] * max(1, batch)
    return {
        "n": n,
        "requests": result["requests"],
        "seconds": elapsed,
        "msgs_per_s": n / elapsed,
        "p50_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "p999_ms": result["p999_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "socket_errors": result["socket_errors"],
        "non_2xx": result["non_2xx"],
        "loadgen_cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://host:port of a broker")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--batch", type=int, default=0, help="SendBatch of this many")
    args = parser.parse_args()
    json.dump(run_wrk(args.url, args.threads, args.conns, args.seconds, args.batch), sys.stdout)
    print()


if __name__ == "__main__":
    main()
