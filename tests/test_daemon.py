"""End to end: a real daemon, real `warpd push` and `warpd subscribe` processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.conftest import fixture_files
from tests.daemon import TIMEOUT_UNIT, Daemon, warpd_command
from tests.test_openai_chat import PARALLEL_TOOLS, TEXT_WITH_USAGE
from warpd.ingest.convert import convert
from warpd.protocol import encode

# Fields that differ between two runs of the same stream by nature.
RUN_FIELDS = ("seq", "epoch", "created")


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in RUN_FIELDS}


def converted_final(data: bytes) -> dict[str, Any]:
    last = list(convert([data]))[-1]
    decoded: dict[str, Any] = msgspec.json.decode(encode(last))
    return decoded


def is_final(message: dict[str, Any]) -> bool:
    return message["type"] == "blocks" and message["complete"] and not message["streaming"]


@pytest.mark.parametrize(
    "path", fixture_files("openai_chat_*.sse", "deepseek_*.jsonl"), ids=lambda p: p and p.name
)
def test_two_subscribers_see_the_same_complete_stream(daemon: Daemon, path: Path) -> None:
    first, second = daemon.subscriber(), daemon.subscriber()
    try:
        pushed = daemon.push(path)
        assert pushed.returncode == 0, pushed.stderr
        seen_first = first.messages_until_final()
        seen_second = second.messages_until_final()
    finally:
        first.close()
        second.close()
    # The same bytes went to both.
    assert seen_first == seen_second
    assert first.lines[1:] == second.lines[1:]
    seqs = [m["seq"] for m in seen_first]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq has a gap"
    last = seen_first[-1]
    assert is_final(last) and not last.get("aborted")
    # The daemon's final message is exactly what `warpd convert` makes offline.
    assert comparable(last) == comparable(converted_final(path.read_bytes()))
    offline = daemon.run("convert", str(path), check=True).stdout.splitlines()
    assert comparable(json.loads(offline[-1])) == comparable(last)


def test_streaming_messages_carry_fragments_and_the_last_the_whole_text(daemon: Daemon) -> None:
    sub = daemon.subscriber()
    try:
        assert daemon.push(data=TEXT_WITH_USAGE).returncode == 0
        seen = sub.messages_until_final()
    finally:
        sub.close()
    fragments = [b["text"] for m in seen[:-1] for b in m["blocks"] if b["streaming"]]
    assert "".join(fragments) == "Hello wörld ✓"
    assert seen[-1]["blocks"][0]["text"] == "Hello wörld ✓"
    assert seen[-1]["usage"]["total_tokens"] == 7


def test_sessions_are_separate_and_star_follows_all(daemon: Daemon) -> None:
    agent = daemon.subscriber("--session", "agent")
    everything = daemon.subscriber("--session", "*")
    try:
        assert daemon.push(data=PARALLEL_TOOLS, session="ci").returncode == 0
        assert daemon.push(data=TEXT_WITH_USAGE, session="agent").returncode == 0
        agent_seen = agent.messages_until_final()
        all_seen = everything.messages_until_final(2)
    finally:
        agent.close()
        everything.close()
    assert {m["session"] for m in agent_seen} == {"agent"}
    assert agent_seen[0]["seq"] == 1
    assert [m["stream"] for m in all_seen if is_final(m)] == ["ci/1", "agent/1"]


def test_sse_output_and_once(daemon: Daemon) -> None:
    sub = subprocess.Popen(
        warpd_command("subscribe", "--output", "sse", "--once"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env,
    )
    try:
        _wait_for_subscribers(daemon, 1)
        assert daemon.push(data=TEXT_WITH_USAGE).returncode == 0
        out, err = sub.communicate(timeout=4 * TIMEOUT_UNIT)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert sub.returncode == 0, err
    events = [e for e in out.decode().split("\n\n") if e]
    assert events[0].startswith("event: hello\ndata: {")
    last = events[-1].splitlines()
    assert last[0].startswith("id: ") and last[1] == "event: blocks"
    assert json.loads(last[2].removeprefix("data: "))["complete"] is True


_BAD = TEXT_WITH_USAGE.replace(
    b'data: {"object": "chat.completion.chunk", "model": "gpt-test", "choices": '
    b'[{"index": 0, "delta": {"content": "lo',
    b"data: {oops\x1b[31m\n\ndata: " + b'{"object": "chat.completion.chunk", "model": "gpt-test", '
    b'"choices": [{"index": 0, "delta": {"content": "lo',
    1,
)


def test_push_warns_of_a_bad_event_by_line_and_the_stream_goes_on(daemon: Daemon) -> None:
    assert _BAD != TEXT_WITH_USAGE
    sub = daemon.subscriber()
    try:
        result = daemon.push(data=_BAD)
        assert result.returncode == 0, result.stderr
        line = result.stderr.decode().strip()
        # One line, escaped, naming the input line.
        assert "\n" not in line and "\x1b" not in line, line
        assert line.startswith("warpd push: warning: line 5: invalid JSON in OpenAI chat"), line
        assert "\\x1b[31m" in line
        # Subscribers saw an input error block, and the whole stream, unaborted.
        last = sub.messages_until_final()[-1]
        assert not last.get("aborted")
        assert [b["text"] for b in last["blocks"] if b["type"] == "text"] == ["Hello wörld ✓"]
        (error,) = [b for b in last["blocks"] if b["type"] == "error"]
        assert error["error"]["source"] == "input" and error["error"]["code"] == "invalid-json"
        assert error["error"]["frame"] == 3
    finally:
        sub.close()
    # `warpd convert` says the same on stderr and still prints the blocks.
    path = daemon.workdir / "bad.sse"
    path.write_bytes(_BAD)
    converted = daemon.run("convert", str(path))
    assert converted.returncode == 0
    assert converted.stderr.decode().startswith("warpd convert: warning: line 5: invalid JSON")
    assert comparable(json.loads(converted.stdout.splitlines()[-1])) == comparable(last)


def test_strict_push_reports_bad_input_by_line_and_the_daemon_serves_on(daemon: Daemon) -> None:
    sub = daemon.subscriber()
    try:
        result = daemon.push(None, "--strict", data=_BAD)
        assert result.returncode == 1
        line = result.stderr.decode().strip()
        assert "\n" not in line and line.startswith("warpd push: line 5: invalid JSON"), line
        # Subscribers saw the stream end, aborted, with an error block saying why.
        seen = sub.messages_until_final()
        last = seen[-1]
        assert last["aborted"] and last["blocks"][0]["text"] == "Hel"
        assert last["blocks"][-1]["type"] == "error"
        assert "invalid JSON" in last["blocks"][-1]["error"]["message"]
        # A second, valid stream on the same daemon still completes.
        assert daemon.push(None, "--strict", data=TEXT_WITH_USAGE).returncode == 0
        assert not sub.messages_until_final()[-1].get("aborted")
    finally:
        sub.close()
    path = daemon.workdir / "bad.sse"
    path.write_bytes(_BAD)
    converted = daemon.run("convert", "--strict", str(path))
    assert converted.returncode == 1
    # As push says it: by its line, once (not "frame 4: line 5: …").
    assert converted.stderr.decode().startswith("warpd convert: line 5: invalid JSON")


def test_unrecognised_input_is_skipped_with_a_warning_naming_the_formats(daemon: Daemon) -> None:
    result = daemon.push(None, "--format", "auto", data=b'{"hello": "world"}\n')
    assert result.returncode == 1  # nothing but that event: no stream in the input
    message = result.stderr.decode()
    assert message.startswith("warpd push: warning: line 1: cannot tell the stream's format")
    assert "hello" in message


def test_strict_unrecognised_input_names_the_formats_and_shows_the_frame(daemon: Daemon) -> None:
    result = daemon.push(None, "--format", "auto", "--strict", data=b'{"hello": "world"}\n')
    assert result.returncode == 1
    message = result.stderr.decode()
    assert "cannot tell the stream's format" in message and "hello" in message


def test_input_cut_off_completes_aborted(daemon: Daemon) -> None:
    sub = daemon.subscriber()
    try:
        data = TEXT_WITH_USAGE.split(b'"finish_reason": "stop"')[0].rsplit(b"data:", 1)[0]
        assert daemon.push(data=data).returncode == 5  # the exit status for "aborted"
        last = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert last["aborted"] and "before finish_reason or [DONE]" in last["abort_reason"]
    assert last["blocks"][0]["text"] == "Hello wörld ✓"


def test_no_daemon_is_one_line_naming_the_address(short_tmp: Path) -> None:
    address = f"unix:{short_tmp}/none.sock"
    for args in (["push"], ["subscribe", "--no-wait"], ["status"], ["reload"]):
        result = subprocess.run(
            warpd_command(*args, "--connect", address), input=b"", capture_output=True,
            timeout=4 * TIMEOUT_UNIT,
        )
        assert result.returncode == 3  # the exit status for "no daemon"
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and address in lines[0] and "warpd serve" in lines[0], lines


def test_status_lists_sessions_and_subscribers(daemon: Daemon) -> None:
    sub = daemon.subscriber("--session", "agent")
    try:
        assert daemon.push(data=TEXT_WITH_USAGE, session="agent").returncode == 0
        sub.messages_until_final()
        text = daemon.run("status", check=True).stdout.decode()
        raw = json.loads(daemon.run("status", "--json", check=True).stdout)
    finally:
        sub.close()
    assert "session 'agent'" in text and "1 subscriber(s)" in text
    row = raw["sessions"][0]
    assert row["session"] == "agent" and row["streams_started"] == 1
    assert len(row["subscribers"]) == 1 and row["subscribers"][0]["lag_messages"] == 0


def test_bad_requests_are_refused_before_the_websocket_opens(daemon: Daemon) -> None:
    result = daemon.run("push", "--session", "bad name!", data=b"")
    assert result.returncode == 1
    assert "400 invalid session name 'bad name!'" in result.stderr.decode()


def test_a_second_daemon_on_the_same_socket_refuses_to_start(daemon: Daemon) -> None:
    result = subprocess.run(
        warpd_command("serve", "--listen", daemon.address), capture_output=True,
        timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 1
    assert f"another warpd (pid {daemon.process.pid}) is already serving".encode() in result.stderr


def test_socket_mode_is_0600(daemon: Daemon) -> None:
    assert daemon.socket.stat().st_mode & 0o777 == 0o600


def _wait_for_subscribers(daemon: Daemon, count: int) -> None:
    import time

    deadline = time.monotonic() + 2 * TIMEOUT_UNIT
    while time.monotonic() < deadline:
        status = json.loads(daemon.run("status", "--json", check=True).stdout)
        if sum(len(s["subscribers"]) for s in status["sessions"]) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("subscriber did not connect in time")


def test_plain_text_input_is_pushed_as_text_with_format_auto(daemon: Daemon) -> None:
    sub = daemon.subscriber()
    try:
        result = daemon.push(None, "-v", data="some-cli output ✓\nline two\n".encode())
        assert result.returncode == 0, result.stderr
        assert b"format text" in result.stderr
        last = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert [(b["type"], b["text"]) for b in last["blocks"]] == [
        ("text", "some-cli output ✓\nline two\n")
    ]
    assert not last.get("aborted")


def test_push_on_a_silent_pipe_exits_when_the_daemon_times_it_out(short_tmp: Path) -> None:
    import time

    with Daemon(short_tmp, config="[limits]\nproducer_idle_timeout = 1.0\n") as daemon:
        push = subprocess.Popen(
            warpd_command("push"), stdin=subprocess.PIPE, stderr=subprocess.PIPE,
            env=daemon.env,
        )
        assert push.stdin is not None and push.stderr is not None
        # Part of a stream, then nothing: the pipe stays open, as a stalled `curl -N`.
        push.stdin.write(TEXT_WITH_USAGE[:200])
        push.stdin.flush()
        started = time.monotonic()
        try:
            status = push.wait(timeout=4 * TIMEOUT_UNIT)
        finally:
            push.kill()
            push.stdin.close()
        err = push.stderr.read().decode()
        push.stderr.close()
    assert time.monotonic() - started < 3 * TIMEOUT_UNIT
    assert status == 1, err
    assert "sent nothing for" in err or "idle" in err, err
