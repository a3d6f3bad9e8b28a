"""The ``open`` control: a stream started before its first event, saying what was asked for."""

from __future__ import annotations

import msgspec

import warpd
from tests.daemon import Daemon
from tests.test_client import offline_final, same_result, sse_payloads
from tests.test_openai_chat import TEXT_WITH_USAGE
from warpd.blocks import is_final
from warpd.broker.mirror import StreamMirror
from warpd.ingest.producer import ProducerStreams
from warpd.protocol import StreamRequest, decode_control, encode_control

ASKED = StreamRequest(model="gpt-4o", prompt="Say hello")


def producer() -> ProducerStreams:
    counter = iter(range(1, 100))
    return ProducerStreams("s", "openai", lambda: f"s/{next(counter)}", clock=lambda: 1.0)


def test_open_announces_the_stream_with_its_request_before_any_event() -> None:
    streams = producer()
    (first,) = streams.open(ASKED)
    assert first.streaming and not first.complete and first.blocks == []
    assert first.request == ASKED and first.created == 1.0 and first.stream == "s/1"
    assert streams.live is not None and streams.live.snapshot().request == ASKED
    messages = [m for e in TEXT_WITH_USAGE.split(b"\n\n") for m in streams.feed(e)]
    # Announced once: the first delta message does not repeat it; the final carries it.
    assert all(m.request is None for m in messages[:-1])
    final = messages[-1]
    assert is_final(final) and final.request == ASKED and final.stream == "s/1"
    assert same_result(final, offline_final(TEXT_WITH_USAGE))
    # The next stream, not opened, has no request.
    later = [m for e in TEXT_WITH_USAGE.split(b"\n\n") for m in streams.feed(e)]
    assert later[0].stream == "s/2" and all(m.request is None for m in later)


def test_open_while_a_stream_is_live_completes_it_first() -> None:
    streams = producer()
    events = TEXT_WITH_USAGE.split(b"\n\n")
    for event in events[:2]:
        streams.feed(event)
    previous, announced = streams.open(ASKED)
    assert is_final(previous) and previous.aborted and previous.stream == "s/1"
    assert announced.stream == "s/2" and announced.request == ASKED


def test_input_ending_right_after_open_aborts_the_stream() -> None:
    streams = producer()
    streams.open(ASKED)
    (final,) = streams.end()
    assert final.aborted and final.abort_reason == "input ended before the stream's first event"
    assert final.request == ASKED and final.blocks == []


def test_control_frame_round_trip_and_old_frames_still_decode() -> None:
    frame = encode_control("open", request=ASKED)
    assert frame.startswith(b'{"warpd":"open"')
    assert decode_control(frame).request == ASKED
    assert decode_control(b'{"warpd":"end"}').request is None


def test_the_mirror_keeps_the_request_for_snapshots_and_aborts() -> None:
    streams = producer()
    mirror = StreamMirror()
    for message in streams.open(ASKED) + streams.feed(TEXT_WITH_USAGE.split(b"\n\n")[0]):
        mirror.apply(message)
    assert mirror.snapshot("s", "s/1").request == ASKED
    assert mirror.aborted("s", "s/1", "gone").request == ASKED


def test_subscribers_see_the_request_first_and_late_joiners_in_the_snapshot(
    daemon: Daemon,
) -> None:
    early = daemon.subscriber("--session", "asked")
    late = None
    try:
        with warpd.Client(daemon.address).stream(session="asked", format="openai") as s:
            s.open(ASKED)
            first = early.read_message()
            late = daemon.subscriber("--session", "asked")
            snapshot = late.read_message()
            for event in sse_payloads(TEXT_WITH_USAGE):
                s.push(event)
        rest = early.messages_until_final()
    finally:
        early.close()
        if late is not None:
            late.close()
    assert first["type"] == "blocks" and first["blocks"] == []
    assert first["request"] == {"model": "gpt-4o", "prompt": "Say hello"}
    assert snapshot["type"] == "snapshot" and snapshot["request"] == first["request"]
    assert "request" not in rest[0]
    assert rest[-1]["request"] == first["request"]
    assert s.final.request == ASKED and not s.final.aborted
    assert msgspec.to_builtins(s.final.blocks[0])["text"] == "Hello wörld ✓"


def test_abort_with_a_reason_and_the_connection_goes_on(daemon: Daemon) -> None:
    with warpd.Client(daemon.address).stream(session="asked", format="openai") as s:
        s.open(ASKED)
        for event in sse_payloads(TEXT_WITH_USAGE)[:2]:
            s.push(event)
        s.abort("the client disconnected mid-stream")
        for event in sse_payloads(TEXT_WITH_USAGE):
            s.push(event)
    aborted, whole = s.finals
    assert aborted.aborted and aborted.abort_reason == "the client disconnected mid-stream"
    assert aborted.request == ASKED
    assert not whole.aborted and whole.request is None


def test_finish_completes_the_stream_and_keeps_the_connection(daemon: Daemon) -> None:
    events = sse_payloads(TEXT_WITH_USAGE)
    with warpd.Client(daemon.address).stream(session="kept", format="openai") as s:
        s.open(ASKED)
        # Every choice finished, no [DONE]: complete, as the end of input says.
        for event in events[:-1]:
            s.push(event)
        s.finish()
        s.open(None)
        for event in events[:3]:
            s.push(event)
        s.finish()
    whole, cut = s.finals
    assert not whole.aborted and whole.request == ASKED
    assert cut.aborted and cut.abort_reason == "input ended before finish_reason or [DONE]"
    assert daemon.log().count("push session=kept") == 1
