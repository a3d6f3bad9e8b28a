"""OpenAI Responses API stream events to deltas.

Output items are addressed by ``output_index`` (proxies may rotate
``item_id``; a server that leaves ``output_index`` out, as llama.cpp's
``/v1/responses`` does, has each item it adds take the next index and its
events go to the item their ``item_id`` names, else to the latest item
added), and must be announced by ``response.output_item.added`` before any
event refers to them:

- ``message`` items: each content part (``content_index``) of
  ``output_text.delta`` is a text block, of ``refusal.delta`` a text block
  flagged ``refusal``; ``output_text.annotation.added`` appends to the text
  block's ``data["annotations"]``.
- ``reasoning`` items: each summary part (``summary_index``) of
  ``reasoning_summary_text.delta``, and each ``reasoning_text.delta`` part, is
  a reasoning block. (The encrypted reasoning itself is not shown.)
- ``function_call`` items are tool calls: ``call_id`` and ``name`` come from
  ``output_item.added`` (``function_call_arguments.done`` has no name), the
  arguments from ``function_call_arguments.delta``.
- ``custom_tool_call`` items (custom tools, whose input is free-form text)
  are tool calls of type ``custom``: ``call_id`` and ``name`` from the item,
  the input from ``custom_tool_call_input.delta`` (or ``.done``, or the done
  item) as the arguments, never flagged ``invalid_arguments``.
- any other item (``web_search_call``, ``file_search_call``, …) is passed
  through: a text block with no text, the item in ``data`` and its type in
  ``upstream_type``, updated by its ``output_item.done``.

A ``.done`` event whose text (or arguments) never came in deltas supplies it
whole. An item's blocks complete at its ``output_item.done``, flagged
``truncated`` when the item's status is ``incomplete``.

How the stream ends, and the ``finish_reason`` it gets:

- ``response.completed``: finish reason ``completed`` (the response's status;
  the Responses API has no other stop reason).
- ``response.incomplete``: the provider ended the response early, but ended
  it: not aborted. The finish reason is ``incomplete_details.reason``
  (``max_output_tokens``, ``content_filter``; ``incomplete`` when absent), and
  blocks of items that never got their ``output_item.done`` complete
  ``truncated``.
- ``response.failed`` and the ``error`` event: the stream is aborted with an
  error block naming the provider's error code and message (open blocks
  complete truncated). Like the SDKs, the stream ends at the first of them.
- Input ending before any of these: aborted.

Source: the OpenAI API reference, "Streaming events" of the Responses API
(https://platform.openai.com/docs/api-reference/responses-streaming).

Event types not listed (progress events of built-in tools, ``content_part``
and ``summary_part`` bookkeeping, audio) carry nothing we show and are
ignored. Events out of order (a delta before its item was added, or after it
was done, or of the wrong kind for its item, an item added twice) are
repaired, keeping the most content, and recorded:
:attr:`OpenAIResponsesDecoder.irregularities_table` is the one list of them
and their repairs, besides the common ones (see ``COMMON_IRREGULARITIES``).
An index over ``MAX_INDEX`` is a schema mismatch.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, Any

import msgspec

from warpd.errors import InputError
from warpd.ingest.base import UpstreamDecoder
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


class _Error(msgspec.Struct):
    code: str | int | None = None
    message: str | None = None
    type: str | None = None


class _Incomplete(msgspec.Struct):
    reason: str | None = None


class _Response(msgspec.Struct):
    model: str | None = None
    usage: dict[str, Any] | None = None
    error: _Error | None = None
    incomplete_details: _Incomplete | None = None


Index = Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]


class _Event(msgspec.Struct):
    type: str
    output_index: Index | None = None
    content_index: Index | None = None
    summary_index: Index | None = None
    delta: str | None = None
    text: str | None = None
    refusal: str | None = None
    arguments: str | None = None
    input: str | None = None
    item_id: str | None = None
    item: dict[str, Any] | None = None
    annotation: Any = None
    response: _Response | None = None
    # The ``error`` event: code and message at the top level (or, from some
    # proxies, nested under ``error``).
    code: str | int | None = None
    message: str | None = None
    error: _Error | None = None


_event_decoder = msgspec.json.Decoder(_Event)
_WHAT = "OpenAI Responses event"

# Which item type each content event belongs to, and the block it feeds:
# event type -> (item type, block kind, event field that indexes the part).
_TEXT_EVENTS: dict[str, tuple[str, str, str]] = {
    "response.output_text.delta": ("message", "text", "content_index"),
    "response.output_text.done": ("message", "text", "content_index"),
    "response.refusal.delta": ("message", "refusal", "content_index"),
    "response.refusal.done": ("message", "refusal", "content_index"),
    "response.reasoning_summary_text.delta": ("reasoning", "summary", "summary_index"),
    "response.reasoning_summary_text.done": ("reasoning", "summary", "summary_index"),
    "response.reasoning_text.delta": ("reasoning", "reasoning", "content_index"),
    "response.reasoning_text.done": ("reasoning", "reasoning", "content_index"),
}


# The tool-call item types: item type -> (call type, free-form input).
_TOOL_ITEMS: dict[str, tuple[str, bool]] = {
    "function_call": ("function", False),
    "custom_tool_call": ("custom", True),
}
# Argument events: event type -> (item type, whether it is the .done one).
_ARGUMENT_EVENTS: dict[str, tuple[str, bool]] = {
    "response.function_call_arguments.delta": ("function_call", False),
    "response.function_call_arguments.done": ("function_call", True),
    "response.custom_tool_call_input.delta": ("custom_tool_call", False),
    "response.custom_tool_call_input.done": ("custom_tool_call", True),
}


class _Item:
    """One output item between its ``added`` and ``done`` events."""

    __slots__ = ("type", "keys", "done", "got_arguments")

    def __init__(self, type: str) -> None:
        self.type = type
        # Keys of the blocks this item opened, in order, with whether any
        # content reached them (for .done events that carry the whole value).
        self.keys: dict[Hashable, bool] = {}
        self.done = False
        self.got_arguments = False


class OpenAIResponsesDecoder(UpstreamDecoder):
    """Decodes OpenAI Responses API stream events (see the module docstring)."""

    name = "openai-responses"
    irregularities_table = {
        "event-without-item": "an event for an output_index never added, or already done: "
        "the item it implies starts",
        "event-for-other-item": "an event of another kind than its item (text for a "
        "function_call): shown in a block of its own kind",
        "item-added-again": "output_item.added at an output_index still open: the open "
        "item's blocks complete truncated, a new item starts",
        "done-without-item": "output_item.done for an item never added, or already done: "
        "read as that item added and done (its content is kept)",
        "item-fields": "an item field of the wrong shape: read as absent",
        "missing-index": "an event without output_index from a server that sends it, an "
        "output_item event without its item: skipped",
    }

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self._items: dict[int, _Item] = {}
        self._model: str | None = None
        # For servers that leave output_index out (llama.cpp's /v1/responses):
        # the index of each item by its id and call_id, and of the latest item.
        self._ids: dict[str, int] = {}
        self._latest: int | None = None
        # Whether an item was added without output_index (the server's way).
        self._unindexed = False

    @classmethod
    def detect(cls, probe: dict[str, Any]) -> bool:
        kind = probe.get("type")
        if not isinstance(kind, str):
            return False
        if kind.startswith("response."):
            return True
        # Its error event has code/message at the top level (Anthropic nests them).
        return kind == "error" and (
            "sequence_number" in probe or not isinstance(probe.get("error"), dict)
        )

    @classmethod
    def trails_a_stream(cls, payload: bytes) -> bool:
        # Providers may send response.failed after the error event that
        # already ended the stream.
        return b"response.failed" in payload and _kind_of(payload) == "response.failed"

    def decode_event(self, payload: bytes) -> list[Delta]:
        event: _Event = self.decode_json(_event_decoder, payload, _WHAT)
        kind = event.type
        out: list[Delta] = []
        text_event = _TEXT_EVENTS.get(kind)
        argument_event = _ARGUMENT_EVENTS.get(kind)
        if text_event is not None:
            self._on_text(event, *text_event, out)
        elif argument_event is not None:
            self._on_arguments(event, *argument_event, out)
        elif kind == "response.output_item.added":
            self._on_item_added(event, out)
        elif kind == "response.output_item.done":
            self._on_item_done(event, out)
        elif kind == "response.output_text.annotation.added":
            index = self._index(event)
            item = self._item(event, index, "message")
            key = ("text", index, event.content_index or 0)
            self._open_text(item, key, out)
            out.append(BlockData(key, "annotations", event.annotation, append=True))
        elif kind in ("response.created", "response.in_progress", "response.queued"):
            self._info(event.response, out)
        elif kind == "response.completed":
            self._info(event.response, out)
            self.ended = True
            out.append(ChoiceFinish(0, "completed"))
            out.append(StreamEnd())
        elif kind == "response.incomplete":
            self._info(event.response, out)
            for item in self._items.values():
                if not item.done:
                    out.extend(BlockDone(key, truncated=True) for key in item.keys)
            details = event.response.incomplete_details if event.response else None
            self.ended = True
            out.append(ChoiceFinish(0, (details.reason if details else None) or "incomplete"))
            out.append(StreamEnd())
        elif kind == "response.failed":
            self._info(event.response, out)
            error = event.response.error if event.response else None
            self._fail(error or _Error(), out)
        elif kind == "error":
            self._fail(event.error or _Error(event.code, event.message), out)
        return out

    def decode_end(self) -> list[Delta]:
        if self.ended:
            return []
        self.ended = True
        return [StreamEnd(aborted=True, reason="input ended before response.completed")]

    # -- events ---------------------------------------------------------------

    def _on_arguments(self, event: _Event, item_type: str, done: bool, out: list[Delta]) -> None:
        index = self._index(event)
        item = self._item(event, index, item_type)
        key = ("item", index)
        item.keys.setdefault(key, True)
        free_form = _TOOL_ITEMS[item_type][1]
        if not done:
            item.got_arguments = True
            if event.delta:
                out.append(ToolCallDelta(key, event.delta, free_form=free_form))
            return
        whole = event.input if free_form else event.arguments
        if not item.got_arguments and whole:
            out.append(ToolCallDelta(key, whole, free_form=free_form))
        item.got_arguments = True

    def _on_item_added(self, event: _Event, out: list[Delta]) -> None:
        index, item_data = self._item_event(event)
        old = self._items.get(index)
        if old is not None and not old.done:
            self.irregular(
                "item-added-again",
                f"{event.type} for output_index {index}, still open: its blocks complete "
                "truncated, a new item starts",
            )
            out.extend(BlockDone(key, truncated=True) for key in old.keys)
        self._add_item(index, item_data, event, out)

    def _add_item(
        self, index: int, item_data: dict[str, Any], event: _Event, out: list[Delta]
    ) -> _Item:
        itype = self._field(item_data, "type", event) or "unknown"
        item = self._items[index] = _Item(itype)
        self._latest = index
        for name in ("id", "call_id"):
            value = item_data.get(name)
            if isinstance(value, str) and value:
                self._ids[value] = index
        key = ("item", index)
        tool = _TOOL_ITEMS.get(itype)
        if tool is not None:
            call_type, free_form = tool
            item.keys[key] = True
            arguments = self._field(item_data, "input" if free_form else "arguments", event)
            item.got_arguments = bool(arguments)
            out.append(
                ToolCallDelta(
                    key,
                    arguments or "",
                    self._field(item_data, "call_id", event)
                    or self._field(item_data, "id", event),
                    self._field(item_data, "name", event),
                    call_type,
                    free_form=free_form,
                )
            )
        elif itype not in ("message", "reasoning"):
            item.keys[key] = True
            out.append(BlockOpen(key, "text", upstream_type=itype, data=item_data))
        return item

    def _on_item_done(self, event: _Event, out: list[Delta]) -> None:
        index, item_data = self._item_event(event)
        item = self._items.get(index)
        if item is None or item.done:
            state = "never added" if item is None else "already done"
            self.irregular(
                "done-without-item",
                f"{event.type} for output_index {index}, {state}: read as the item added "
                "and done",
            )
            item = self._add_item(index, item_data, event, out)
        key = ("item", index)
        tool = _TOOL_ITEMS.get(item.type)
        if tool is not None:
            free_form = tool[1]
            arguments = self._field(item_data, "input" if free_form else "arguments", event)
            out.append(
                ToolCallDelta(
                    key,
                    arguments if arguments and not item.got_arguments else "",
                    self._field(item_data, "call_id", event),
                    self._field(item_data, "name", event),
                    free_form=free_form,
                )
            )
        elif key in item.keys:
            out.append(BlockOpen(key, "text", upstream_type=item.type, data=item_data))
        else:
            self._text_only_in_done(index, item, item_data, out)
        truncated = self._field(item_data, "status", event) == "incomplete"
        out.extend(BlockDone(k, truncated=truncated) for k in item.keys)
        item.done = True

    @staticmethod
    def _text_only_in_done(
        index: int, item: _Item, item_data: dict[str, Any], out: list[Delta]
    ) -> None:
        """Text a done item holds that no delta brought (some proxies send only the item)."""
        parts: list[tuple[str, str, Any]] = []
        if item.type == "message":
            parts = [("content", p.get("type", ""), p) for p in _dicts(item_data.get("content"))]
        elif item.type == "reasoning":
            parts = [("summary", "summary_text", p) for p in _dicts(item_data.get("summary"))]
            parts += [("content", p.get("type", ""), p) for p in _dicts(item_data.get("content"))]
        counters: dict[str, int] = {}
        for field, part_type, part in parts:
            position = counters[field] = counters.get(field, -1) + 1
            kind = _DONE_PART_KINDS.get(part_type)
            if kind is None:
                continue
            key = (kind, index, position)
            text = part.get("refusal" if kind == "refusal" else "text")
            if isinstance(text, str) and text and not item.keys.get(key):
                item.keys[key] = True
                out.append(_text_delta(key, kind, text))

    def _on_text(
        self, event: _Event, item_type: str, kind: str, part_field: str, out: list[Delta]
    ) -> None:
        index = self._index(event)
        item = self._item(event, index, item_type)
        part = getattr(event, part_field)
        key = (kind, index, part if part is not None else 0)
        if event.type.endswith(".delta"):
            text = event.delta
        elif not item.keys.get(key):
            # A .done event carries the whole value, which we only need when
            # no delta brought it.
            text = event.refusal if kind == "refusal" else event.text
        else:
            return
        if text:
            item.keys[key] = True
            out.append(_text_delta(key, kind, text))

    # -- helpers --------------------------------------------------------------

    def _open_text(self, item: _Item, key: Hashable, out: list[Delta]) -> None:
        """Open the text block ``key`` of ``item`` if no content opened it yet."""
        if key not in item.keys:
            item.keys[key] = False
            out.append(_text_delta(key, "text", ""))

    def _item(self, event: _Event, index: int, item_type: str) -> _Item:
        """The live item an event refers to, started if the event came before (or after) it."""
        item = self._items.get(index)
        if item is None or item.done:
            state = (
                "before its response.output_item.added"
                if item is None
                else "after its response.output_item.done"
            )
            self.irregular(
                "event-without-item",
                f"{event.type} for output_index {index} {state}: a {item_type} item starts",
            )
            item = self._items[index] = _Item(item_type)
            self._latest = index
        elif item.type != item_type:
            self.irregular(
                "event-for-other-item",
                f"{event.type} for output_index {index}, a {item.type} item "
                f"(expected {item_type}): shown in a block of its own",
            )
        return item

    def _index(self, event: _Event) -> int:
        """The ``output_index`` of an event, or, when the server leaves it out, its item's.

        llama.cpp's ``/v1/responses`` sends no ``output_index``: an event
        without one belongs to the item its ``item_id`` names, else (once an
        item was added without one: the server's way) to the latest item
        added. From a server that sends indexes, it is irregular: skipped.
        """
        if event.output_index is not None:
            return event.output_index
        if event.item_id is not None:
            index = self._ids.get(event.item_id)
            if index is not None:
                return index
        if self._unindexed and self._latest is not None:
            return self._latest
        raise InputError(f"{event.type} without output_index", code="missing-index")

    def _item_event(self, event: _Event) -> tuple[int, dict[str, Any]]:
        """The ``output_index`` and item of an ``output_item.added`` or ``.done`` event.

        Without ``output_index``: the index of the item with the same id (or
        call_id); else, for ``added``, the index after every item so far (and
        the server is known to leave indexes out, see :meth:`_index`); for
        ``done``, as for any event.
        """
        if event.item is None:
            raise InputError(f"{event.type} without its item", code="missing-index")
        item = event.item
        if event.output_index is not None:
            return event.output_index, item
        for name in ("id", "call_id"):
            value = item.get(name)
            if isinstance(value, str) and value in self._ids:
                return self._ids[value], item
        if event.type != "response.output_item.added":
            return self._index(event), item
        index = max(self._items) + 1 if self._items else 0
        if index > MAX_INDEX:
            raise InputError(
                f"{event.type} without output_index, after {MAX_INDEX} items",
                code="missing-index",
            )
        self._unindexed = True
        return index, item

    def _field(self, item: dict[str, Any], name: str, event: _Event) -> str | None:
        """A string field of an item, or None (recorded when it holds something else)."""
        value = item.get(name)
        if value is None or isinstance(value, str):
            return value or None
        self.irregular(
            "item-fields",
            f"{event.type}: item field {name!r} is not a string ({value!r:.60}): read as absent",
        )
        return None

    def _info(self, response: _Response | None, out: list[Delta]) -> None:
        if response is None:
            return
        model = response.model if response.model != self._model else None
        if model is not None:
            self._model = model
        if model is not None or response.usage:
            out.append(StreamInfo(model=model, usage=response.usage or None))

    def _fail(self, error: _Error, out: list[Delta]) -> None:
        code = None if error.code is None else str(error.code)
        label = code or error.type
        text = error.message or "unknown error"
        message = f"{label}: {text}" if label else text
        self.ended = True
        out.append(UpstreamError(message, code or error.type))
        out.append(StreamEnd(aborted=True, reason=f"provider error: {message}"))


# The kind of block a part of a done item becomes (as its delta events would).
_DONE_PART_KINDS = {
    "output_text": "text",
    "refusal": "refusal",
    "summary_text": "summary",
    "reasoning_text": "reasoning",
}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text_delta(key: Hashable, kind: str, text: str) -> TextDelta:
    if kind == "refusal":
        return TextDelta(key, "text", text, refusal=True)
    return TextDelta(key, "text" if kind == "text" else "reasoning", text)


class _Kind(msgspec.Struct):
    type: str | None = None


_kind_decoder = msgspec.json.Decoder(_Kind)


def _kind_of(payload: bytes) -> str | None:
    """The ``type`` of an event, or None if it is not one."""
    try:
        return _kind_decoder.decode(payload).type
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
