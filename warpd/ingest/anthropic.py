"""Anthropic Messages stream events to deltas.

One event per call (the JSON ``data`` of an SSE event; the ``event:`` line only
repeats the JSON ``type``). Content blocks are keyed by their ``index``:

- ``text`` → a text block (``text_delta``); ``citations_delta`` appends to the
  block's ``data["citations"]``.
- ``thinking`` → a reasoning block (``thinking_delta``); ``signature_delta``
  sets ``data["signature"]``.
- ``redacted_thinking`` → a reasoning block with no text, its encrypted
  ``data`` passed through, ``upstream_type`` saying what it is.
- ``tool_use``, ``server_tool_use``, ``mcp_tool_use`` (any ``*tool_use``) → a
  tool call whose arguments are the ``input_json_delta`` fragments; blocks
  other than ``tool_use`` carry their ``upstream_type`` and extra fields.
- any other block type (``web_search_tool_result`` and the other results that
  arrive whole) → a text block with no text, the whole content block in
  ``data`` and its type in ``upstream_type``: passed through, never dropped.

``message_delta`` finishes choice 0 with the provider's ``stop_reason``
(``end_turn``, ``tool_use``, ``max_tokens``…); ``message_stop`` ends the
stream. A block still open at that point never got its ``content_block_stop``
(``max_tokens`` cut it): it completes flagged ``truncated``. An ``error`` event
ends the stream as aborted with an error block naming the provider's error
type and message. ``ping`` and event types this decoder does not know are
ignored, as Anthropic's versioning policy asks of clients.

Source: Anthropic's "Streaming Messages" documentation
(https://docs.anthropic.com/en/docs/build-with-claude/streaming).

Irregular events (proxies that re-stream these events get their order
wrong: a second ``message_start``, a ``thinking_delta`` in a text block, a
delta for a block never started) are repaired, keeping the most content, and
recorded: :attr:`AnthropicDecoder.irregularities_table` is the one list of
them and their repairs, besides the common ones (an event that cannot be
decoded is skipped, see ``COMMON_IRREGULARITIES``). An index over
``MAX_INDEX`` is a schema mismatch.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, Any, Literal

import msgspec

from warpd.errors import InputError
from warpd.ingest.base import UpstreamDecoder, json_text
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

_Kind = Literal["text", "thinking", "tool", "whole"]


class _Message(msgspec.Struct):
    model: str | None = None
    usage: dict[str, Any] | None = None


class _Error(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class _BlockDelta(msgspec.Struct):
    """The ``delta`` of a content_block_delta or of a message_delta."""

    type: str | None = ""
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    citation: dict[str, Any] | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    type: str
    index: Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)] | None = None
    message: _Message | None = None
    content_block: dict[str, Any] | None = None
    delta: _BlockDelta | None = None
    usage: dict[str, Any] | None = None
    error: _Error | None = None


class _RawDelta(msgspec.Struct):
    """An event read again for a delta type newer than this decoder, kept whole."""

    delta: dict[str, Any] | None = None


class _TextBlock(msgspec.Struct):
    text: str | None = None
    citations: list[Any] | None = None


class _ThinkingBlock(msgspec.Struct):
    thinking: str | None = None
    signature: str | None = None


class _ToolBlock(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    input: Any = None


_event_decoder = msgspec.json.Decoder(_Event)
_raw_delta_decoder = msgspec.json.Decoder(_RawDelta)
_WHAT = "Anthropic stream event"

# The block kind each content_block_delta type belongs in (for repairs).
_DELTA_KINDS: dict[str, _Kind] = {
    "text_delta": "text",
    "citations_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "thinking",
    "input_json_delta": "tool",
}

# The event types that only Anthropic's Messages stream sends.
_EVENT_TYPES = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
)



class _OpenBlock:
    """A content block between its start and stop, as the decoder tracks it."""

    __slots__ = ("key", "kind", "upstream_type", "got_input", "start_input", "signature", "beside")

    def __init__(self, key: Hashable, kind: _Kind, upstream_type: str) -> None:
        # The block key: the index, or (index, n) for a block started again at
        # an index already used (a key that completed must not be reopened).
        self.key = key
        self.kind: _Kind = kind
        self.upstream_type = upstream_type
        # Whether input_json_delta fragments came (else a non-empty start
        # input, as some gateways send, is the whole input).
        self.got_input = False
        self.start_input: Any = None
        self.signature = ""
        # Blocks opened beside this one for deltas of another kind, by kind.
        self.beside: dict[_Kind, Hashable] = {}


class AnthropicDecoder(UpstreamDecoder):
    """Decodes Anthropic Messages stream events (see the module docstring)."""

    name = "anthropic"
    irregularities_table = {
        "message-start-again": "a second message_start: model and usage kept, nothing restarts",
        "message-start-without-message": "message_start without its message: ignored",
        "block-start-while-open": "a start at an index still open: the open block completes "
        "truncated, a new one starts",
        "block-start-again": "a start at an index already stopped: a new block starts",
        "block-start-without-block": "content_block_start without a usable content_block: "
        "a text block starts",
        "block-fields": "a content block field of the wrong shape: read as absent",
        "delta-without-block": "a delta for an index not open: a block of the delta's kind starts",
        "delta-of-other-kind": "a delta of another kind than its block: it goes to a block of "
        "its own kind beside that block",
        "stop-without-block": "content_block_stop for an index not open: ignored",
        "missing-index": "a block event without index: skipped",
        "delta-without-delta": "content_block_delta without delta: skipped",
    }

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self._open: dict[int, _OpenBlock] = {}
        # How many blocks each index has had (a key that completed is never reused).
        self._used: dict[int, int] = {}
        self._stop_reason_seen = False
        self._message_started = False

    @classmethod
    def detect(cls, probe: dict[str, Any]) -> bool:
        kind = probe.get("type")
        if not isinstance(kind, str):
            return False
        if kind in _EVENT_TYPES:
            return True
        # Anthropic's error event nests {type, message} under "error"; the
        # Responses API's carries them at the top level, with a sequence number.
        return (
            kind == "error"
            and isinstance(probe.get("error"), dict)
            and "sequence_number" not in probe
        )

    def decode_event(self, payload: bytes) -> list[Delta]:
        event: _Event = self.decode_json(_event_decoder, payload, _WHAT)
        kind = event.type
        out: list[Delta] = []
        if kind == "content_block_delta":
            self._on_block_delta(event, payload, out)
        elif kind == "content_block_start":
            self._on_block_start(event, out)
        elif kind == "content_block_stop":
            self._on_block_stop(event, out)
        elif kind == "message_start":
            self._on_message_start(event, out)
        elif kind == "message_delta":
            self._on_message_delta(event, out)
        elif kind == "message_stop":
            self._truncate_open(out)
            self.ended = True
            out.append(StreamEnd())
        elif kind == "error":
            error = event.error or _Error()
            etype = error.type or "error"
            message = f"{etype}: {error.message or 'unknown error'}"
            self.ended = True
            out.append(UpstreamError(message, etype))
            out.append(StreamEnd(aborted=True, reason=f"provider error: {message}"))
        # ping, and event types added after this was written, carry nothing for us.
        return out

    def decode_end(self) -> list[Delta]:
        if self.ended:
            return []
        self.ended = True
        if self._stop_reason_seen:
            # The message said why it stopped; only message_stop is missing.
            return [StreamEnd()]
        return [StreamEnd(aborted=True, reason="input ended before message_stop")]

    # -- events ---------------------------------------------------------------

    def _on_message_start(self, event: _Event, out: list[Delta]) -> None:
        message = event.message
        if message is None:
            self.irregular(
                "message-start-without-message", "message_start without its message: ignored"
            )
            return
        if self._message_started:
            self.irregular(
                "message-start-again",
                "message_start inside a message that already started: its model and usage "
                "are kept, nothing restarts",
            )
        self._message_started = True
        if message.model is not None or message.usage:
            out.append(StreamInfo(model=message.model, usage=message.usage or None))

    def _on_message_delta(self, event: _Event, out: list[Delta]) -> None:
        if event.usage:
            out.append(StreamInfo(usage=event.usage))
        delta = event.delta
        if delta is not None and delta.stop_reason is not None:
            # The message is over: a block still open was cut (max_tokens
            # stops a tool's input mid-JSON without a content_block_stop).
            self._truncate_open(out)
            self._stop_reason_seen = True
            out.append(ChoiceFinish(0, delta.stop_reason))

    def _on_block_start(self, event: _Event, out: list[Delta]) -> None:
        index = self._index(event)
        block = event.content_block
        btype = block.get("type") if block is not None else None
        if not isinstance(btype, str) or not btype:
            self.irregular(
                "block-start-without-block",
                f"content_block_start for index {index} without a content_block type: "
                "started as a text block",
            )
            block, btype = {"type": "text"}, "text"
        assert block is not None
        if index in self._open:
            self.irregular(
                "block-start-while-open",
                f"content_block_start for index {index}, still open: the open block "
                "completes truncated, a new one starts",
            )
            self._close(index, out, truncated=True)
        elif index in self._used:
            self.irregular(
                "block-start-again",
                f"content_block_start for index {index}, already stopped: a new block starts",
            )
        key = self._new_key(index)
        if btype == "text":
            text = self._convert(block, _TextBlock, btype, index)
            self._open[index] = _OpenBlock(key, "text", btype)
            out.append(BlockOpen(key, "text"))
            if text.text:
                out.append(TextDelta(key, "text", text.text))
            for citation in text.citations or ():
                out.append(BlockData(key, "citations", citation, append=True))
        elif btype == "thinking":
            thinking = self._convert(block, _ThinkingBlock, btype, index)
            state = self._open[index] = _OpenBlock(key, "thinking", btype)
            out.append(BlockOpen(key, "reasoning"))
            if thinking.thinking:
                out.append(TextDelta(key, "reasoning", thinking.thinking))
            if thinking.signature:
                state.signature = thinking.signature
                out.append(BlockData(key, "signature", thinking.signature))
        elif btype == "redacted_thinking":
            self._open[index] = _OpenBlock(key, "whole", btype)
            data = {k: v for k, v in block.items() if k != "type"}
            out.append(BlockOpen(key, "reasoning", upstream_type=btype, data=data or None))
        elif btype.endswith("tool_use"):
            tool = self._convert(block, _ToolBlock, btype, index)
            state = _OpenBlock(key, "tool", btype)
            state.start_input = tool.input
            self._open[index] = state
            upstream = None if btype == "tool_use" else btype
            extra = {k: v for k, v in block.items() if k not in ("type", "id", "name", "input")}
            out.append(
                BlockOpen(
                    key,
                    "tool_call",
                    upstream_type=upstream,
                    data=extra if upstream is not None and extra else None,
                    call_id=tool.id or None,
                    name=tool.name or None,
                )
            )
        else:
            # A result that arrives whole (web_search_tool_result, …) or a block
            # type newer than this decoder: pass it through as it is.
            self._open[index] = _OpenBlock(key, "whole", btype)
            out.append(BlockOpen(key, "text", upstream_type=btype, data=block))

    def _on_block_delta(self, event: _Event, payload: bytes, out: list[Delta]) -> None:
        index = self._index(event)
        delta = event.delta
        if delta is None:
            raise InputError(
                f"Anthropic content_block_delta for index {index} without its delta",
                code="delta-without-delta",
            )
        dtype = delta.type or ""
        wanted = _DELTA_KINDS.get(dtype)
        block = self._open.get(index)
        if block is None:
            state = "already stopped" if index in self._used else "never started"
            kind: _Kind = wanted or "whole"
            self.irregular(
                "delta-without-block",
                f"{dtype or 'content_block_delta'} for index {index}, {state}: "
                f"a {_BLOCK_NAMES[kind]} block starts",
            )
            block = self._start_implied(index, kind, out)
        key = block.key
        if wanted is not None and wanted != block.kind and not (
            wanted == "text" and block.kind == "whole"
        ):
            key = self._beside(block, wanted, dtype, index, out)
        if dtype == "text_delta":
            if delta.text:
                out.append(TextDelta(key, "text", delta.text))
        elif dtype == "input_json_delta":
            if delta.partial_json:
                block.got_input = True
                out.append(ToolCallDelta(key, delta.partial_json))
        elif dtype == "thinking_delta":
            if delta.thinking:
                out.append(TextDelta(key, "reasoning", delta.thinking))
        elif dtype == "signature_delta":
            if delta.signature:
                # One signature_delta is the norm; should one come in parts, the
                # data field holds the signature so far, never a fragment.
                block.signature += delta.signature
                out.append(BlockData(key, "signature", block.signature))
        elif dtype == "citations_delta":
            if delta.citation is not None:
                out.append(BlockData(key, "citations", delta.citation, append=True))
        else:
            # A delta type newer than this decoder: keep it in the block's data.
            raw = self.decode_json(_raw_delta_decoder, payload, _WHAT).delta or {}
            out.append(BlockData(key, dtype or "deltas", raw, append=True))

    def _on_block_stop(self, event: _Event, out: list[Delta]) -> None:
        index = self._index(event)
        if index not in self._open:
            state = "already stopped" if index in self._used else "never started"
            self.irregular(
                "stop-without-block", f"content_block_stop for index {index}, {state}: ignored"
            )
            return
        self._close(index, out)

    # -- helpers --------------------------------------------------------------

    def _close(self, index: int, out: list[Delta], *, truncated: bool = False) -> None:
        """Complete the open block at ``index`` (and any block beside it)."""
        block = self._open.pop(index)
        if block.kind == "tool" and not block.got_input and not truncated:
            # No (non-empty) fragment came: the start's input is the whole
            # input — `{}` for a tool without parameters, as the SDK says.
            start = block.start_input
            if start is None and block.upstream_type == "tool_use":
                start = {}
            if start is not None:
                out.append(ToolCallDelta(block.key, json_text(start)))
        out.append(BlockDone(block.key, truncated=truncated))
        for key in block.beside.values():
            out.append(BlockDone(key, truncated=truncated))

    def _truncate_open(self, out: list[Delta]) -> None:
        for index in list(self._open):
            self._close(index, out, truncated=True)

    def _new_key(self, index: int) -> Hashable:
        uses = self._used.get(index, 0)
        self._used[index] = uses + 1
        return index if uses == 0 else (index, uses)

    def _start_implied(self, index: int, kind: _Kind, out: list[Delta]) -> _OpenBlock:
        """Start the block a delta implies when no content_block_start opened it."""
        key = self._new_key(index)
        block = self._open[index] = _OpenBlock(key, kind, _UPSTREAM_TYPES[kind])
        if kind == "tool":
            block.got_input = True  # no start input to fall back on
            out.append(BlockOpen(key, "tool_call"))
        else:
            out.append(BlockOpen(key, "reasoning" if kind == "thinking" else "text"))
        return block

    def _beside(
        self, block: _OpenBlock, kind: _Kind, dtype: str, index: int, out: list[Delta]
    ) -> Hashable:
        """The key of the block of ``kind`` beside ``block``, opened on its first delta."""
        key = block.beside.get(kind)
        if key is None:
            self.irregular(
                "delta-of-other-kind",
                f"{dtype} for index {index}, a {block.upstream_type} block: "
                f"shown in a {_BLOCK_NAMES[kind]} block beside it",
            )
            key = block.beside[kind] = ("beside", block.key, kind)
            out.append(BlockOpen(key, _BLOCK_KINDS[kind]))
        return key

    def _index(self, event: _Event) -> int:
        if event.index is None:
            raise InputError(
                f"Anthropic {event.type} without the index of its content block",
                code="missing-index",
            )
        return event.index

    def _convert(self, block: dict[str, Any], struct: type[Any], btype: str, index: int) -> Any:
        """Read a content block as ``struct``; fields of the wrong shape are read as absent."""
        try:
            return msgspec.convert(block, struct)
        except msgspec.ValidationError as exc:
            self.irregular(
                "block-fields",
                f"content_block_start for index {index}: not a valid Anthropic {btype} "
                f"content block ({exc}): its fields of the wrong shape are read as absent",
            )
        fields = {
            name: value
            for name, value in block.items()
            if name in struct.__struct_fields__ and _fits(value, struct, name)
        }
        return msgspec.convert(fields, struct)


# What each kind of block is called in messages, is made of, and was upstream.
_BLOCK_NAMES: dict[_Kind, str] = {
    "text": "text",
    "thinking": "reasoning",
    "tool": "tool call",
    "whole": "text",
}
_BLOCK_KINDS: dict[_Kind, Literal["text", "reasoning", "tool_call"]] = {
    "text": "text",
    "thinking": "reasoning",
    "tool": "tool_call",
    "whole": "text",
}
_UPSTREAM_TYPES: dict[_Kind, str] = {
    "text": "text",
    "thinking": "thinking",
    "tool": "tool_use",
    "whole": "text",
}


def _fits(value: Any, struct: type[Any], name: str) -> bool:
    """Whether ``value`` is a valid ``name`` field of ``struct``."""
    try:
        msgspec.convert({name: value}, struct)
    except msgspec.ValidationError:
        return False
    return True
