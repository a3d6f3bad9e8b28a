"""A daemon that stops answering: the others end its live streams as aborted (issue 8).

Real ``warpd serve`` processes on a real redis-server, with a short
``[broker] liveness_ttl``: daemon A, with a producer mid-stream, is killed
(SIGKILL) or frozen (SIGSTOP, then SIGCONT: not dead, only silent); the
subscribers of the other daemons get the stream's aborted final once, within
the TTL plus a bound, and it is no longer live anywhere.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.sync.client import unix_connect

from tests.conftest import TIMEOUT_UNIT
from tests.daemon import Daemon, warpd_command
from tests.redis_server import RedisServer

TTL = 1.0
REASON = "the daemon assembling it stopped answering"


def start(short_tmp: Path, name: str, server: RedisServer) -> Daemon:
    workdir = short_tmp / name
    workdir.mkdir(exist_ok=True)
    config = (
        f'[broker]\nurl = "{server.url}"\ntimeout = 1.0\n'
        f"reconnect_min = 0.05\nreconnect_max = 0.3\nliveness_ttl = {TTL}\n"
    )
    return Daemon(workdir, config=config)


def chunk(text: str) -> bytes:
    event = {"id": "c", "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def status(daemon: Daemon) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(daemon.run("status", "--json", check=True).stdout)
    return decoded


def live_streams(daemon: Daemon) -> list[str]:
    return [s for session in status(daemon)["sessions"] for s in session["live_streams"]]


def late_joiner_gets(daemon: Daemon, quiet: float = 0.5) -> list[dict[str, Any]]:
    """What a new subscriber of ``default`` gets until quiet for ``quiet`` s (hello first)."""
    got = []
    with unix_connect(str(daemon.socket), "ws://localhost/subscribe?session=default") as ws:
        try:
            while True:
                got.append(json.loads(ws.recv(timeout=quiet)))
        except TimeoutError:
            pass
    return got


@pytest.fixture
def producer_on() -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def launch(daemon: Daemon) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            warpd_command("push", "--session", "default", "--format", "openai"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=daemon.env,
        )
        started.append(process)
        return process

    yield launch
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def send(producer: subprocess.Popen[bytes], data: bytes) -> None:
    assert producer.stdin is not None
    producer.stdin.write(data)
    producer.stdin.flush()


def finals_in_redis(server: RedisServer, stream: str) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        entries = client.xrange("warpd:s:default:finals")
    finally:
        client.close()
    return sum(json.loads(fields[b"d"])["stream"] == stream for _, fields in entries)


def test_a_killed_daemons_stream_ends_aborted_once_on_the_others(
    short_tmp: Path, redis_server: RedisServer, producer_on: Any
) -> None:
    a = start(short_tmp, "a", redis_server)
    try:
        with start(short_tmp, "b", redis_server) as b, start(short_tmp, "c", redis_server) as c:
            on_b = b.subscriber("--output", "jsonl")
            try:
                producer = producer_on(a)
                send(producer, chunk("half a sent"))
                first = on_b.read_message()
                stream = first["stream"]
                assert first["blocks"][0]["text"] == "half a sent"
                assert live_streams(b) == [stream] and live_streams(c) == [stream]

                a.stop(signal.SIGKILL)
                killed = time.monotonic()
                final = on_b.read_message(timeout=4 * TIMEOUT_UNIT)
                took = time.monotonic() - killed
                # Expired within TTL, seen within TTL/3 more; the rest is delivery.
                assert took < TTL * 4 / 3 + 1.5, took
                assert final["stream"] == stream and final["seq"] == first["seq"] + 1
                assert final["complete"] and not final["streaming"]
                assert final["aborted"] is True and final["abort_reason"] == REASON
                [block] = final["blocks"]
                assert block["text"] == "half a sent" and block["complete"]
                assert block["truncated"] is True

                # B and C both saw A die; only one of them ended the stream.
                with pytest.raises(AssertionError, match="no message"):
                    on_b.read_message(timeout=3 * TTL)
                assert finals_in_redis(redis_server, stream) == 1
                assert live_streams(b) == [] and live_streams(c) == []
                for daemon in (b, c):
                    got = late_joiner_gets(daemon)
                    assert [m["type"] for m in got] == ["hello"], got
                ended_by = [d for d in (b, c) if f"stream {stream}: its daemon" in d.log()]
                assert ended_by, "neither B nor C logged ending the stream"
            finally:
                on_b.close()
    finally:
        a.stop(signal.SIGKILL)


def test_a_frozen_daemon_does_not_bring_its_ended_stream_back(
    short_tmp: Path, redis_server: RedisServer, producer_on: Any
) -> None:
    with start(short_tmp, "a", redis_server) as a, start(short_tmp, "b", redis_server) as b:
        on_b = b.subscriber("--output", "jsonl")
        try:
            producer = producer_on(a)
            send(producer, chunk("before "))
            stream = on_b.read_message()["stream"]

            a.process.send_signal(signal.SIGSTOP)
            try:
                final = on_b.read_message(timeout=4 * TIMEOUT_UNIT)
                assert final["aborted"] is True and final["abort_reason"] == REASON
                assert final["blocks"][0]["text"] == "before "
                # What the producer sends meanwhile waits in A's socket.
                send(producer, chunk("while frozen "))
            finally:
                a.process.send_signal(signal.SIGCONT)
            send(producer, chunk("after"))
            send(producer, b"data: [DONE]\n\n")
            assert producer.stdin is not None
            producer.stdin.close()
            try:
                assert producer.wait(timeout=4 * TIMEOUT_UNIT) == 0
            except subprocess.TimeoutExpired:
                raise AssertionError(f"push did not end; A's log:\n{a.log()}") from None

            # A is alive again, and its later messages of that stream reach no one else.
            deadline = time.monotonic() + 4 * TIMEOUT_UNIT
            while "was ended as aborted by another daemon" not in a.log():
                assert time.monotonic() < deadline, a.log()
                time.sleep(0.05)
            with pytest.raises(AssertionError, match="no message"):
                on_b.read_message(timeout=2 * TTL)
            assert finals_in_redis(redis_server, stream) == 1
            assert live_streams(b) == [] and live_streams(a) == []
            assert [m["type"] for m in late_joiner_gets(b)] == ["hello"]

            # A new stream on A reaches B as usual: A is not taken for dead again.
            producer = producer_on(a)
            send(producer, chunk("next") + b"data: [DONE]\n\n")
            assert producer.stdin is not None
            producer.stdin.close()
            assert producer.wait(timeout=4 * TIMEOUT_UNIT) == 0
            final = on_b.messages_until_final(1)[-1]
            assert final["stream"] != stream and final["blocks"][0]["text"] == "next"
            assert not final.get("aborted")
        finally:
            on_b.close()
