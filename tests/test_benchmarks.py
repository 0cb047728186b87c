"""The benchmark runner's report, wrk and recovery scenarios (benchmarks/): what they print
and write, not how fast anything is (speed lives in the benchmarks themselves)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as runner
from benchmarks.report import previous_run, render

RUN: dict[str, Any] = {
    "meta": {"argv": ["--quick"], "load_average": 1.5, "cpus": 2},
    "rows": {
        "ceiling HTTP Send, bare httptools": {"msgs_per_s": 60_000.0, "unit": "req/s"},
        "5 HTTP Send, wrk -t1 -c16": {
            "msgs_per_s": 40_000.0,
            "unit": "req/s",
            "vs": "ceiling HTTP Send, bare httptools",
            "fraction_of_ceiling": 2 / 3,
            "server_us_per_msg": 20.0,
            "loadgen_us_per_msg": 12.0,
            "p99_ms": 3.0,
        },
        "1 e2e p2p <1 prod>": {
            "msgs_per_s": 90_000.0,
            "unit": "msg/s",
            "server_us_per_msg": 8.0,
            "loadgen_us_per_msg": 9.0,
        },
        "7 memory, 100,000 queued": {"bytes_per_msg_beyond_payload": 300.0, "unit": "msg/s"},
    },
}
PREVIOUS = {"meta": {}, "rows": {"5 HTTP Send, wrk -t1 -c16": {"msgs_per_s": 16_000.0}}}


def test_report_is_one_self_contained_page() -> None:
    page = render(RUN, "run-2.json", PREVIOUS, "run-1.json")
    # nothing fetched from elsewhere: no scripts, links, images, imports or URLs
    for banned in ("<script", "src=", "href=", "@import", "url(", "http://", "https://"):
        assert banned not in page, banned
    assert page.count("<svg") == 3  # one chart per scenario with a rate
    assert "1 e2e p2p &lt;1 prod&gt;" in page  # names are escaped
    wrk = page[page.index("<h3>5 HTTP Send") : page.index("</section>", page.index("<h3>5 HTTP"))]
    assert "67 % of ceiling HTTP Send, bare httptools" in wrk
    assert "2.50× the previous run" in wrk
    bars = re.findall(r"<title>([\d,]+) req/s</title>", wrk)
    assert bars == ["40,000", "60,000", "16,000"]  # this run, ceiling, previous
    # the generator cost more than the server in the e2e row: said at the top and there
    assert "used more CPU than the server in: 1 e2e p2p &lt;1 prod&gt;" in page


def test_report_without_a_previous_run() -> None:
    page = render(RUN, "run-2.json", None, None)
    assert "no previous run to compare with" in page and "previous run</text>" not in page


def test_from_json_writes_the_report_against_the_newest_other_run(tmp_path: Path) -> None:
    older, newer = tmp_path / "run-1.json", tmp_path / "run-2.json"
    older.write_text(json.dumps(PREVIOUS))
    newer.write_text(json.dumps(RUN))
    assert previous_run(tmp_path, newer) == older
    out = tmp_path / "report.html"
    assert (
        runner.main(["--from-json", str(newer), "--report", str(out), "--previous", str(older)])
        == 0
    )
    assert "2.50× the previous run" in out.read_text()


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
@pytest.mark.timeout(60)
def test_wrk_scenario_prints_its_ratio_and_saves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    ceiling = {"rows": {"ceiling HTTP Send, bare httptools": {"msgs_per_s": 1e9}}}
    (tmp_path / "run-0.json").write_text(json.dumps(ceiling))
    assert runner.main(["--only", "wrk", "--scale", "0.1", "--repeat", "1", "--report"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"5 HTTP Send, wrk -t1 -c16: [\d,]+ req/s = 0% of ceiling HTTP Send", err)
    assert "(run-0.json)" in err
    saved = [p for p in tmp_path.glob("run-*.json") if p.name != "run-0.json"]
    row = json.loads(saved[0].read_text())["rows"]["5 HTTP Send, wrk -t1 -c16"]
    assert row["n"] > 0 and row["server_us_per_msg"] > 0 and row["loadgen_us_per_msg"] > 0
    assert len(list(tmp_path.glob("report-*.html"))) == 1


@pytest.mark.timeout(90)
def test_recovery_scenario_restarts_from_the_wal_and_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    assert runner.main(["--only", "recovery", "--scale", "0.001", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"recovery \(log\) WAL [\d.]+ s, snapshot [\d.]+ s \(target <= 3 s\)", out)
    row = json.loads(next(tmp_path.glob("run-*.json")).read_text())["rows"]
    recovery = row["8 recovery of 1,000 queued"]
    assert recovery["wal_recovered"] == recovery["snapshot_recovered"] == 1000
    assert recovery["wal_start_to_serving_s"] > 0
    assert recovery["snapshot_recovery_s"] >= 0


def test_schedule_bench_reports_the_schedule_and_the_isclean_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import schedule_bench

    schedule_bench.in_process(200)
    schedule_bench.clean_checks(2000)
    out = capsys.readouterr().out
    assert "200 delayed messages" in out
    assert "isClean check over 2,000 delayed messages" in out and "0 deleted" in out
    assert "deletes 1,000 plain messages" in out
    assert re.search(r"deletes 1,00\d delayed messages", out), out
