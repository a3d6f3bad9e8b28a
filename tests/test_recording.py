"""Recordings and their pace (warpd/recording.py): pure, so tested without sleeping."""

from __future__ import annotations

import json

import pytest

from warpd.errors import InputError
from warpd.examples import read_example
from warpd.ingest.convert import convert
from warpd.protocol import BlocksMessage, HelloMessage, encode
from warpd.recording import (
    MAX_GAP_SECONDS,
    STEADY_SECONDS,
    PlaybackClock,
    RecordingReader,
    UpstreamEvents,
    event_time,
    pace,
    read_records,
)


def delays(records: list[tuple[float | None, str]], **options: float) -> list[float]:
    return [round(d, 6) for d, _, _ in pace(records, **options)]


def test_recorded_gaps_are_kept_and_divided_by_speed() -> None:
    records = [(100.0, "a"), (100.5, "b"), (101.25, "c")]
    assert delays(records) == [0.0, 0.5, 0.75]
    assert delays(records, speed=2) == [0.0, 0.25, 0.375]
    assert [(t, item) for _, t, item in pace(records)] == records


def test_unknown_times_go_at_a_steady_rate() -> None:
    records: list[tuple[float | None, str]] = [(None, "a"), (None, "b"), (5.0, "c"), (None, "d")]
    steady = round(STEADY_SECONDS, 6)
    assert delays(records) == [0.0, steady, steady, steady]
    assert delays(records, speed=3, steady=0.3) == [0.0, 0.1, 0.1, 0.1]


def test_long_silences_are_shortened_and_backward_clocks_are_no_gap() -> None:
    records: list[tuple[float | None, str]] = [(0.0, "a"), (600.0, "b"), (599.0, "c")]
    assert delays(records) == [0.0, MAX_GAP_SECONDS, 0.0]
    assert delays(records, max_gap=1.0, speed=0.5) == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("speed", [0, -1, float("nan"), float("inf")])
def test_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be a positive number"):
        list(pace([(None, "a")], speed=speed))


def test_playback_clock_follows_the_recording() -> None:
    mono = [10.0]
    clock = PlaybackClock(speed=2, monotonic=lambda: mono[0], wall=lambda: 5000.0)
    assert clock.now() == 5000.0  # nothing known yet: the wall clock
    clock.shown(None, created=1000.0)  # no times: the first stream's start anchors it
    mono[0] = 11.0
    assert clock.now() == 1002.0
    clock.shown(2000.0)
    mono[0] = 11.5
    assert clock.now() == 2001.0
    clock.shown(None, created=1.0)  # already anchored: keeps running
    assert clock.now() == 2001.0


def test_ollama_events_carry_their_created_at() -> None:
    records = UpstreamEvents().feed(read_example("ollama_chat.ndjson"))
    times = [t for t, _ in records]
    assert all(t is not None for t in times)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]  # type: ignore[operator]
    assert all(0.02 < g < 0.06 for g in gaps)
    assert event_time(b'{"created_at": "2026-01-02T09:30:12.104000417Z"}') == pytest.approx(
        1767346212.104
    )
    for untimed in (b'{"created_at": 12}', b'{"created_at": "soon"}', b'{"x": 1}', b"data"):
        assert event_time(untimed) is None


def test_sse_events_have_no_times_and_plain_text_plays_word_by_word() -> None:
    records = UpstreamEvents().feed(read_example("anthropic_thinking_tool.sse"))
    assert records and all(t is None for t, _ in records)
    assert json.loads(records[0][1].payload)["type"] == "message_start"
    assert records[0][1].line == 2
    text = UpstreamEvents("auto")
    words = text.feed(b"one two\nthr") + text.close()
    assert text.plain_text
    assert [e.payload for _, e in words] == [b"one ", b"two\n", b"thr"]


@pytest.mark.parametrize(
    "name",
    ["openai_chat_parallel_tools.sse", "anthropic_thinking_tool.sse", "ollama_chat.ndjson",
     "plain.txt"],
)
def test_an_upstream_recording_gives_what_convert_gives(name: str) -> None:
    data = read_example(name)
    pieces = [data[i : i + 17] for i in range(0, len(data), 17)]
    played = [m for _, m in read_records(pieces, RecordingReader())]
    converted = list(convert([data]))
    finals = [m for m in played if isinstance(m, BlocksMessage) and not m.streaming]
    assert len(finals) == 1
    final = finals[0]
    assert [b.text for b in final.blocks] == [b.text for b in converted[-1].blocks]
    assert [b.tool for b in final.blocks] == [b.tool for b in converted[-1].blocks]
    assert [m.seq for m in played] == list(range(1, len(played) + 1))


def test_an_ollama_recording_starts_its_stream_at_the_recorded_time() -> None:
    records = list(read_records([read_example("ollama_chat.ndjson")], RecordingReader()))
    first_time, first = records[0]
    assert isinstance(first, BlocksMessage) and first.created == first_time
    assert all(t is not None for t, _ in records)


def test_a_capture_is_recognised_and_its_receive_times_read() -> None:
    hello = encode(HelloMessage(epoch="e1", sessions=["default"]))
    messages = list(convert([read_example("openai_chat_parallel_tools.sse")]))
    lines = [hello] + [encode(m)[:-1] + b',"received":%.3f}' % (100 + n / 10)
                       for n, m in enumerate(messages)]
    data = b"\n".join(lines) + b"\n"
    reader = RecordingReader()
    records = list(read_records([data[:5], data[5:]], reader))
    assert reader.kind == "capture"
    assert records[0] == (None, HelloMessage(epoch="e1", sessions=["default"]))
    assert [t for t, _ in records[1:]] == [pytest.approx(100 + n / 10)
                                           for n in range(len(messages))]
    assert [m for _, m in records[1:]] == messages


def test_a_bad_capture_line_names_its_line() -> None:
    hello = encode(HelloMessage(epoch="e1", sessions=["default"]))
    with pytest.raises(InputError, match=r"line 3: not a warpd message"):
        list(read_records([hello + b"\n\n{oops\n"], RecordingReader()))
    with pytest.raises(InputError, match=r"line 1: not a warpd message"):
        list(read_records([b'{"type": "ping"}\n'], RecordingReader("capture")))


def test_an_upstream_stream_with_a_bad_event_is_repaired_and_says_so() -> None:
    data = read_example("anthropic_thinking_tool.sse").replace(b'"index":1,', b'"index":9,', 1)
    records = list(read_records([data], RecordingReader()))
    final = records[-1][1]
    assert isinstance(final, BlocksMessage) and not final.aborted
    errors = [b.error for b in final.blocks if b.error is not None]
    assert errors and all(e.source == "input" for e in errors)
    assert errors[0].frame == 24 and errors[0].code == "delta-without-block"
    assert errors[0].message.startswith("text_delta for index 1, never started")


def test_empty_input_has_no_records() -> None:
    reader = RecordingReader()
    assert list(read_records([b"", b"\n \n"], reader)) == []
