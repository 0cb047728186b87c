"""`kapokmq produce | consume | console` as a user runs them, against a real broker."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.harness import BrokerProcess

KAPOKMQ = f"{shlex.quote(sys.executable)} -m kapokmq"


def sh(command: str, broker: BrokerProcess, stdin: str = "", key: str = "test"):
    env = dict(os.environ, KAPOKMQ_URL=broker.http, KAPOKMQ_SECRET_KEY=key)
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_produce_pipe_consume(broker: BrokerProcess) -> None:
    n = 500
    lines = "".join(f"line {i}\n" for i in range(n))
    done = sh(f"{KAPOKMQ} produce --topic a -", broker, stdin=lines)
    assert (done.returncode, done.stderr) == (0, "")
    # consume's JSON lines become the messages of topic b, through a pipe.
    piped = sh(f"{KAPOKMQ} consume --topic a --count {n} | {KAPOKMQ} produce --topic b -", broker)
    assert (piped.returncode, piped.stderr) == (0, "")
    out = sh(f"{KAPOKMQ} consume --topic b --count {n}", broker)
    assert out.returncode == 0, out.stderr
    outer = [json.loads(line) for line in out.stdout.splitlines()]
    inner = [json.loads(m["MessageData"]) for m in outer]
    assert [m["MessageData"] for m in inner] == [f"line {i}" for i in range(n)]
    assert {m["Topic"] for m in inner} == {"a"} and {m["Topic"] for m in outer} == {"b"}
    assert list(outer[0]) == [
        "MessageCode",
        "MessageData",
        "Topic",
        "CreateTime",
        "ConsumedTime",
        "DelayTime",
        "Status",
    ]
    counts = json.loads(sh(f"{KAPOKMQ} console count", broker).stdout)
    assert counts["consumed"] == 2 * n


def test_single_message_delay_and_no_ack(broker: BrokerProcess) -> None:
    assert sh(f"{KAPOKMQ} produce --topic d --delay 1 hello", broker).returncode == 0
    first = sh(f"{KAPOKMQ} consume --topic d --count 1 --no-ack", broker)
    message = json.loads(first.stdout)
    assert (message["MessageData"], message["DelayTime"]) == ("hello", 1)
    counts = json.loads(sh(f"{KAPOKMQ} console count", broker).stdout)
    assert counts["consumed"] == 0


def test_console_actions(broker: BrokerProcess) -> None:
    code = sh(f"{KAPOKMQ} produce --http --topic c hi", broker).stdout.strip()
    assert len(code) == 32
    assert sh(f"{KAPOKMQ} console ping", broker).stdout == "ok\n"
    got = json.loads(sh(f"{KAPOKMQ} console get {code}", broker).stdout)
    assert got["MessageData"] == "hi"
    listed = json.loads(
        sh(f"{KAPOKMQ} console list --json --status waiting --topic c", broker).stdout
    )
    assert [m["MessageCode"] for m in listed] == [code]
    assert "pushType" in json.loads(sh(f"{KAPOKMQ} console config", broker).stdout)
    assert set(json.loads(sh(f"{KAPOKMQ} console clients", broker).stdout)) == {
        "consumers",
        "producers",
    }
    assert sh(f"{KAPOKMQ} console del {code}", broker).stdout == "ok\n"
    missing = sh(f"{KAPOKMQ} console get {code}", broker)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_user_errors_are_one_line(broker: BrokerProcess) -> None:
    cases = [
        (f"{KAPOKMQ} produce --topic t x", "wrong", 1, "secret key"),
        (f"{KAPOKMQ} consume --topic t --count 1", "wrong", 1, "secret key"),
        (f"{KAPOKMQ} console ping", "wrong", 1, "secret key"),
        (f"{KAPOKMQ} console ping --url http://127.0.0.1:1", "test", 1, "cannot reach"),
        (f"{KAPOKMQ} produce --topic t x --url http://127.0.0.1:1", "test", 1, "cannot connect"),
        (f"{KAPOKMQ} produce --topic t x --url ftp://h", "test", 2, "scheme"),
        (f"{KAPOKMQ} consume --topic t --count 1 --timeout 0.3", "test", 1, "timed out"),
    ]
    for command, key, code, text in cases:
        result = sh(command, broker, key=key)
        assert result.returncode == code, (command, result.stderr)
        assert text in result.stderr and "Traceback" not in result.stderr, command
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_numbers_are_usage_errors(broker: BrokerProcess) -> None:
    """`consume --count -1` printed nothing and exited 0, `--timeout -1` too; a window of
    0 came back as the library's "max_in_flight must be at least 1"."""
    for command, text in [
        ("consume --topic t --count -1", "--count: must be a whole number >= 0, got '-1'"),
        ("consume --topic t --timeout -1", "--timeout: must be a number of seconds > 0"),
        ("consume --topic t --timeout nan", "--timeout: must be a number of seconds > 0"),
        ("produce --topic t --max-in-flight 0 x", "--max-in-flight: must be a whole number >= 1"),
    ]:
        result = sh(f"{KAPOKMQ} {command}", broker)
        assert result.returncode == 2, (command, result.stderr)
        assert text in result.stderr, (command, result.stderr)


