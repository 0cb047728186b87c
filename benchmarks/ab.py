"""Interleaved A/B: the same scenario against two (or more) checkouts, alternating.

    git worktree add ../before <commit>
    python -m benchmarks.ab e2e ../before . --rounds 4

On a shared machine, suites run minutes apart drift by ±30 %; alternating single runs
of each checkout puts both under the same conditions, so their difference is the
change's. Each round runs ``python -m benchmarks --only SCENARIO --repeat 1`` with the
checkout's own code (PYTHONPATH) and prints its rows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.options import SCENARIOS


def run_once(tree: Path, scenario: str, scale: float) -> list[str]:
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}")
    command = [sys.executable, "-m", "benchmarks", "--only", scenario, "--repeat", "1"]
    out = subprocess.run(
        [*command, "--scale", str(scale)], cwd=tree, env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"benchmarks.ab: the run in {tree} failed:\n{out.stderr[-2000:]}")
    return [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.5)
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    for tree in trees:
        if not (tree / "src" / "kapokmq").is_dir() or not (tree / "benchmarks").is_dir():
            parser.error(f"{tree} is not a kapokmq checkout (no src/kapokmq or benchmarks/)")
    header_printed = False
    for round_no in range(1, args.rounds + 1):
        for tree in trees:
            header, *rows = run_once(tree, args.scenario, args.scale)
            if not header_printed:
                print(f"| round | checkout {header}", flush=True)
                header_printed = True
            for row in rows:
                print(f"| {round_no} | {tree.name} {row}", flush=True)


if __name__ == "__main__":
    main()
