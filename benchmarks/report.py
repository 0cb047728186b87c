"""The benchmark report people look at: one self-contained HTML page per run (issue 15).

    python -m benchmarks --report                    # run, then write the page
    python -m benchmarks --from-json RUN.json --report docs/benchmarks/latest.html

Every scenario gets a chart (inline SVG, no scripts, no fonts or styles from elsewhere)
with up to three bars: this run, its ceiling (the bare server the scenario is compared
with, see benchmarks/ceiling.py) and the previous run's figure for the same scenario,
plus a table of every number. The previous run is the newest other JSON file in
benchmarks/results/ unless one is named (``--previous``).
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

Row = dict[str, Any]
COLOURS = {"this run": "#2f6fba", "ceiling": "#9aa5b1", "previous run": "#e0a03a"}
BAR_H, GAP, LABEL_W, CHART_W = 18, 6, 110, 560


def load(path: Path) -> dict[str, Any]:
    run: dict[str, Any] = json.loads(path.read_text())
    return run


def previous_run(results: Path, current: Path) -> Path | None:
    """The newest run JSON in ``results`` other than ``current`` and older than it."""
    others = [
        p
        for p in results.glob("run-*.json")
        if p.resolve() != current.resolve() and p.stat().st_mtime <= current.stat().st_mtime
    ]
    return max(others, key=lambda p: p.stat().st_mtime, default=None)


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "–"


def bars(values: list[tuple[str, float]], unit: str) -> str:
    """A horizontal bar chart, scaled to its largest value."""
    top = max((v for _, v in values), default=0) or 1
    height = len(values) * (BAR_H + GAP) + GAP
    parts = [f'<svg width="{LABEL_W + CHART_W + 120}" height="{height}" role="img">']
    for i, (label, value) in enumerate(values):
        y = GAP + i * (BAR_H + GAP)
        width = max(1.0, CHART_W * value / top)
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{y + BAR_H - 5}" text-anchor="end">'
            f"{html.escape(label)}</text>"
            f'<rect x="{LABEL_W}" y="{y}" width="{width:.1f}" height="{BAR_H}" '
            f'fill="{COLOURS[label]}"><title>{value:,.0f} {html.escape(unit)}</title></rect>'
            f'<text x="{LABEL_W + width + 6:.1f}" y="{y + BAR_H - 5}">'
            f"{value:,.0f} {html.escape(unit)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def scenario_section(name: str, row: Row, rows: dict[str, Row], before: Row | None) -> str:
    unit = row.get("unit", "")
    values = [("this run", float(row["msgs_per_s"]))]
    ceiling = rows.get(row.get("vs", ""), {}).get("msgs_per_s", row.get("ceiling_msgs_per_s"))
    if ceiling:
        values.append(("ceiling", float(ceiling)))
    if before is not None and "msgs_per_s" in before:
        values.append(("previous run", float(before["msgs_per_s"])))
    notes = []
    if "fraction_of_ceiling" in row:
        source = row.get("ceiling_from", "this run")
        where = "" if source == "this run" else f" (measured in {source})"
        notes.append(f"{100 * row['fraction_of_ceiling']:.0f} % of {row['vs']}{where}")
    if before is not None and before.get("msgs_per_s"):
        change = row["msgs_per_s"] / before["msgs_per_s"]
        notes.append(f"{change:.2f}× the previous run")
    if "server_us_per_msg" in row:
        cpu = f"server CPU {row['server_us_per_msg']:.1f} µs per {unit.split('/')[0] or 'unit'}"
        if before is not None and before.get("server_us_per_msg"):
            cpu += f" (previous {before['server_us_per_msg']:.1f})"
        notes.append(cpu)
    if row.get("loadgen_us_per_msg", 0) > row.get("server_us_per_msg", float("inf")):
        notes.append('<b class="warn">the load generator used more CPU than the server</b>')
    return (
        f"<section><h3>{html.escape(name)}</h3>"
        f"<p>{' · '.join(notes) or '&nbsp;'}</p>{bars(values, unit)}</section>"
    )


TABLE_COLUMNS = [
    ("rate", "msgs_per_s", ",.0f"),
    ("previous", None, ""),
    ("of ceiling", "fraction_of_ceiling", ".0%"),
    ("p50 ms", "p50_ms", ".2f"),
    ("p99 ms", "p99_ms", ".2f"),
    ("server µs/msg", "server_us_per_msg", ".1f"),
    ("generator µs/msg", "loadgen_us_per_msg", ".1f"),
    ("server peak MB", "server_peak_mb", ".0f"),
]


def table(rows: dict[str, Row], previous: dict[str, Row]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _, _ in TABLE_COLUMNS)
    lines = [f"<table><tr><th>scenario</th><th>unit</th>{head}</tr>"]
    for name, row in rows.items():
        cells = []
        for _, key, spec in TABLE_COLUMNS:
            if key is None:
                before = previous.get(name, {}).get("msgs_per_s")
                cells.append(_num(before, ",.0f"))
            else:
                cells.append(_num(row.get(key), spec))
        tds = "".join(f"<td>{c}</td>" for c in cells)
        lines.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(row.get('unit', ''))}</td>{tds}</tr>"
        )
    lines.append("</table>")
    return "".join(lines)


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 900px; color: #222; }
h1 { font-size: 1.5em; } h3 { margin: 1.2em 0 0.2em; font-size: 1.05em; }
section p { margin: 0 0 4px; color: #555; } svg text { font: 12px system-ui, sans-serif; }
table { border-collapse: collapse; margin-top: 1em; font-size: 12px; }
td, th { border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.warn { color: #b3261e; } .legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; }
"""


def render(
    run: dict[str, Any], name: str, previous: dict[str, Any] | None, previous_name: str | None
) -> str:
    rows: dict[str, Row] = run["rows"]
    written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    before: dict[str, Row] = previous["rows"] if previous else {}
    meta = run.get("meta", {})
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>' for k, c in COLOURS.items())
    compared = (
        f"compared with <b>{html.escape(previous_name or '')}</b>"
        if previous
        else "no previous run to compare with"
    )
    sections = "".join(
        scenario_section(n, r, rows, before.get(n)) for n, r in rows.items() if "msgs_per_s" in r
    )
    heavy = [
        n
        for n, r in rows.items()
        if r.get("loadgen_us_per_msg", 0) > r.get("server_us_per_msg", float("inf"))
    ]
    warning = (
        f'<p class="warn">The load generator used more CPU than the server in: '
        f"{html.escape(', '.join(heavy))}.</p>"
        if heavy
        else "<p>The load generator used less CPU than the server in every scenario.</p>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>KapokMQ benchmarks: {html.escape(name)}</title><style>{STYLE}</style></head>"
        f"<body><h1>KapokMQ benchmarks</h1><p><b>{html.escape(name)}</b>, {compared}. "
        f"Arguments: <code>{html.escape(' '.join(meta.get('argv', [])) or '(defaults)')}</code>; "
        f"load average at start {_num(meta.get('load_average'), '.1f')} on "
        f"{_num(meta.get('cpus'), 'd')} CPUs. Written {written}."
        f" How the figures are taken: docs/performance.md.</p>"
        f'{warning}<p class="legend">{legend}</p>{sections}'
        f"<h2>Every figure</h2>{table(rows, before)}</body></html>\n"
    )


def write_report(run_path: Path, out: Path, previous_path: Path | None) -> Path:
    previous = load(previous_path) if previous_path is not None else None
    page = render(
        load(run_path), run_path.name, previous, previous_path.name if previous_path else None
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
