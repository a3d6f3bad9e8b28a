"""BlockAssembler: normalized deltas in, block messages out.

Every rule of block state lives here: block ids and indexes, streaming →
complete, tool-call argument accumulation and validation, per-choice finish,
the stream's end and its abort. Decoders only say what the provider sent.

Cost per delta is O(size of the delta): fragments are kept as lists of
parts and joined once, when a block completes (or for a snapshot).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import msgspec

from warpd.ingest.deltas import (
    MAX_INDEX,
    BlockData,
    BlockDone,
    BlockOpen,
    ChoiceFinish,
    Delta,
    StreamEnd,
    StreamInfo,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
)
from warpd.protocol import (
    Block,
    BlocksMessage,
    BlockType,
    ErrorInfo,
    SnapshotMessage,
    StreamMessage,
    StreamRequest,
    Tool,
    ToolFunction,
)

_json_validator = msgspec.json.Decoder()


class _BlockState:
    """A block as it grows: all its parts, and the parts not yet sent."""

    __slots__ = (
        "id",
        "index",
        "type",
        "choice",
        "parts",
        "pending",
        "call_id",
        "name",
        "call_type",
        "refusal",
        "truncated",
        "invalid_arguments",
        "free_form",
        "upstream_type",
        "data",
        "error",
        "complete",
    )

    def __init__(self, stream: str, index: int, type: BlockType, choice: int) -> None:
        self.id = f"{stream}/{index}"
        self.index = index
        self.type: BlockType = type
        self.choice = choice
        self.parts: list[str] = []
        self.pending: list[str] = []
        self.call_id = ""
        self.name = ""
        self.call_type = "function"
        self.refusal = False
        self.truncated = False
        self.invalid_arguments = False
        self.free_form = False
        self.upstream_type: str | None = None
        self.data: dict[str, Any] | None = None
        self.error: ErrorInfo | None = None
        self.complete = False

    def whole(self) -> str:
        """The whole value so far; collapses the parts so a second call is O(1)."""
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


class BlockAssembler:
    """Assembles one stream's deltas into block messages.

    Call :meth:`feed` with the deltas of each upstream event; it returns the
    message for the blocks that event changed, or ``None`` if nothing a
    subscriber sees changed. The stream ends when a ``StreamEnd`` delta is fed
    or :meth:`abort` is called: that returns the final message (every block
    whole and complete) and ``done`` becomes true; nothing may be fed after.
    ``seq`` and ``epoch`` of returned messages are left for the hub to set.
    ``request``, when the producer said what was asked for, rides on the
    stream's first message, its snapshots and its final message.

    :meth:`warn` adds an input irregularity as an ``error`` block that does
    not end the stream; at most ``max_warnings`` of them per stream, the rest
    counted in one last error block when the stream ends.
    """

    def __init__(
        self,
        session: str,
        stream: str,
        *,
        clock: Callable[[], float] = time.time,
        request: StreamRequest | None = None,
        max_warnings: int = 20,
    ) -> None:
        self.session = session
        self.stream = stream
        self.request = request
        self.created = clock()
        self.done = False
        self.model: str | None = None
        self.usage: dict[str, Any] | None = None
        self.final: BlocksMessage | None = None
        self._blocks: list[_BlockState] = []
        self._open: dict[Hashable, _BlockState] = {}
        self._changed: dict[int, _BlockState] = {}
        self._finish_reasons: dict[int, str | None] = {}
        self._sent_first = False
        self._model_changed = False
        self._max_warnings = max_warnings
        self.warnings = 0
        self._handlers: dict[type, Callable[[Any], None]] = {
            TextDelta: self._on_text,
            ToolCallDelta: self._on_tool_call,
            BlockOpen: self._on_open,
            BlockData: self._on_data,
            BlockDone: self._on_done,
            ChoiceFinish: self._on_choice_finish,
            StreamInfo: self._on_info,
            UpstreamError: self._on_error,
        }

    # -- public API ---------------------------------------------------------

    def feed(self, deltas: Iterable[Delta]) -> BlocksMessage | None:
        """Apply one upstream event's deltas; return the message they make, if any."""
        if self.done:
            raise RuntimeError(f"stream {self.stream} is complete; start a new assembler")
        handlers = self._handlers
        for delta in deltas:
            if type(delta) is StreamEnd:
                return self._finish(delta.aborted, delta.reason, delta.finish_reason)
            handlers[type(delta)](delta)
        if not self._changed and not self._model_changed:
            return None
        return self._delta_message()

    def announce(self) -> BlocksMessage:
        """The stream's first message, before any event: no blocks, its ``created`` and ``request``.

        For a producer that opens a stream ahead of its first event (``open``),
        so subscribers see at once what was asked for. Call it at most once,
        before :meth:`feed`.
        """
        self._sent_first = True
        return BlocksMessage(
            session=self.session,
            stream=self.stream,
            seq=0,
            streaming=True,
            complete=False,
            blocks=[],
            created=self.created,
            request=self.request,
        )

    def abort(self, reason: str, *, error: ErrorInfo | None = None) -> BlocksMessage:
        """End the stream as aborted (producer gone, bad input, shutdown).

        With ``error``, an ``error`` block saying it is added first. Returns the
        final message.
        """
        if error is not None:
            self._add_error(error)
        return self._finish(True, reason, None)

    def warn(self, message: str, code: str, frame: int | None = None) -> None:
        """Record an input irregularity: an ``error`` block (``source: input``); the stream goes on.

        The block goes out with the next message :meth:`feed` returns (feed
        ``[]`` to have one now). Past ``max_warnings`` in this stream only a
        count is kept (one error block says how many when the stream ends).
        """
        if self.done:
            raise RuntimeError(f"stream {self.stream} is complete; start a new assembler")
        self.warnings += 1
        if self.warnings > self._max_warnings:
            return
        if self.warnings == self._max_warnings:
            message += (
                f" (the last input warning shown for this stream: {self._max_warnings} is the "
                "limit, ingest.max_warnings; later ones are counted)"
            )
        self._add_error(ErrorInfo(message, "input", code, frame))

    def snapshot(self) -> SnapshotMessage:
        """Every block so far, whole, for a subscriber that joins mid-stream."""
        blocks = [self._block(b, whole=True) for b in self._blocks]
        return SnapshotMessage(
            session=self.session,
            stream=self.stream,
            seq=0,
            streaming=not self.done,
            complete=self.done,
            blocks=blocks,
            created=self.created,
            model=self.model,
            usage=self.usage,
            request=self.request,
        )

    # -- delta handlers -----------------------------------------------------

    def _block_for(self, key: Hashable, type: BlockType, choice: int) -> _BlockState:
        block = self._open.get(key)
        if block is None:
            block = _BlockState(self.stream, len(self._blocks), type, choice)
            self._blocks.append(block)
            self._open[key] = block
        self._changed[block.index] = block
        return block

    def _on_text(self, delta: TextDelta) -> None:
        block = self._block_for(delta.key, delta.kind, delta.choice)
        if delta.refusal:
            block.refusal = True
        if delta.text:
            block.parts.append(delta.text)
            block.pending.append(delta.text)

    def _on_tool_call(self, delta: ToolCallDelta) -> None:
        block = self._block_for(delta.key, "tool_call", delta.choice)
        # Providers that repeat id/type/name on every fragment send the same
        # value again: replace, never concatenate.
        if delta.call_id:
            block.call_id = delta.call_id
        if delta.name:
            block.name = delta.name
        if delta.call_type:
            block.call_type = delta.call_type
        if delta.upstream_type:
            block.upstream_type = delta.upstream_type
        if delta.free_form:
            block.free_form = True
        if delta.arguments:
            block.parts.append(delta.arguments)
            block.pending.append(delta.arguments)

    def _on_open(self, delta: BlockOpen) -> None:
        block = self._block_for(delta.key, delta.kind, delta.choice)
        if delta.upstream_type:
            block.upstream_type = delta.upstream_type
        if delta.data:
            block.data = {**(block.data or {}), **delta.data}
        if delta.call_id:
            block.call_id = delta.call_id
        if delta.name:
            block.name = delta.name

    def _on_data(self, delta: BlockData) -> None:
        block = self._open.get(delta.key)
        if block is None:
            return
        data = block.data if block.data is not None else {}
        block.data = data
        if delta.append:
            data.setdefault(delta.field, []).append(delta.value)
        else:
            data[delta.field] = delta.value
        self._changed[block.index] = block

    def _on_done(self, delta: BlockDone) -> None:
        block = self._open.pop(delta.key, None)
        if block is not None:
            self._complete(block, truncated=delta.truncated)

    def _on_choice_finish(self, delta: ChoiceFinish) -> None:
        self._finish_reasons[delta.choice] = delta.reason
        for key, block in list(self._open.items()):
            if block.choice == delta.choice:
                del self._open[key]
                self._complete(block)

    def _on_info(self, delta: StreamInfo) -> None:
        if delta.model is not None and delta.model != self.model:
            self.model = delta.model
            self._model_changed = True
        if delta.usage:
            self.usage = {**(self.usage or {}), **delta.usage}

    def _on_error(self, delta: UpstreamError) -> None:
        self._add_error(ErrorInfo(delta.message, "provider", delta.code))

    # -- state rules --------------------------------------------------------

    def _add_error(self, error: ErrorInfo) -> None:
        block = _BlockState(self.stream, len(self._blocks), "error", 0)
        block.parts.append(error.message)
        block.error = error
        self._blocks.append(block)
        self._complete(block)

    def _complete(self, block: _BlockState, *, truncated: bool = False) -> None:
        block.complete = True
        block.truncated = block.truncated or truncated
        if block.type == "tool_call" and not block.free_form:
            arguments = block.whole()
            if arguments.strip():
                try:
                    _json_validator.decode(arguments)
                except (msgspec.DecodeError, RecursionError):
                    # Too deep for the parser counts as invalid: it is not
                    # JSON any tool will read either.
                    block.invalid_arguments = True
        self._changed[block.index] = block

    def _finish(
        self, aborted: bool, reason: str | None, finish_reason: str | None
    ) -> BlocksMessage:
        unshown = self.warnings - self._max_warnings
        if unshown > 0:
            self._add_error(
                ErrorInfo(
                    f"{unshown} more input irregularities in this stream were not shown "
                    f"(ingest.max_warnings is {self._max_warnings})",
                    "input",
                    "more-irregularities",
                )
            )
        for block in self._open.values():
            # Blocks still open when an aborted stream ends were cut short.
            self._complete(block, truncated=aborted)
        self._open.clear()
        self._changed.clear()
        self.done = True
        reasons = self._finish_reasons
        if finish_reason is None and reasons:
            finish_reason = reasons.get(0, next(iter(reasons.values())))
        several = len(reasons) > 1 or any(c != 0 for c in reasons)
        message = BlocksMessage(
            session=self.session,
            stream=self.stream,
            seq=0,
            streaming=False,
            complete=True,
            blocks=[self._block(b, whole=True) for b in self._blocks],
            created=self.created,
            model=self.model,
            finish_reason=finish_reason,
            # Laid out by choice index, which decoders bound by MAX_INDEX (a
            # bigger one is bad input); the check keeps that promise here too.
            finish_reasons=(
                [reasons.get(c) for c in range(max(reasons) + 1)]
                if several and 0 <= min(reasons) and max(reasons) <= MAX_INDEX
                else None
            ),
            usage=self.usage,
            aborted=aborted,
            abort_reason=(reason or "stream ended without its end marker") if aborted else None,
            request=self.request,
        )
        self.final = message
        return message

    def _delta_message(self) -> BlocksMessage:
        changed = self._changed
        if len(changed) == 1:
            (block,) = changed.values()
            blocks = [self._block(block, whole=block.complete)]
            block.pending = []
        else:
            blocks = [self._block(changed[i], whole=changed[i].complete) for i in sorted(changed)]
            for block in changed.values():
                block.pending = []
        self._changed = {}
        if self._sent_first and not self._model_changed:
            # The common case, built positionally: this runs once per upstream event.
            return BlocksMessage(self.session, self.stream, 0, True, False, blocks)
        first = not self._sent_first
        self._sent_first = True
        model_changed, self._model_changed = self._model_changed, False
        return BlocksMessage(
            session=self.session,
            stream=self.stream,
            seq=0,
            streaming=True,
            complete=False,
            blocks=blocks,
            created=self.created if first else None,
            model=self.model if (first or model_changed) else None,
            request=self.request if first else None,
        )

    def _block(self, block: _BlockState, *, whole: bool) -> Block:
        """The wire form of a block: its whole value, or the fragment since the last message."""
        if whole:
            value = block.whole()
        else:
            pending = block.pending
            value = pending[0] if len(pending) == 1 else "".join(pending)
        complete = block.complete
        # Positional arguments, in Block's field order: this runs per delta.
        if block.type == "tool_call":
            tool = Tool(block.call_id, block.call_type, ToolFunction(block.name, value))
            return Block(
                block.id, block.index, "tool_call", not complete, complete, None, tool, None,
                block.choice, False, block.invalid_arguments, block.truncated,
                block.upstream_type, block.data,
            )
        return Block(
            block.id, block.index, block.type, not complete, complete, value, None, block.error,
            block.choice, block.refusal, False, block.truncated, block.upstream_type, block.data,
        )


def is_final(message: StreamMessage) -> bool:
    """Whether ``message`` is a stream's last message."""
    return message.complete and not message.streaming
