"""Ollama's native NDJSON streams (``/api/chat`` and ``/api/generate``) to deltas.

One JSON object per call. ``/api/chat`` puts the output under ``message``
(``content``, ``thinking``, ``tool_calls``); ``/api/generate`` at the top level
(``response``, ``thinking``). Thinking becomes reasoning blocks, content text
blocks; a new block starts whenever the kind changes (reasoning ends when the
answer starts). Tool calls arrive whole, their ``arguments`` a JSON object:
each becomes a complete tool call whose ``function.arguments`` is that object
serialized as JSON (a string is taken as it is).

``done: true`` ends the stream, ``done_reason`` is its finish reason, and the
counts and durations of the last object (``prompt_eval_count``,
``eval_count``, ``total_duration``, …) become its usage, under Ollama's own
names. An ``{"error": …}`` object ends the stream as aborted with an error
block. Input ending before ``done: true`` is aborted.

Source: Ollama's API documentation (docs/api.md, "Generate a completion"
and "Generate a chat completion", streaming responses).

Accepted shapes beyond the documented ones: ``content``, ``thinking`` and
``response`` as a list of content parts (as the OpenAI decoder reads them:
``text`` parts, ``thinking`` parts), ``arguments`` as a string or any JSON
value, ``null`` for ``message`` and ``tool_calls``, ``""`` read as absent for
``done_reason``, ``id``, ``type``, ``name`` and ``model``, and counts and
durations as floats. Ollama objects have no grammar beyond ``done: true``
ending the stream, so the irregularities are the common ones (an object
that cannot be decoded is skipped, see ``COMMON_IRREGULARITIES``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import msgspec

from warpd.ingest.base import UpstreamDecoder, json_text
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
    arguments: Any = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


# A string, or a list of content parts (objects, or bare strings).
Content = str | list[Any] | None
Count = int | float | None


class _Message(msgspec.Struct):
    content: Content = None
    thinking: Content = None
    tool_calls: list[_ToolCall] | None = None


class _Line(msgspec.Struct):
    model: str | None = None
    message: _Message | None = None
    response: Content = None
    thinking: Content = None
    done: bool | None = False
    done_reason: str | None = None
    # A string from Ollama itself; an object from some proxies.
    error: str | dict[str, Any] | None = None
    prompt_eval_count: Count = None
    eval_count: Count = None
    total_duration: Count = None
    load_duration: Count = None
    prompt_eval_duration: Count = None
    eval_duration: Count = None


_line_decoder = msgspec.json.Decoder(_Line)
_WHAT = "Ollama stream object"
_USAGE_FIELDS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


class OllamaDecoder(UpstreamDecoder):
    """Decodes Ollama ``/api/chat`` and ``/api/generate`` stream objects."""

    name = "ollama"

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self._model: str | None = None
        # The text or reasoning block growing now, and its kind.
        self._current: tuple[str, int] | None = None
        self._blocks = 0

    @classmethod
    def detect(cls, probe: dict[str, Any]) -> bool:
        if isinstance(probe.get("error"), str):
            return "type" not in probe and "choices" not in probe
        return "done" in probe and ("message" in probe or "response" in probe or "model" in probe)

    def decode_event(self, payload: bytes) -> list[Delta]:
        line: _Line = self.decode_json(_line_decoder, payload, _WHAT)
        out: list[Delta] = []
        if line.model and line.model != self._model:
            self._model = line.model
            out.append(StreamInfo(model=line.model))
        if line.error is not None:
            error = _error_message(line.error)
            self.ended = True
            out.append(UpstreamError(error))
            out.append(StreamEnd(aborted=True, reason=f"provider error: {error}"))
            return out
        message = line.message
        if line.thinking:
            self._content("reasoning", line.thinking, out)
        if line.response:
            self._content("text", line.response, out)
        if message is not None:
            if message.thinking:
                self._content("reasoning", message.thinking, out)
            if message.content:
                self._content("text", message.content, out)
            for call in message.tool_calls or ():
                self._tool_call(call, out)
        if line.done:
            usage = {f: getattr(line, f) for f in _USAGE_FIELDS if getattr(line, f) is not None}
            if usage:
                out.append(StreamInfo(usage=usage))
            self.ended = True
            out.append(ChoiceFinish(0, line.done_reason or None))
            out.append(StreamEnd())
        return out

    def decode_end(self) -> list[Delta]:
        if self.ended:
            return []
        self.ended = True
        return [StreamEnd(aborted=True, reason="input ended before done: true")]

    def _content(self, kind: str, content: str | list[Any], out: list[Delta]) -> None:
        """A content field: a string, or a list of ``text``/``thinking`` parts or strings."""
        if isinstance(content, str):
            self._text(kind, content, out)
            return
        for part in content:
            text: Any
            if isinstance(part, str):
                text, part_kind = part, kind
            elif isinstance(part, dict) and part.get("type") == "thinking":
                text, part_kind = part.get("thinking"), "reasoning"
            elif isinstance(part, dict):
                text, part_kind = part.get("text"), kind
            else:
                continue
            if isinstance(text, str | list) and text:
                self._content(part_kind, text, out)

    def _text(self, kind: str, text: str, out: list[Delta]) -> None:
        current = self._current
        if current is None or current[0] != kind:
            self._close_current(out)
            current = self._current = (kind, self._new_block())
        out.append(TextDelta(current, "reasoning" if kind == "reasoning" else "text", text))

    def _tool_call(self, call: _ToolCall, out: list[Delta]) -> None:
        self._close_current(out)
        key: Hashable = ("tool", self._new_block())
        fn = call.function or _Function()
        arguments = fn.arguments
        if arguments is None:
            text = ""
        elif isinstance(arguments, str):
            text = arguments
        else:
            text = json_text(arguments)
        out.append(
            ToolCallDelta(key, text, call.id or None, fn.name or None, call.type or "function")
        )
        out.append(BlockDone(key))

    def _close_current(self, out: list[Delta]) -> None:
        if self._current is not None:
            out.append(BlockDone(self._current))
            self._current = None

    def _new_block(self) -> int:
        self._blocks += 1
        return self._blocks


def _error_message(error: str | dict[str, Any]) -> str:
    if isinstance(error, str):
        return error or "unknown error"
    message = error.get("message")
    return message if isinstance(message, str) else json_text(error)
