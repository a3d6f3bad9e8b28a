"""OpenAI chat-completions chunks (and OpenAI-compatible providers) to deltas.

Handles what real streams do: a role-only first chunk, ``content: null``,
parallel tool calls whose ``id``/``name`` come only in their first fragment,
n>1 interleaved choices, a usage chunk with empty ``choices``, ``refusal``,
``reasoning_content`` / ``reasoning`` deltas, ``data: [DONE]``, and providers'
quirks: tool-call fragments without ``index``, ``id``/``type``/``name``
repeated on every fragment, chunks without ``delta`` or with no ``choices``,
an argument fragment in the chunk that carries ``finish_reason``, and a
mid-stream ``{"error": …}`` object.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import msgspec

from warpd.ingest.base import UpstreamDecoder, decode_json
from warpd.ingest.deltas import (
    BlockDone,
    ChoiceFinish,
    Delta,
    StreamEnd,
    StreamInfo,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
)


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None
    function_call: _Function | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Error(msgspec.Struct):
    message: str = "unknown error"
    type: str | None = None
    code: str | int | None = None


class _Chunk(msgspec.Struct):
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: dict[str, Any] | None = None
    error: _Error | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_WHAT = "OpenAI chat completion chunk"


class _ToolSlot:
    """One tool call of one choice, as the decoder tracks it to route fragments."""

    __slots__ = ("key", "call_id")

    def __init__(self, key: Hashable, call_id: str | None) -> None:
        self.key = key
        self.call_id = call_id


class OpenAIChatDecoder(UpstreamDecoder):
    """Decodes ``chat.completion.chunk`` events (see the module docstring)."""

    name = "openai"

    def __init__(self) -> None:
        super().__init__()
        self._model: str | None = None
        # The text/reasoning key currently growing in each choice: when another
        # kind starts, that block is done (reasoning ends when the answer starts).
        self._current: dict[int, Hashable] = {}
        self._finished: dict[int, str | None] = {}
        self._seen_choices: set[int] = set()
        self._tools: dict[int, list[_ToolSlot]] = {}
        self._tool_by_index: dict[tuple[int, int], _ToolSlot] = {}
        self._tool_by_id: dict[tuple[int, str], _ToolSlot] = {}

    @classmethod
    def detect(cls, probe: dict[str, Any]) -> bool:
        if probe.get("object") == "chat.completion.chunk" or isinstance(
            probe.get("choices"), list
        ):
            return True
        # A stream that fails at once: {"error": {...}} with no event type
        # (Anthropic's and the Responses API's error events have "type").
        return isinstance(probe.get("error"), dict) and "type" not in probe

    def feed(self, payload: bytes) -> list[Delta]:
        stripped = payload.strip()
        if stripped == b"[DONE]":
            self.ended = True
            return [StreamEnd()]
        chunk: _Chunk = decode_json(_chunk_decoder, stripped, _WHAT)
        out: list[Delta] = []
        if chunk.model is not None and chunk.model != self._model:
            self._model = chunk.model
            out.append(StreamInfo(model=chunk.model))
        if chunk.error is not None:
            code = chunk.error.code if chunk.error.code is not None else chunk.error.type
            message = chunk.error.message
            self.ended = True
            out.append(UpstreamError(message, None if code is None else str(code)))
            out.append(StreamEnd(aborted=True, reason=f"provider error: {message}"))
            return out
        for choice in chunk.choices or ():
            self._feed_choice(choice, out)
        if chunk.usage is not None:
            out.append(StreamInfo(usage=chunk.usage))
        return out

    def end_of_input(self) -> list[Delta]:
        if self.ended:
            return []
        self.ended = True
        if self._seen_choices and all(c in self._finished for c in self._seen_choices):
            # Every choice said why it finished; only [DONE] is missing, which
            # JSON-lines recordings and some providers leave out.
            return [StreamEnd()]
        return [StreamEnd(aborted=True, reason="input ended before finish_reason or [DONE]")]

    def _feed_choice(self, choice: _Choice, out: list[Delta]) -> None:
        n = choice.index
        self._seen_choices.add(n)
        delta = choice.delta
        if delta is not None:
            if delta.reasoning_content:
                self._text(n, "reasoning", delta.reasoning_content, out)
            if delta.reasoning:
                self._text(n, "reasoning", delta.reasoning, out)
            if delta.content:
                self._text(n, "text", delta.content, out)
            if delta.refusal:
                self._text(n, "refusal", delta.refusal, out)
            if delta.tool_calls:
                self._close_current(n, out)
                for call in delta.tool_calls:
                    self._tool_call(n, call, out)
            if delta.function_call is not None:
                # The pre-tools API: one function call per choice.
                self._close_current(n, out)
                fn = delta.function_call
                out.append(
                    ToolCallDelta(
                        ("function_call", n), fn.arguments or "", None, fn.name, "function", n
                    )
                )
        if choice.finish_reason is not None:
            self._current.pop(n, None)
            self._finished[n] = choice.finish_reason
            out.append(ChoiceFinish(n, choice.finish_reason))

    def _text(self, n: int, kind: str, text: str, out: list[Delta]) -> None:
        key = (kind, n)
        if self._current.get(n) != key:
            self._close_current(n, out)
            self._current[n] = key
        if kind == "refusal":
            out.append(TextDelta(key, "text", text, n, refusal=True))
        else:
            out.append(TextDelta(key, "reasoning" if kind == "reasoning" else "text", text, n))

    def _close_current(self, n: int, out: list[Delta]) -> None:
        key = self._current.pop(n, None)
        if key is not None:
            out.append(BlockDone(key))

    def _tool_call(self, n: int, call: _ToolCall, out: list[Delta]) -> None:
        slot = self._tool_slot(n, call)
        fn = call.function
        out.append(
            ToolCallDelta(
                slot.key,
                (fn.arguments or "") if fn is not None else "",
                call.id,
                fn.name if fn is not None else None,
                call.type,
                n,
            )
        )

    def _tool_slot(self, n: int, call: _ToolCall) -> _ToolSlot:
        """Find which tool call a fragment belongs to, however the provider labels it."""
        if call.index is not None:
            slot = self._tool_by_index.get((n, call.index))
            # Some providers give every parallel call index 0: a new id means a new call.
            if slot is not None and (call.id is None or slot.call_id in (None, call.id)):
                if slot.call_id is None and call.id is not None:
                    slot.call_id = call.id
                    self._tool_by_id[(n, call.id)] = slot
                return slot
        elif call.id is not None:
            slot = self._tool_by_id.get((n, call.id))
            if slot is not None:
                return slot
        else:
            slots = self._tools.get(n)
            if slots:
                # Neither index nor id: the continuation of the latest call.
                return slots[-1]
        slots = self._tools.setdefault(n, [])
        slot = _ToolSlot(("tool", n, len(slots)), call.id)
        slots.append(slot)
        if call.index is not None:
            self._tool_by_index[(n, call.index)] = slot
        if call.id is not None:
            self._tool_by_id[(n, call.id)] = slot
        return slot
