"""Irregular input through a real daemon: the stream goes on, every other client is served.

- The cases of ../shared/cases/ingest reach two subscribers with their right
  result, the same as ``warpd convert`` gives.
- A push of two streams where the first has a bad event completes both.
- An event with an absurd index gets a clear warning for that event only,
  while another client's round trip completes within a second and the
  daemon's memory does not grow.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import msgspec
import pytest

import warpd
from tests.daemon import TIMEOUT_UNIT, Daemon
from tests.delivery import rss_kib
from tests.test_daemon import comparable
from tests.test_ingest_tolerance import CASES, case, check_case
from warpd.protocol import BlocksMessage


def _final(line: bytes) -> BlocksMessage:
    return msgspec.json.decode(line, type=BlocksMessage)


@pytest.mark.parametrize("name", CASES)
def test_case_through_the_daemon_to_two_subscribers(daemon: Daemon, name: str) -> None:
    path = case(name)
    first, second = daemon.subscriber(), daemon.subscriber()
    try:
        pushed = daemon.push(path)
        assert pushed.returncode == 0, pushed.stderr
        first.messages_until_final()
        second.messages_until_final()
    finally:
        first.close()
        second.close()
    assert first.lines[1:] == second.lines[1:]
    check_case(name, _final(first.lines[-1]))
    # The same as offline, and as many warnings on stderr as input error blocks.
    converted = daemon.run("convert", str(path), check=True)
    last = json.loads(first.lines[-1])
    assert comparable(json.loads(converted.stdout.splitlines()[-1])) == comparable(last)
    errors = [b for b in last["blocks"] if b["type"] == "error"]
    assert len(pushed.stderr.decode().splitlines()) == len(errors)
    assert len(converted.stderr.decode().splitlines()) == len(errors)


def _chat(content: str, finish: str | None = None) -> bytes:
    event = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


@pytest.mark.parametrize(
    ("start", "args"),
    [
        (b"\xef\xbb\xbf", ()),  # a byte order mark (a file saved by an editor, PowerShell)
        (b"HTTP/2 200 \r\ncontent-type: text/event-stream\r\n\r\n", ("--format", "openai")),
    ],
    ids=["bom", "curl-i-headers"],
)
def test_a_push_whose_input_starts_with_something_else_keeps_its_stream(
    daemon: Daemon, start: bytes, args: tuple[str, ...]
) -> None:
    sub = daemon.subscriber()
    try:
        pushed = daemon.push(None, *args, data=start + _chat("Hello", "stop") + b"data: [DONE]\n\n")
        assert pushed.returncode == 0, pushed.stderr
        (last,) = sub.messages_until_final()[-1:]
    finally:
        sub.close()
    assert [(b["type"], b.get("text")) for b in last["blocks"]] == [("text", "Hello")]
    assert not last.get("aborted") and pushed.stderr == b""


def test_a_push_of_two_streams_whose_first_has_a_bad_event_completes_both(
    daemon: Daemon,
) -> None:
    data = (
        _chat("one") + b"data: {broken\n\n" + _chat("", "stop") + b"data: [DONE]\n\n"
        + _chat("two", "stop") + b"data: [DONE]\n\n"
    )  # fmt: skip
    sub = daemon.subscriber()
    try:
        pushed = daemon.push(data=data)
        assert pushed.returncode == 0, pushed.stderr
        seen = sub.messages_until_final(2)
    finally:
        sub.close()
    finals = [m for m in seen if m["complete"] and not m["streaming"]]
    assert [
        ([b["text"] for b in m["blocks"] if b["type"] == "text"], m.get("aborted", False))
        for m in finals
    ] == [(["one"], False), (["two"], False)]
    assert pushed.stderr.decode().startswith("warpd push: warning: line 3: invalid JSON")


def _round_trip(daemon: Daemon) -> float:
    """Seconds for another client to push a small stream and get its final message."""
    start = time.monotonic()
    final = warpd.Client(daemon.address).push(
        [
            {"choices": [{"index": 0, "delta": {"content": "ping"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ],
        session="other",
    )
    assert final.blocks[0].text == "ping" and not final.aborted
    return time.monotonic() - start


def test_a_huge_index_is_a_warning_for_its_event_only(daemon: Daemon) -> None:
    _round_trip(daemon)  # warm up: imports, first connections
    rss_before = rss_kib(daemon.process.pid)
    huge: list[Any] = [
        {"choices": [
            {"index": 10_000_000_000, "delta": {"content": "x"}, "finish_reason": "stop"}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 10_000_000_000, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]},
    ]  # fmt: skip
    events = [
        {"choices": [{"index": 0, "delta": {"content": "kept"}}]},
        *huge * 100,
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    result: dict[str, Any] = {}

    def push_huge() -> None:
        with warpd.Client(daemon.address).stream(session="huge") as stream:
            for event in events:
                stream.push(event)
        result["final"], result["warnings"] = stream.final, stream.warnings

    pusher = threading.Thread(target=push_huge)
    pusher.start()
    took = [_round_trip(daemon) for _ in range(3)]
    pusher.join(timeout=4 * TIMEOUT_UNIT)
    assert not pusher.is_alive()
    assert max(took) < TIMEOUT_UNIT / 5, f"round trips took {took}"
    final, warnings = result["final"], result["warnings"]
    assert not final.aborted and final.blocks[0].text == "kept"
    assert final.finish_reasons is None  # no list was laid out by the absurd index
    # One warning per bad event, up to the stream's bound, each naming its frame and field.
    first = warnings[0]
    assert first.frame == 2 and first.code == "schema-mismatch"
    assert "<= 4096" in first.message and "$.choices[0].index" in first.message
    assert "$.choices[0].delta.tool_calls[0].index" in warnings[1].message
    assert len(warnings) == 20
    assert rss_kib(daemon.process.pid) - rss_before < 20 * 1024
