"""StreamMirror: snapshots rebuilt from the wire messages equal the assembler's own.

Every recorded fixture and hand-made stream goes through ``convert``; after
each message, the mirror (fed the bytes subscribers get, decoded) must give
the snapshot the producing assembler gives at that moment, except ``usage``,
which only travels on final messages.
"""

from __future__ import annotations

import copy
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import fixture_files
from tests.ingest_streams import HAND_MADE
from warpd.blocks import BlockAssembler, is_final
from warpd.broker.mirror import StreamMirror
from warpd.ingest.convert import convert
from warpd.protocol import (
    Block,
    BlocksMessage,
    SnapshotMessage,
    StreamMessage,
    decode_server_message,
    encode,
)

FORMATS = {".sse": "auto", ".jsonl": "auto", ".ndjson": "auto"}


def wire(message: StreamMessage) -> StreamMessage:
    """The message as a subscriber decodes it from the bytes sent."""
    decoded = decode_server_message(encode(message))
    assert isinstance(decoded, BlocksMessage | SnapshotMessage)
    return decoded


def expected_snapshot(assembler: BlockAssembler) -> SnapshotMessage:
    """The assembler's snapshot as it goes on the wire, without usage (never on live messages)."""
    snapshot = wire(assembler.snapshot())
    assert isinstance(snapshot, SnapshotMessage)
    snapshot.usage = None
    return snapshot


def recorded(data: bytes, format: str) -> list[tuple[StreamMessage, SnapshotMessage | None]]:
    """Each message of ``data`` with the assembler's snapshot right after it (None once done)."""
    assemblers: dict[str, BlockAssembler] = {}
    out: list[tuple[StreamMessage, SnapshotMessage | None]] = []
    for message in convert([data], format=format, errors="message",
                           on_start=lambda a: assemblers.__setitem__(a.stream, a)):
        assembler = assemblers[message.stream]
        out.append((wire(message), None if assembler.done else expected_snapshot(assembler)))
    return out


def check_mirror_follows(data: bytes, format: str) -> None:
    mirror = StreamMirror()
    steps = recorded(data, format)
    assert steps, "the stream made no message"
    for message, expected in steps:
        mirror.apply(message)
        if expected is None:
            assert message.stream not in mirror.live(message.session)
        else:
            assert mirror.snapshot(message.session, message.stream) == expected
            assert not mirror.is_partial(message.session, message.stream)
    assert mirror.live("default") == []


@pytest.mark.parametrize("path", fixture_files("*.sse", "*.jsonl", "*.ndjson"))
def test_mirror_snapshots_equal_the_assembler_on_recorded_streams(path: Path) -> None:
    check_mirror_follows(path.read_bytes(), FORMATS[path.suffix])


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_mirror_snapshots_equal_the_assembler_on_hand_made_streams(name: str) -> None:
    format, data = HAND_MADE[name]
    check_mirror_follows(data, format)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(HAND_MADE)), data=st.data())
def test_a_mirror_that_starts_from_a_snapshot_ends_where_the_full_one_does(
    name: str, data: st.DataObject
) -> None:
    """A daemon that joined late (rebuilt from a snapshot) mirrors the rest exactly."""
    format, stream_bytes = HAND_MADE[name]
    steps = recorded(stream_bytes, format)
    join = data.draw(st.integers(0, len(steps) - 1), label="join after message")
    message, snapshot = steps[join]
    late = StreamMirror()
    if snapshot is not None:
        late.apply(snapshot)
    for later, expected in steps[join + 1 :]:
        late.apply(later)
        if expected is not None and later.stream == message.stream:
            assert late.snapshot(later.session, later.stream) == expected


def test_mirror_tracks_several_sessions_and_streams_in_start_order() -> None:
    mirror = StreamMirror()

    def text(session: str, stream: str, value: str, *, complete: bool = False,
             created: float | None = None) -> BlocksMessage:
        return BlocksMessage(
            session=session, stream=stream, seq=0, streaming=True, complete=False,
            blocks=[Block(id=f"{stream}/0", index=0, type="text", streaming=not complete,
                          complete=complete, text=value)],
            created=created,
        )

    mirror.apply(text("a", "a/2", "x", created=1.0))
    mirror.apply(text("a", "a/1", "y", created=2.0))
    mirror.apply(text("b", "b/1", "z"))
    assert mirror.live("a") == ["a/2", "a/1"]
    # b/1's first message (with created) was never seen: its snapshot lacks the start.
    assert mirror.is_partial("b", "b/1") and not mirror.is_partial("a", "a/1")
    mirror.apply(text("a", "a/2", "yz", complete=True))
    snap = mirror.snapshot("a", "a/2")
    assert [(b.text, b.complete, b.streaming) for b in snap.blocks] == [("yz", True, False)]
    final = msgspec.structs.replace(text("a", "a/2", "yz", complete=True),
                                    streaming=False, complete=True)
    assert is_final(final)
    mirror.apply(final)
    assert mirror.live("a") == ["a/1"]
    mirror.discard("a", "a/1")
    mirror.discard("b", "b/1")
    assert mirror.live("a") == mirror.live("b") == []
    with pytest.raises(KeyError):
        mirror.snapshot("a", "a/1")


def test_a_long_stream_costs_one_append_per_message() -> None:
    """O(delta): the parts are joined once per snapshot, not once per message."""
    mirror = StreamMirror()
    for i in range(20_000):
        mirror.apply(BlocksMessage(
            session="s", stream="s/1", seq=0, streaming=True, complete=False,
            blocks=[Block(id="s/1/0", index=0, type="text", streaming=True, complete=False,
                          text=f"{i},")],
            created=1.0 if i == 0 else None,
        ))
    [block] = mirror.snapshot("s", "s/1").blocks
    assert block.text == "".join(f"{i}," for i in range(20_000))


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_aborted_from_the_mirror_is_the_assemblers_abort(name: str) -> None:
    """At every point of a stream, the mirror's aborted final equals ``assembler.abort()``.

    Except ``usage`` and ``finish_reason(s)``, which only travel on final messages.
    """
    format, data = HAND_MADE[name]
    assemblers: dict[str, BlockAssembler] = {}
    mirror = StreamMirror()
    for message in convert([data], format=format, errors="message",
                           on_start=lambda a: assemblers.__setitem__(a.stream, a)):
        mirror.apply(wire(message))
        assembler = assemblers[message.stream]
        if assembler.done:
            continue
        expected = wire(copy.deepcopy(assembler).abort("gone"))
        assert isinstance(expected, BlocksMessage)
        expected.usage = expected.finish_reason = expected.finish_reasons = None
        got = wire(mirror.aborted(message.session, message.stream, "gone"))
        assert got == expected, name
