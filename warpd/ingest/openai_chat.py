"""OpenAI chat-completions chunks (and OpenAI-compatible providers) to deltas.

Source: the OpenAI API reference, "The chat completion chunk object"
(https://platform.openai.com/docs/api-reference/chat-streaming), and what
OpenAI-compatible servers and proxies really send.

Handles what real streams do: a role-only first chunk, ``content: null``,
parallel tool calls whose ``id``/``name`` come only in their first fragment,
n>1 interleaved choices, a usage chunk with empty ``choices``, ``refusal``,
``reasoning_content`` / ``reasoning`` deltas, ``data: [DONE]``, and providers'
quirks:

- ``delta.content`` (and the reasoning fields) as a string, ``null``, or a
  list of content parts: ``text`` parts are text, ``thinking`` parts
  (Mistral's reasoning models: ``{"type": "thinking", "thinking": [parts]}``)
  are reasoning, bare strings are text, and any other part is passed through
  as a block with no text, the part in ``data`` and its type in
  ``upstream_type``;
- ``function.arguments`` as a string or as a JSON object/array (Ollama's and
  vLLM's OpenAI endpoints), which is written out as JSON text;
- ``""`` read as absent for ``finish_reason``, ``id``, ``type``, ``name`` and
  ``model`` (``finish_reason: ""`` never ends a choice, ``id: ""`` never
  starts a new tool call);
- ``null`` for ``delta``, ``choices``, ``tool_calls``, ``function``;
- usage where providers put it when the top-level ``usage`` is missing
  (Groq's ``x_groq.usage``);
- tool-call fragments without ``index``, ``id``/``type``/``name`` repeated on
  every fragment, another ``id`` on the later fragments of a call (Poolside:
  the call keeps its first; only a new id that comes with a name starts a new
  call at the same index), a fragment carrying none of index, id, name or
  arguments (Gemini's ``extra_content``: no call is started for it), an
  argument fragment in the chunk that carries ``finish_reason``, a
  mid-stream ``{"error": …}`` object (an object or a string; llama.cpp's
  older ``error:`` SSE lines are read as one, see ``framing.SSEFramer``).

A choice or tool-call ``index`` over :data:`~warpd.ingest.deltas.MAX_INDEX`
(or negative) makes its chunk a schema mismatch: skipped. Chat chunks have
no grammar beyond ``[DONE]`` ending the stream, so this decoder repairs
nothing of its own: its irregularities are the common ones (an event that
cannot be decoded is skipped, see ``COMMON_IRREGULARITIES``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, Any

import msgspec

from warpd.ingest.base import UpstreamDecoder, json_text
from warpd.ingest.deltas import (
    MAX_INDEX,
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

Index = Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]
# A string, or a list of content parts (objects, or bare strings).
Content = str | list[Any] | None


class _Function(msgspec.Struct):
    name: str | None = None
    # A string of JSON text, or (some compatible servers) the JSON value itself.
    arguments: Any = None


class _ToolCall(msgspec.Struct):
    index: Index | None = None
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: Content = None
    reasoning_content: Content = None
    reasoning: Content = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None
    function_call: _Function | None = None


class _Choice(msgspec.Struct):
    index: Index | None = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Error(msgspec.Struct):
    message: str = "unknown error"
    type: str | None = None
    code: str | int | None = None


class _XGroq(msgspec.Struct):
    usage: dict[str, Any] | None = None


class _Chunk(msgspec.Struct):
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: dict[str, Any] | None = None
    error: _Error | str | None = None
    x_groq: _XGroq | None = None


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

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self._model: str | None = None
        # The text/reasoning key currently growing in each choice: when another
        # kind starts, that block is done (reasoning ends when the answer starts).
        self._current: dict[int, Hashable] = {}
        self._finished: dict[int, str | None] = {}
        self._seen_choices: set[int] = set()
        self._tools: dict[int, list[_ToolSlot]] = {}
        self._tool_by_index: dict[tuple[int, int], _ToolSlot] = {}
        self._tool_by_id: dict[tuple[int, str], _ToolSlot] = {}
        # Content parts passed through so far (they each get a block key).
        self._passed_through = 0

    @classmethod
    def detect(cls, probe: dict[str, Any]) -> bool:
        if probe.get("object") == "chat.completion.chunk" or isinstance(
            probe.get("choices"), list
        ):
            return True
        # A stream that fails at once: {"error": {...}} with no event type
        # (Anthropic's and the Responses API's error events have "type").
        return isinstance(probe.get("error"), dict) and "type" not in probe

    def decode_event(self, payload: bytes) -> list[Delta]:
        stripped = payload.strip()
        if stripped == b"[DONE]":
            self.ended = True
            return [StreamEnd()]
        chunk: _Chunk = self.decode_json(_chunk_decoder, stripped, _WHAT)
        out: list[Delta] = []
        if chunk.model and chunk.model != self._model:
            self._model = chunk.model
            out.append(StreamInfo(model=chunk.model))
        if chunk.error is not None:
            error = chunk.error if isinstance(chunk.error, _Error) else _Error(chunk.error)
            code = error.code if error.code is not None else error.type
            message = error.message
            self.ended = True
            out.append(UpstreamError(message, None if code is None else str(code)))
            out.append(StreamEnd(aborted=True, reason=f"provider error: {message}"))
            return out
        for choice in chunk.choices or ():
            self._feed_choice(choice, out)
        usage = chunk.usage
        if usage is None and chunk.x_groq is not None:
            usage = chunk.x_groq.usage
        if usage is not None:
            out.append(StreamInfo(usage=usage))
        return out

    def decode_end(self) -> list[Delta]:
        if self.ended:
            return []
        self.ended = True
        if self._seen_choices and all(c in self._finished for c in self._seen_choices):
            # Every choice said why it finished; only [DONE] is missing, which
            # JSON-lines recordings and some providers leave out.
            return [StreamEnd()]
        return [StreamEnd(aborted=True, reason="input ended before finish_reason or [DONE]")]

    def _feed_choice(self, choice: _Choice, out: list[Delta]) -> None:
        n = choice.index or 0
        self._seen_choices.add(n)
        delta = choice.delta
        if delta is not None:
            if delta.reasoning_content:
                self._content(n, "reasoning", delta.reasoning_content, out)
            if delta.reasoning:
                self._content(n, "reasoning", delta.reasoning, out)
            content = delta.content
            if content:
                if type(content) is str:
                    self._text(n, "text", content, out)
                else:
                    self._content(n, "text", content, out)
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
                        ("function_call", n),
                        _arguments(fn.arguments),
                        None,
                        fn.name or None,
                        "function",
                        n,
                    )
                )
        if choice.finish_reason:
            self._current.pop(n, None)
            self._finished[n] = choice.finish_reason
            out.append(ChoiceFinish(n, choice.finish_reason))

    def _content(self, n: int, kind: str, content: str | list[Any], out: list[Delta]) -> None:
        """A content field: a string, or a list of content parts (see the module docstring)."""
        if isinstance(content, str):
            self._text(n, kind, content, out)
            return
        for part in content:
            if isinstance(part, str):
                if part:
                    self._text(n, kind, part, out)
                continue
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype == "text" and isinstance(part.get("text"), str):
                if part["text"]:
                    self._text(n, kind, part["text"], out)
            elif ptype == "thinking" and isinstance(part.get("thinking"), str | list):
                if part["thinking"]:
                    self._content(n, "reasoning", part["thinking"], out)
            else:
                # An image, a reference, a part type newer than this decoder:
                # passed through, never dropped.
                self._passed_through += 1
                key = ("part", n, self._passed_through)
                upstream = ptype if isinstance(ptype, str) and ptype else "content_part"
                data = part if isinstance(part, dict) else {"value": part}
                out.append(BlockOpen(key, "text", n, upstream_type=upstream, data=data))
                out.append(BlockDone(key))

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
        # An empty string is no value: "id": "" must not start a new call.
        call.id = call.id or None
        fn = call.function
        if fn is None:
            arguments, name = "", None
        else:
            arguments, name = fn.arguments, fn.name or None
            if type(arguments) is not str:
                arguments = _arguments(arguments)
        if call.index is None and call.id is None and name is None and not arguments:
            # Nothing to show (Gemini sends a fragment holding only its
            # extra_content): no call is started for it.
            return
        slot = self._tool_slot(n, call, name)
        # A call keeps the id it started with (some servers send another one
        # on every later fragment of the same call).
        call_id = call.id if slot.call_id == call.id else None
        out.append(ToolCallDelta(slot.key, arguments, call_id, name, call.type or None, n))

    def _tool_slot(self, n: int, call: _ToolCall, name: str | None) -> _ToolSlot:
        """Find which tool call a fragment belongs to, however the provider labels it."""
        if call.index is not None:
            slot = self._tool_by_index.get((n, call.index))
            # Some providers give every parallel call index 0: a new id that
            # comes with a name (as the first fragment of a call does) means a
            # new call; a new id alone is the same call's.
            if slot is not None and (
                call.id is None or slot.call_id in (None, call.id) or name is None
            ):
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


def _arguments(value: Any) -> str:
    """Tool-call arguments as JSON text: a string as it is, a JSON value written out."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json_text(value)
