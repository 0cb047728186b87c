"""Interleaved A/B: the same scenario against two (or more) checkouts, alternating.

    git worktree add ../before <commit>
    python -m benchmarks.ab e2e ../before . --rounds 4

On a shared machine, suites run minutes apart drift by ±30 %; alternating single runs
of each checkout puts both under the same conditions, so their difference is the
change's. Each round runs ``python -m benchmarks --only SCENARIO --repeat 1`` with the
checkout's broker code (its src/ first on PYTHONPATH) and prints its rows. The runner and
load generators are this checkout's, so both sides are driven by the same tools and a
scenario added here can be run against an older commit; ``--own-tools`` runs each
checkout's own benchmarks/ instead (to measure a change to the tools themselves).

A "checkout" only needs ``src/kapokmq`` (plus ``benchmarks/`` with ``--own-tools``), so
another build of the same sources, such as a copy of src/ with some modules compiled in
place (docs/performance.md "Compiling the per-message modules"), can be one side:

    python -m benchmarks.ab e2e . ../compiled --rounds 8 --scale 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.options import SCENARIOS

TOOLS = Path(__file__).resolve().parent.parent  # this checkout


def run_once(tree: Path, scenario: str, scale: float, own_tools: bool = False) -> list[str]:
    tools = tree if own_tools else TOOLS
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tools}")
    command = [sys.executable, "-m", "benchmarks", "--only", scenario, "--repeat", "1"]
    command += ["--scale", str(scale), "--label", f"ab-{tree.name}"]
    out = subprocess.run(command, cwd=tools, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"benchmarks.ab: the run in {tree} failed:\n{out.stderr[-2000:]}")
    return [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--own-tools", action="store_true", help="each checkout's benchmarks/")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    for tree in trees:
        if not (tree / "src" / "kapokmq").is_dir():
            parser.error(f"{tree} is not a kapokmq checkout (no src/kapokmq)")
        if args.own_tools and not (tree / "benchmarks").is_dir():
            parser.error(f"{tree} has no benchmarks/ for --own-tools")
    header_printed = False
    for round_no in range(1, args.rounds + 1):
        for tree in trees:
            header, *rows = run_once(tree, args.scenario, args.scale, args.own_tools)
            if not header_printed:
                print(f"| round | checkout {header}", flush=True)
                header_printed = True
            for row in rows:
                print(f"| {round_no} | {tree.name} {row}", flush=True)


if __name__ == "__main__":
    main()
