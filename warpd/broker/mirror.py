"""StreamMirror: live streams rebuilt from their block messages, for snapshots anywhere.

A daemon that shares sessions through Redis receives the messages of streams
other daemons assemble; it has no BlockAssembler for them, yet a subscriber
that joins mid-stream (or falls behind) needs a snapshot of each live stream.
The mirror applies the messages every subscriber gets — fragments while a
block streams, its whole value in the message that completes it — and gives
the snapshot the producing daemon's ``BlockAssembler.snapshot()`` would give.

One exception, by construction: ``usage`` only travels on a stream's final
message, so a mirror's snapshot of a live stream has none, where the
assembler's may already have it.

Sans-I/O and O(size of the message) per message: fragments are kept as lists
of parts and joined only when a snapshot is taken (and then collapsed, so the
next snapshot does not join them again).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from warpd.protocol import (
    Block,
    BlocksMessage,
    SnapshotMessage,
    StreamMessage,
    StreamRequest,
    Tool,
    ToolFunction,
)

_json_validator = msgspec.json.Decoder()


class _MirroredBlock:
    """A block as subscribers know it: its latest wire form and every part of its value."""

    __slots__ = ("last", "parts")

    def __init__(self, last: Block, parts: list[str]) -> None:
        self.last = last
        self.parts = parts

    def whole(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


class _MirroredStream:
    __slots__ = ("session", "stream", "created", "model", "request", "blocks", "partial")

    def __init__(self, session: str, stream: str, created: float | None) -> None:
        self.session = session
        self.stream = stream
        self.created = created
        self.model: str | None = None
        self.request: StreamRequest | None = None
        self.blocks: dict[int, _MirroredBlock] = {}
        # Its first message (the one with ``created``) was never applied, so
        # what came before is missing from the snapshot.
        self.partial = created is None


def _value(block: Block) -> str:
    """The text or tool arguments a wire block carries (a fragment or the whole)."""
    if block.type == "tool_call":
        return block.tool.function.arguments if block.tool is not None else ""
    return block.text or ""


def _with_value(block: Block, value: str) -> Block:
    """``block`` with its text (or tool arguments) replaced by ``value``."""
    if block.type == "tool_call":
        tool = block.tool or Tool()
        return msgspec.structs.replace(
            block, tool=Tool(tool.id, tool.type, ToolFunction(tool.function.name, value))
        )
    return msgspec.structs.replace(block, text=value)


class StreamMirror:
    """The live streams of any number of sessions, as their messages describe them.

    Call :meth:`apply` with every ``blocks`` or ``snapshot`` message, in seq
    order per session (decoded from the bytes subscribers get). A stream's
    final message removes it. :meth:`snapshot` gives a live stream's blocks
    so far, whole; :meth:`live` lists a session's live streams in the order
    they started. ``seq`` and ``epoch`` of snapshots are left for the caller.
    """

    def __init__(self) -> None:
        # session → stream id → state, in order of the streams' first messages.
        self._sessions: dict[str, dict[str, _MirroredStream]] = {}

    def apply(self, message: StreamMessage) -> None:
        """Update the mirror with one message of a stream."""
        streams = self._sessions.setdefault(message.session, {})
        if message.complete and not message.streaming:
            streams.pop(message.stream, None)
            if not streams:
                del self._sessions[message.session]
            return
        state = streams.get(message.stream)
        if isinstance(message, SnapshotMessage):
            # A snapshot holds the whole state: it replaces whatever we held.
            state = _MirroredStream(message.session, message.stream, message.created)
            state.partial = False
            streams[message.stream] = state
            for block in message.blocks:
                state.blocks[block.index] = _MirroredBlock(block, [_value(block)])
            if message.model is not None:
                state.model = message.model
            state.request = message.request
            return
        if state is None:
            state = streams[message.stream] = _MirroredStream(
                message.session, message.stream, message.created
            )
        if message.model is not None:
            state.model = message.model
        if message.request is not None:
            state.request = message.request
        blocks = state.blocks
        for block in message.blocks:
            value = _value(block)
            known = blocks.get(block.index)
            if known is None:
                blocks[block.index] = _MirroredBlock(block, [value])
            elif block.complete:
                # The message that completes a block carries its whole value.
                known.last = block
                known.parts = [value]
            else:
                known.last = block
                if value:
                    known.parts.append(value)

    def discard(self, session: str, stream: str) -> None:
        """Forget a stream (e.g. one whose producer's daemon vanished)."""
        streams = self._sessions.get(session)
        if streams is not None:
            streams.pop(stream, None)
            if not streams:
                del self._sessions[session]

    def live(self, session: str) -> list[str]:
        """The session's live stream ids, in the order they started."""
        return list(self._sessions.get(session, ()))

    def is_partial(self, session: str, stream: str) -> bool:
        """Whether the mirror missed the stream's beginning (its snapshot lacks what came first)."""
        return self._sessions[session][stream].partial

    def snapshot(self, session: str, stream: str) -> SnapshotMessage:
        """The live stream's blocks so far, whole; KeyError if it is not live here."""
        state = self._sessions[session][stream]
        blocks = [
            _with_value(state.blocks[index].last, state.blocks[index].whole())
            for index in sorted(state.blocks)
        ]
        return SnapshotMessage(
            session=session,
            stream=stream,
            seq=0,
            streaming=True,
            complete=False,
            blocks=blocks,
            created=state.created,
            model=state.model,
            request=state.request,
        )

    def aborted(self, session: str, stream: str, reason: str) -> BlocksMessage:
        """The final message that ends a live stream as aborted, from what the mirror holds.

        What the producing daemon's ``BlockAssembler.abort(reason)`` would
        give, but for ``usage`` and ``finish_reason`` (they never travel
        before a stream's end): every block whole and complete, those still
        streaming marked ``truncated``. It does not change the mirror: the
        final message, once published and applied, removes the stream.
        KeyError if the stream is not live here.
        """
        snapshot = self.snapshot(session, stream)
        blocks = []
        for block in snapshot.blocks:
            if block.complete:
                blocks.append(msgspec.structs.replace(block, streaming=False))
                continue
            invalid = False
            if block.type == "tool_call" and block.tool is not None:
                arguments = block.tool.function.arguments
                if arguments.strip():
                    try:
                        _json_validator.decode(arguments)
                    except msgspec.DecodeError:
                        invalid = True
            blocks.append(msgspec.structs.replace(
                block, streaming=False, complete=True, truncated=True,
                invalid_arguments=block.invalid_arguments or invalid,
            ))
        return BlocksMessage(
            session=session,
            stream=stream,
            seq=0,
            streaming=False,
            complete=True,
            blocks=blocks,
            created=snapshot.created,
            model=snapshot.model,
            request=snapshot.request,
            aborted=True,
            abort_reason=reason,
        )

    def snapshots(self, session: str) -> Iterator[SnapshotMessage]:
        """A snapshot of each live stream of ``session``, in the order they started."""
        for stream in self.live(session):
            yield self.snapshot(session, stream)
