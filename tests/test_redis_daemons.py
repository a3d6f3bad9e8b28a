"""Real ``warpd serve`` processes sharing sessions through a real redis-server.

Issue 8's checks: cross-daemon fan-out of every fixture, resume on daemon B of
a stream produced on A, a daemon restarted with its history intact (same
epoch), and Redis killed and restarted mid-stream.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.sync.client import unix_connect

from tests.conftest import FIXTURES_DIR, TIMEOUT_UNIT
from tests.daemon import Daemon, warpd_command
from tests.delivery import PipedPush
from tests.ingest_streams import HAND_MADE
from tests.redis_server import RedisServer
from warpd.blocks import is_final
from warpd.ingest.convert import convert


def config_for(redis: RedisServer) -> str:
    return (
        f'[broker]\nurl = "{redis.url}"\ntimeout = 1.0\n'
        "reconnect_min = 0.05\nreconnect_max = 0.3\n"
    )


def start(short_tmp: Path, name: str, redis: RedisServer) -> Daemon:
    workdir = short_tmp / name
    workdir.mkdir(exist_ok=True)
    return Daemon(workdir, config=config_for(redis))


@pytest.fixture
def pair(short_tmp: Path, redis_server: RedisServer) -> Iterator[tuple[Daemon, Daemon]]:
    with start(short_tmp, "a", redis_server) as a, start(short_tmp, "b", redis_server) as b:
        yield a, b


def finals_of(data: bytes, format: str = "auto") -> list[dict[str, Any]]:
    return [
        msgspec.json.decode(msgspec.json.encode(m))
        for m in convert([data], format=format, errors="message")
        if is_final(m)
    ]


def same_blocks(got: dict[str, Any], expected: dict[str, Any]) -> bool:
    ignore = ("seq", "epoch", "stream", "created")
    strip = {k: v for k, v in got.items() if k not in ignore}
    want = {k: v for k, v in expected.items() if k not in ignore}
    # Block ids name the stream, whose id carries the daemon that assembled it.
    for message in (strip, want):
        message["blocks"] = [{**b, "id": b["index"]} for b in message["blocks"]]
    return strip == want


def subscribe_raw(daemon: Daemon, query: str, count: int) -> list[dict[str, Any]]:
    """``count`` messages of a raw /subscribe?QUERY connection (hello first)."""
    with unix_connect(str(daemon.socket), f"ws://localhost/subscribe?{query}") as ws:
        return [json.loads(ws.recv(timeout=2 * TIMEOUT_UNIT)) for _ in range(count)]


def status(daemon: Daemon) -> dict[str, Any]:
    result = daemon.run("status", "--json", check=True)
    decoded: dict[str, Any] = json.loads(result.stdout)
    return decoded


def cases() -> list[tuple[str, bytes, str]]:
    """Every recorded fixture (when present) and every hand-made stream: (name, bytes, format)."""
    recorded = [
        (path.name, path.read_bytes(), "auto")
        for path in (sorted(FIXTURES_DIR.glob("*")) if FIXTURES_DIR.is_dir() else [])
        if path.suffix in (".sse", ".jsonl", ".ndjson")
    ]
    return recorded + [(name, data, fmt) for name, (fmt, data) in sorted(HAND_MADE.items())]


def test_every_fixture_pushed_on_a_reaches_b_and_c_alike(
    short_tmp: Path, redis_server: RedisServer
) -> None:
    with start(short_tmp, "a", redis_server) as a, start(short_tmp, "b", redis_server) as b, \
            start(short_tmp, "c", redis_server) as c:
        on_b, on_c = b.subscriber("--output", "jsonl"), c.subscriber("--output", "jsonl")
        try:
            for name, data, format in cases():
                pushed = a.push(None, "--format", format, data=data)
                expected = finals_of(data, format)
                got_b = on_b.messages_until_final(len(expected))
                got_c = on_c.messages_until_final(len(expected))
                assert got_b == got_c, name
                finals = [m for m in got_b if m["type"] == "blocks" and not m["streaming"]]
                assert all(same_blocks(g, e) for g, e in zip(finals, expected, strict=True)), name
                assert pushed.returncode == 0 or any(m.get("aborted") for m in finals), name
            seqs = [json.loads(line)["seq"] for line in on_b.lines[1:]]
            assert seqs == list(range(1, len(seqs) + 1))
            assert on_b.lines[1:] == on_c.lines[1:]  # the same bytes everywhere
        finally:
            on_b.close()
            on_c.close()


def test_resume_on_b_of_a_stream_produced_on_a(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    format, data = HAND_MADE["responses_mixed"]
    assert a.push(None, "--format", format, data=data).returncode == 0
    total = status(a)["sessions"][0]["seq"]
    epoch = status(a)["epoch"]
    assert status(b)["epoch"] == epoch
    messages = subscribe_raw(b, f"session=default&since=2&epoch={epoch}", 1 + total - 2)
    hello, rest = messages[0], messages[1:]
    assert hello["type"] == "hello" and "resume_failed" not in hello
    assert [m["seq"] for m in rest] == list(range(3, total + 1))
    assert same_blocks(rest[-1], finals_of(data, format)[-1])


def test_a_restarted_daemon_keeps_the_epoch_and_the_history(
    short_tmp: Path, redis_server: RedisServer
) -> None:
    format, data = HAND_MADE["anthropic_thinking_tool"]
    with start(short_tmp, "a", redis_server) as a:
        assert a.push(None, "--format", format, data=data).returncode == 0
        before = status(a)
    with start(short_tmp, "a", redis_server) as again:
        after = status(again)
        assert after["epoch"] == before["epoch"]
        assert after["sessions"][0]["seq"] == before["sessions"][0]["seq"]
        total = after["sessions"][0]["seq"]
        messages = subscribe_raw(again, f"session=default&since=0&epoch={after['epoch']}",
                                 1 + total)
        assert "resume_failed" not in messages[0]
        assert [m["seq"] for m in messages[1:]] == list(range(1, total + 1))
        assert same_blocks(messages[-1], finals_of(data, format)[-1])
        replay = again.subscriber("--output", "jsonl", "--replay", "1")
        try:
            [final] = replay.messages_until_final(1)
            assert same_blocks(final, finals_of(data, format)[-1])
        finally:
            replay.close()


def _chunk(text: str) -> bytes:
    event = {"id": "c", "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 4 * TIMEOUT_UNIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_redis_killed_and_restarted_mid_stream(
    pair: tuple[Daemon, Daemon], redis_server: RedisServer
) -> None:
    a, b = pair
    on_a = a.subscriber("--output", "jsonl")
    on_b = b.subscriber("--output", "jsonl")
    producer = subprocess.Popen(
        warpd_command("push", "--session", "default", "--format", "openai"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=a.env,
    )
    assert producer.stdin is not None
    try:
        producer.stdin.write(_chunk("before "))
        producer.stdin.flush()
        assert on_b.read_message()["blocks"][0]["text"] == "before "
        on_a.read_message()

        redis_server.stop()
        _wait(lambda: status(a).get("broker", {}).get("state") == "unavailable",
              "A to report Redis unavailable")
        assert "Redis unavailable" in a.log()
        producer.stdin.write(_chunk("during "))
        producer.stdin.flush()
        during = on_a.read_message()
        assert during["blocks"][0]["text"] == "during "

        redis_server.start()
        _wait(lambda: status(a)["broker"]["state"] == "connected"
              and status(b)["broker"]["state"] == "connected", "both to reconnect")
        producer.stdin.write(_chunk("after"))
        producer.stdin.write(b"data: [DONE]\n\n")
        producer.stdin.close()
        assert producer.wait(timeout=4 * TIMEOUT_UNIT) == 0, producer.stderr
        # B gets the stream's end with every word, though it never saw "during".
        final = on_b.messages_until_final(1)[-1]
        assert final["blocks"][0]["text"] == "before during after"
        final_a = on_a.messages_until_final(1)[-1]
        assert final_a["blocks"][0]["text"] == "before during after"
        assert final_a["epoch"] == final["epoch"] == status(a)["epoch"]
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
        for pipe in (producer.stdout, producer.stderr):
            if pipe is not None:
                pipe.close()
        on_a.close()
        on_b.close()


def test_status_says_which_broker_and_its_state(pair: tuple[Daemon, Daemon]) -> None:
    a, _ = pair
    text = a.run("status", check=True).stdout.decode()
    assert "broker redis redis://127.0.0.1:" in text and ": connected, 0 outage(s)" in text


def test_streams_cut_by_a_crash_can_be_shown_after_the_restart(
    short_tmp: Path, redis_server: RedisServer
) -> None:
    # Two streams of one session live when the daemon is SIGKILLed: the
    # restart marks both aborted in its history file, each with its own text.
    first = start(short_tmp, "a", redis_server)
    pushes = [PipedPush(first, "--format", "openai") for _ in range(2)]
    try:
        for n, push in enumerate(pushes):
            push.write(_chunk(f"<stream {n}>"))
        # Both published through Redis and committed to the file.
        _wait(lambda: len(first.run("log", "--json", check=True).stdout.splitlines()) == 2,
              "both streams in the history file")
        first.stop(signal.SIGKILL)
    finally:
        for push in pushes:
            push.kill()
        first.stop()
    with start(short_tmp, "a", redis_server) as again:
        again.wait_for_log("completed 2 stream(s) as aborted")
        time.sleep(0.3)
        rows = [json.loads(line) for line in
                again.run("log", "--json", check=True).stdout.splitlines()]
        shown = {row["stream"]: again.run("show", row["stream"], "--output", "jsonl",
                                          check=True).stdout for row in rows}
    assert [row["outcome"] for row in rows] == ["aborted: the daemon stopped"] * 2
    texts = sorted(json.loads(out.splitlines()[-1])["blocks"][0]["text"]
                   for out in shown.values())
    assert texts == ["<stream 0>", "<stream 1>"]
