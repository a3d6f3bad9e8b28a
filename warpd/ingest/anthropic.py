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

Out-of-order events (a delta for a block never started or already stopped, a
delta of the wrong kind for its block) raise :class:`InputError`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from warpd.errors import InputError
from warpd.ingest.base import UpstreamDecoder, decode_json
from warpd.ingest.deltas import (
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


class _Message(msgspec.Struct):
    model: str | None = None
    usage: dict[str, Any] | None = None


class _Error(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class _Event(msgspec.Struct):
    type: str
    index: int | None = None
    message: _Message | None = None
    # Kept raw: decoded by the handler of the event type that has them.
    content_block: msgspec.Raw = msgspec.Raw()
    delta: msgspec.Raw = msgspec.Raw()
    usage: dict[str, Any] | None = None
    error: _Error | None = None


class _BlockDelta(msgspec.Struct):
    """The ``delta`` of a content_block_delta or of a message_delta."""

    type: str = ""
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    citation: dict[str, Any] | None = None
    stop_reason: str | None = None


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
_delta_decoder = msgspec.json.Decoder(_BlockDelta)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_json_encoder = msgspec.json.Encoder()
_WHAT = "Anthropic stream event"

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

_Kind = Literal["text", "thinking", "tool", "whole"]


class _OpenBlock:
    """A content block between its start and stop, as the decoder tracks it."""

    __slots__ = ("kind", "upstream_type", "got_input", "start_input", "signature")

    def __init__(self, kind: _Kind, upstream_type: str) -> None:
        self.kind: _Kind = kind
        self.upstream_type = upstream_type
        # Whether input_json_delta fragments came (else a non-empty start
        # input, as some gateways send, is the whole input).
        self.got_input = False
        self.start_input: Any = None
        self.signature = ""


class AnthropicDecoder(UpstreamDecoder):
    """Decodes Anthropic Messages stream events (see the module docstring)."""

    name = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._open: dict[int, _OpenBlock] = {}
        self._used: set[int] = set()
        self._stop_reason_seen = False

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

    def feed(self, payload: bytes) -> list[Delta]:
        event: _Event = decode_json(_event_decoder, payload, _WHAT)
        kind = event.type
        out: list[Delta] = []
        if kind == "content_block_delta":
            self._on_block_delta(event, out)
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

    def end_of_input(self) -> list[Delta]:
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
            raise InputError("Anthropic message_start without its message")
        if message.model is not None or message.usage:
            out.append(StreamInfo(model=message.model, usage=message.usage or None))

    def _on_message_delta(self, event: _Event, out: list[Delta]) -> None:
        if event.usage:
            out.append(StreamInfo(usage=event.usage))
        if not event.delta:
            return
        delta: _BlockDelta = _decode_part(_delta_decoder, event.delta, "message_delta's delta")
        if delta.stop_reason is not None:
            # The message is over: a block still open was cut (max_tokens
            # stops a tool's input mid-JSON without a content_block_stop).
            self._truncate_open(out)
            self._stop_reason_seen = True
            out.append(ChoiceFinish(0, delta.stop_reason))

    def _on_block_start(self, event: _Event, out: list[Delta]) -> None:
        index = self._index(event)
        if index in self._used:
            raise InputError(f"Anthropic content_block_start for index {index}, already started")
        if not event.content_block:
            raise InputError(f"Anthropic content_block_start for index {index} without its block")
        block: dict[str, Any] = _decode_part(
            _dict_decoder, event.content_block, "content_block_start's content_block"
        )
        btype = block.get("type")
        if not isinstance(btype, str):
            raise InputError(
                f"Anthropic content_block_start for index {index}: content_block has no type"
            )
        self._used.add(index)
        if btype == "text":
            text = _convert(block, _TextBlock, btype)
            self._open[index] = _OpenBlock("text", btype)
            out.append(BlockOpen(index, "text"))
            if text.text:
                out.append(TextDelta(index, "text", text.text))
            for citation in text.citations or ():
                out.append(BlockData(index, "citations", citation, append=True))
        elif btype == "thinking":
            thinking = _convert(block, _ThinkingBlock, btype)
            self._open[index] = _OpenBlock("thinking", btype)
            out.append(BlockOpen(index, "reasoning"))
            if thinking.thinking:
                out.append(TextDelta(index, "reasoning", thinking.thinking))
            if thinking.signature:
                self._open[index].signature = thinking.signature
                out.append(BlockData(index, "signature", thinking.signature))
        elif btype == "redacted_thinking":
            self._open[index] = _OpenBlock("whole", btype)
            data = {k: v for k, v in block.items() if k != "type"}
            out.append(BlockOpen(index, "reasoning", upstream_type=btype, data=data or None))
        elif btype.endswith("tool_use"):
            tool = _convert(block, _ToolBlock, btype)
            state = _OpenBlock("tool", btype)
            state.start_input = tool.input
            self._open[index] = state
            upstream = None if btype == "tool_use" else btype
            extra = {k: v for k, v in block.items() if k not in ("type", "id", "name", "input")}
            out.append(
                BlockOpen(
                    index,
                    "tool_call",
                    upstream_type=upstream,
                    data=extra if upstream is not None and extra else None,
                    call_id=tool.id,
                    name=tool.name,
                )
            )
        else:
            # A result that arrives whole (web_search_tool_result, …) or a block
            # type newer than this decoder: pass it through as it is.
            self._open[index] = _OpenBlock("whole", btype)
            out.append(BlockOpen(index, "text", upstream_type=btype, data=block))

    def _on_block_delta(self, event: _Event, out: list[Delta]) -> None:
        index = self._index(event)
        block = self._open.get(index)
        if block is None:
            state = "already stopped" if index in self._used else "never started"
            raise InputError(f"Anthropic content_block_delta for index {index}, {state}")
        if not event.delta:
            raise InputError(f"Anthropic content_block_delta for index {index} without its delta")
        delta: _BlockDelta = _decode_part(
            _delta_decoder, event.delta, "content_block_delta's delta"
        )
        dtype = delta.type
        if dtype == "text_delta":
            self._expect(block, ("text", "whole"), dtype, index)
            if delta.text:
                out.append(TextDelta(index, "text", delta.text))
        elif dtype == "input_json_delta":
            self._expect(block, ("tool",), dtype, index)
            if delta.partial_json:
                block.got_input = True
                out.append(ToolCallDelta(index, delta.partial_json))
        elif dtype == "thinking_delta":
            self._expect(block, ("thinking",), dtype, index)
            if delta.thinking:
                out.append(TextDelta(index, "reasoning", delta.thinking))
        elif dtype == "signature_delta":
            if delta.signature:
                # One signature_delta is the norm; should one come in parts, the
                # data field holds the signature so far, never a fragment.
                block.signature += delta.signature
                out.append(BlockData(index, "signature", block.signature))
        elif dtype == "citations_delta":
            if delta.citation is not None:
                out.append(BlockData(index, "citations", delta.citation, append=True))
        else:
            # A delta type newer than this decoder: keep it in the block's data.
            raw: dict[str, Any] = _decode_part(
                _dict_decoder, event.delta, "content_block_delta's delta"
            )
            out.append(BlockData(index, dtype or "deltas", raw, append=True))

    def _on_block_stop(self, event: _Event, out: list[Delta]) -> None:
        index = self._index(event)
        block = self._open.pop(index, None)
        if block is None:
            state = "already stopped" if index in self._used else "never started"
            raise InputError(f"Anthropic content_block_stop for index {index}, {state}")
        if block.kind == "tool" and not block.got_input:
            # No (non-empty) fragment came: the start's input is the whole
            # input — `{}` for a tool without parameters, as the SDK says.
            start = block.start_input
            if start is None and block.upstream_type == "tool_use":
                start = {}
            if start is not None:
                out.append(ToolCallDelta(index, _json_encoder.encode(start).decode()))
        out.append(BlockDone(index))

    # -- helpers --------------------------------------------------------------

    def _truncate_open(self, out: list[Delta]) -> None:
        for index in self._open:
            out.append(BlockDone(index, truncated=True))
        self._open.clear()

    @staticmethod
    def _index(event: _Event) -> int:
        if event.index is None:
            raise InputError(f"Anthropic {event.type} without the index of its content block")
        return event.index

    @staticmethod
    def _expect(block: _OpenBlock, kinds: tuple[_Kind, ...], dtype: str, index: int) -> None:
        if block.kind not in kinds:
            raise InputError(f"Anthropic {dtype} for index {index}, a {block.upstream_type} block")


def _decode_part(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw, what: str) -> Any:
    """Decode a part of an event kept raw; ``what`` names it for the error."""
    return decode_json(decoder, bytes(raw), f"Anthropic {what}")


def _convert(block: dict[str, Any], struct: type[Any], btype: str) -> Any:
    """Read a content block (already decoded) as ``struct``; InputError if its fields are wrong."""
    try:
        return msgspec.convert(block, struct)
    except msgspec.ValidationError as exc:
        raise InputError(f"not a valid Anthropic {btype} content block: {exc}") from None
