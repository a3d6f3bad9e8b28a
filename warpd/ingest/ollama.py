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
    arguments: Any = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    thinking: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Line(msgspec.Struct):
    model: str | None = None
    message: _Message | None = None
    response: str | None = None
    thinking: str | None = None
    done: bool = False
    done_reason: str | None = None
    # A string from Ollama itself; an object from some proxies.
    error: str | dict[str, Any] | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_duration: int | None = None
    eval_duration: int | None = None


_line_decoder = msgspec.json.Decoder(_Line)
_json_encoder = msgspec.json.Encoder()
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

    def __init__(self) -> None:
        super().__init__()
        self._model: str | None = None
        # The text or reasoning block growing now, and its kind.
        self._current: tuple[str, int] | None = None
        self._blocks = 0

    @classmethod
    def detect(cls, probe: dict[str, Any]) -> bool:
        if isinstance(probe.get("error"), str):
            return "type" not in probe and "choices" not in probe
        return "done" in probe and ("message" in probe or "response" in probe or "model" in probe)

    def feed(self, payload: bytes) -> list[Delta]:
        line: _Line = decode_json(_line_decoder, payload, _WHAT)
        out: list[Delta] = []
        if line.model is not None and line.model != self._model:
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
            self._text("reasoning", line.thinking, out)
        if line.response:
            self._text("text", line.response, out)
        if message is not None:
            if message.thinking:
                self._text("reasoning", message.thinking, out)
            if message.content:
                self._text("text", message.content, out)
            for call in message.tool_calls or ():
                self._tool_call(call, out)
        if line.done:
            usage = {f: getattr(line, f) for f in _USAGE_FIELDS if getattr(line, f) is not None}
            if usage:
                out.append(StreamInfo(usage=usage))
            self.ended = True
            out.append(ChoiceFinish(0, line.done_reason))
            out.append(StreamEnd())
        return out

    def end_of_input(self) -> list[Delta]:
        if self.ended:
            return []
        self.ended = True
        return [StreamEnd(aborted=True, reason="input ended before done: true")]

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
            text = _json_encoder.encode(arguments).decode()
        out.append(ToolCallDelta(key, text, call.id, fn.name, call.type or "function"))
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
    return message if isinstance(message, str) else _json_encoder.encode(error).decode()
