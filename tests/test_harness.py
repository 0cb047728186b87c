"""The test harness itself: a test run killed with SIGTERM takes its brokers with it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# a stand-in for a pytest process in the middle of a test: one broker started, then waiting
SCRIPT = """
import sys, time
from tests.harness import BrokerProcess
broker = BrokerProcess(cwd=sys.argv[1]).start()
assert broker.proc is not None
print(broker.proc.pid, flush=True)
time.sleep(60)
"""


def test_sigterm_to_the_test_process_kills_its_brokers(tmp_path: Path) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        broker_pid = int(runner.stdout.readline())
        broker = os.pidfd_open(broker_pid)  # readable once the broker has exited
        try:
            assert select.select([broker], [], [], 0)[0] == []  # running
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(20) == -signal.SIGTERM  # still dies of the signal
            assert select.select([broker], [], [], 20)[0] == [broker], "broker outlived it"
        finally:
            if select.select([broker], [], [], 0)[0] == []:  # the failure case: no orphan
                signal.pidfd_send_signal(broker, signal.SIGKILL)
            os.close(broker)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