@pytest.mark.parametrize("http", ["", "--http "])
def test_produce_from_a_terminal_says_it_reads_it(broker: BrokerProcess, http: str) -> None:
    """`kapokmq produce --topic t` (data defaults to -) waited on the keyboard in silence."""
    main, terminal = os.openpty()
    env = dict(os.environ, KAPOKMQ_URL=broker.http)
    command = [sys.executable, "-m", "kapokmq", "produce", *http.split(), "--topic", "tty"]
    with subprocess.Popen(
        command, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as produce:
        os.close(terminal)
        assert produce.stderr is not None
        notice = produce.stderr.readline()
        os.write(main, b"typed\n\x04")  # a line, then Ctrl-D
        out, err = produce.communicate(timeout=30)
        os.close(main)
    assert notice == b"kapokmq: reading messages from the terminal, one per line; Ctrl-D ends\n"
    assert produce.returncode == 0, err
    assert len(out.split()) == (1 if http else 0)  # --http prints the MessageCode


def test_a_too_big_message_is_one_line_and_lines_after_it_go_through(broker_factory) -> None:
    """The 1009 close came with logging's bare "Producers cli-...: connection lost,
    reconnecting" (and "reconnected") on stderr besides the error."""
    broker = broker_factory(settings={"mq.maxMessageBytes": 64})
    big = "x" * 200
    single = sh(f"{KAPOKMQ} produce --topic t {big}", broker)
    assert single.returncode == 1
    assert single.stderr == (
        "kapokmq: broker rejected the message: message too big for the broker (closed 1009)\n"
    )
    lines = sh(f"{KAPOKMQ} produce --topic t -", broker, stdin=f"a\n{big}\nc\n")
    assert lines.returncode == 1
    assert lines.stderr.splitlines() == [
        "kapokmq: line 2: message too big for the broker (closed 1009)",
        "kapokmq: 1 of 3 messages were rejected",
    ]


def test_lines_all_refused_exit_1(broker_factory) -> None:
    """A slave refuses every write (docs/protocol.md "Refused writes"): `produce -` named
    the lines and exited 0, as their refusals were counted after the exit status was
    chosen (a reply's callbacks run a loop turn after it)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # a master that never answers: the slave refuses writes meanwhile
        master = {"sync.masterAddr": "127.0.0.1", "sync.masterPort": silent.getsockname()[1]}
        broker = broker_factory(settings={"sync.isSync": 1, "sync.isSlave": 1, **master})
        done = sh(f"{KAPOKMQ} produce --topic s -", broker, stdin="a\nb\nc\n")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == "kapokmq: 3 of 3 messages were rejected"


def test_consume_across_a_broker_restart(broker: BrokerProcess) -> None:
    """The stream goes on after a restart; what the client says about it is `kapokmq:`
    lines like every other message on stderr."""
    assert sh(f"{KAPOKMQ} produce --topic r one", broker).returncode == 0
    env = dict(os.environ, KAPOKMQ_URL=broker.http)
    command = [sys.executable, "-m", "kapokmq", "consume", "--topic", "r", "--count", "2"]
    consume = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert consume.stdout is not None
        assert json.loads(consume.stdout.readline())["MessageData"] == "one"
        broker.restart()
        assert sh(f"{KAPOKMQ} produce --topic r two", broker).returncode == 0
        out, err = consume.communicate(timeout=30)
    finally:
        consume.kill()
    assert consume.returncode == 0, err
    assert [json.loads(line)["MessageData"] for line in out.splitlines()] == ["two"]
    assert err.splitlines() and all(line.startswith("kapokmq: ") for line in err.splitlines())
    assert "connection lost, reconnecting" in err and "reconnected" in err


def test_ctrl_c_while_reading_stdin_exits_130(broker: BrokerProcess) -> None:
    # PYTHONFAULTHANDLER: if it does not exit, SIGABRT makes it print every thread's stack
    env = dict(os.environ, KAPOKMQ_URL=broker.http, PYTHONFAULTHANDLER="1")
    args = [sys.executable, "-m", "kapokmq", "produce", "--topic", "int", "-"]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(b"one\ntwo\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while json.loads(sh(f"{KAPOKMQ} console count", broker).stdout)["all"] < 2:
            assert time.monotonic() < deadline, "lines never reached the broker"
        proc.send_signal(signal.SIGINT)  # stdin is still open: the reader is blocked
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(10)
            pytest.fail("no exit 20 s after SIGINT:\n" + proc.stderr.read().decode()[-6000:])
        assert code == 130
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("n", [50, 20_000])
def test_progress_bar_for_file_input(broker: BrokerProcess, tmp_path, n: int) -> None:
    """The last line counts every reply: a small file's said `50 sent, 0 confirmed` (its
    replies' counting ran after it was drawn)."""
    data = tmp_path / "lines.txt"
    data.write_text("".join(f"{i}\n" for i in range(n)))
    done = sh(f"{KAPOKMQ} produce --topic p --progress - < {shlex.quote(str(data))}", broker)
    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # text mode turned each \r into \n
    assert last.startswith("[" + "#" * 30 + "] 100%"), last
    assert f"{n} sent, {n} confirmed" in last
    quiet = sh(f"{KAPOKMQ} produce --topic p - < {shlex.quote(str(data))}", broker)
    assert (quiet.returncode, quiet.stderr) == (0, "")  # stderr is not a terminal


def test_console_list_pages_and_closed_pipes_exit_quietly(broker: BrokerProcess) -> None:
    lines = "".join(f"m{i}\n" for i in range(2000))
    assert sh(f"{KAPOKMQ} produce --topic pages -", broker, stdin=lines).returncode == 0
    first = sh(f"{KAPOKMQ} console list --topic pages", broker)
    assert first.returncode == 0, first.stderr
    table = first.stdout.splitlines()
    assert table[0].split() == ["CREATED", "STATUS", "TOPIC", "DELAY", "CODE"]
    assert len(table) == 1 + 50 and all("waiting" in row for row in table[1:])
    assert first.stderr == (
        "kapokmq: showing 1-50 of 2000 messages, newest first; "
        "--page 2 for the next 50, --all for all of them\n"
    )
    last = sh(f"{KAPOKMQ} console list --topic pages --json --page 4 --page-size 600", broker)
    assert len(json.loads(last.stdout)) == 200 and last.stderr == ""
    everything = sh(f"{KAPOKMQ} console list --topic pages --json --all", broker)
    assert len(json.loads(everything.stdout)) == 2000 and everything.stderr == ""
    past = sh(f"{KAPOKMQ} console list --topic pages --page 99", broker)
    assert "page 99 is past the last one (2000 messages)" in past.stderr
    bad = sh(f"{KAPOKMQ} console list --page-size 0", broker)
    assert bad.returncode == 2 and "must be a whole number >= 1" in bad.stderr
    # ~150 KB on stdout, more than a pipe holds: `head` closes it while we still write
    for command in ("console list --topic pages --all", "consume --topic pages --count 2000"):
        closed = sh(f"{KAPOKMQ} {command} | head -1", broker)
        assert (closed.returncode, closed.stderr) == (0, ""), command
        assert len(closed.stdout.splitlines()) == 1


def test_produce_ttl_and_message_id(broker: BrokerProcess) -> None:
    first = sh(f"{KAPOKMQ} produce --http --topic x --ttl 60 --message-id o-1 one", broker)
    again = sh(f"{KAPOKMQ} produce --http --topic x --message-id o-1 two", broker)
    assert first.returncode == again.returncode == 0 and first.stdout == again.stdout
    ws = sh(f"{KAPOKMQ} produce --topic x --ttl 60 --message-id o-2 three", broker)
    lines = sh(f"{KAPOKMQ} produce --topic x --ttl 60 -", broker, stdin="four\nfive\n")
    assert (ws.returncode, lines.returncode) == (0, 0), ws.stderr + lines.stderr
    code = first.stdout.strip()
    got = json.loads(sh(f"{KAPOKMQ} console get {code}", broker).stdout)
    assert got["MessageData"] == "one" and got["TTL"] == 60
    assert json.loads(sh(f"{KAPOKMQ} console count", broker).stdout)["all"] == 4
    for bad in ("--ttl -1 x", "--message-id m -"):
        refused = sh(f"{KAPOKMQ} produce --topic x {bad}", broker)
        assert refused.returncode == 2 and refused.stderr.startswith("kapokmq: --"), refused.stderr


def test_console_schedule_deliver_now_requeue_and_trace(broker_factory) -> None:
    broker = broker_factory(settings={"mq.trace": 1})

    def code_of(command: str) -> str:
        done = sh(f"{KAPOKMQ} produce --http {command}", broker)
        assert done.returncode == 0, done.stderr
        return str(done.stdout).strip()

    far = code_of("--topic s --delay 86400 far")
    soon = code_of("--topic s --delay 3600 soon")
    other = code_of("--topic o --delay 60 other")
    table = sh(f"{KAPOKMQ} console scheduled", broker)
    assert (table.returncode, table.stderr) == (0, "")
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["DUE", "IN", "TOPIC", "DELAY", "CODE"]
    assert [row.split()[-1] for row in rows] == [other, soon, far]  # soonest first
    assert re.search(r"\s(5\ds|1m 0[01]s)\s+o\s+60\s", rows[0]), rows[0]  # a loaded machine: 5x s
    assert re.search(r"\s(23h 59m|1d 00h)\s+s\s+86400\s", rows[2]), rows[2]
    paged = sh(f"{KAPOKMQ} console scheduled --topic s --page-size 1 --json", broker)
    assert [m["MessageCode"] for m in json.loads(paged.stdout)] == [soon]
    assert paged.stderr == (
        "kapokmq: showing 1-1 of 2 delayed messages, soonest first; "
        "--page 2 for the next 1, --all for all of them\n"
    )
    every = json.loads(sh(f"{KAPOKMQ} console scheduled --all --json", broker).stdout)
    assert [m["MessageCode"] for m in every] == [other, soon, far] and every[0]["DueTime"]

    assert sh(f"{KAPOKMQ} console deliver-now {far}", broker).stdout == "ok\n"
    got = json.loads(sh(f"{KAPOKMQ} consume --topic s --count 1", broker).stdout)
    assert got["MessageCode"] == far
    twice = sh(f"{KAPOKMQ} console deliver-now {far}", broker)
    assert (twice.returncode, twice.stderr) == (
        1,
        "kapokmq: no delayed message with that messageCode\n",
    )
    assert sh(f"{KAPOKMQ} console requeue {far}", broker).stdout == "ok\n"  # consumed: again
    waiting = sh(f"{KAPOKMQ} console requeue {far}", broker)
    assert (waiting.returncode, waiting.stderr) == (
        1,
        "kapokmq: no dead or consumed message with that messageCode\n",
    )
    again = json.loads(sh(f"{KAPOKMQ} consume --topic s --count 1", broker).stdout)
    assert again["MessageCode"] == far

    expected = ["published", "delivered now", "pushed", "acked", "requeued", "pushed", "acked"]
    deadline = time.monotonic() + 10
    while True:  # the last ack may still be on its way when consume exits
        events = json.loads(sh(f"{KAPOKMQ} console trace {far} --json", broker).stdout)
        if len(events) == len(expected) or time.monotonic() > deadline:
            break
    assert [e["Event"] for e in events] == expected
    trace = sh(f"{KAPOKMQ} console trace {far}", broker)
    header, *rows = trace.stdout.splitlines()
    assert header.split() == ["TIME", "EVENT", "DETAILS"] and len(rows) == len(expected)
    assert "ProducerId= ProducerIp=127.0.0.1 Engine=http" in rows[0]
    assert "delivered now" in rows[1] and "Attempt=1" in rows[2]

    for action in ("trace", "deliver-now", "requeue"):
        blank = sh(f"{KAPOKMQ} console {action} ''", broker)
        assert (blank.returncode, blank.stderr) == (1, "kapokmq: messageCode is required\n")
    helped = sh(f"{KAPOKMQ} console --help", broker).stdout
    assert all(a in helped for a in ("scheduled", "deliver-now", "requeue", "trace"))
    assert "--page-size" in sh(f"{KAPOKMQ} console scheduled --help", broker).stdout


def test_console_trace_when_tracing_is_off(broker: BrokerProcess) -> None:
    code = sh(f"{KAPOKMQ} produce --http --topic t x", broker).stdout.strip()
    off = sh(f"{KAPOKMQ} console trace {code}", broker)
    assert (off.returncode, off.stderr) == (1, "kapokmq: message trace is off (mq.trace is 0)\n")


def test_console_list_takes_a_date_alone(broker: BrokerProcess) -> None:
    """``--start``/``--end`` take a date alone (its first / last second), as the web
    console's search fields do."""
    assert sh(f"{KAPOKMQ} produce --topic days today", broker).returncode == 0
    today = time.strftime("%Y-%m-%d")
    found = sh(f"{KAPOKMQ} console list --topic days --start {today} --end {today} --json", broker)
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == 1
    before = sh(f"{KAPOKMQ} console list --topic days --end 2020-01-01 --json", broker)
    assert (before.returncode, json.loads(before.stdout)) == (0, [])
