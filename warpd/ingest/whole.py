"""Whole (non-streaming) responses and HTTP errors as the events of a stream.

The capture proxy sees answers that are not streams: a completion asked for
with ``stream: false``, and error bodies (401, 429, 500…). The decoders read
stream events, so these turn such a body into the events a streaming answer
would have carried, and the stream is assembled like any other (sans-I/O:
bytes in, event payloads out, each one whole JSON object).

- ``openai`` (``chat.completion``, OpenAI Chat Completions API reference):
  one chunk whose choices carry each ``message`` as their ``delta``.
- ``openai-responses`` (a ``response`` object, OpenAI Responses API
  reference): ``response.created``, then ``output_item.added`` and
  ``output_item.done`` for each output item (the decoder takes an item's
  text and arguments from them whole), then ``response.completed``,
  ``.incomplete`` or ``.failed`` by the response's ``status``.
- ``anthropic`` (a ``message`` object, Anthropic Messages API reference):
  ``message_start``; ``content_block_start`` with each whole content block,
  and its ``content_block_stop``; ``message_delta`` with the stop reason;
  ``message_stop``.
- ``ollama``: a non-streaming answer of ``/api/chat`` or ``/api/generate``
  is already one object with ``done: true``: it is its own stream.

:func:`whole_format` tells such a response from a stream's first event, for
input that holds one (``curl`` without ``"stream": true``, piped to
``warpd push``).

Error bodies become the format's own error event, so the stream ends aborted
with an ``error`` block: the provider's JSON error when the body is one (its
message and code kept), else ``HTTP STATUS REASON`` and the start of the body.
"""

from __future__ import annotations

from typing import Any

import msgspec

from warpd.errors import InputError
from warpd.ingest.base import preview

_json = msgspec.json.Encoder()
_any = msgspec.json.Decoder()

#: Formats whose whole responses and errors this module can turn into events.
WHOLE_FORMATS = ("openai", "openai-responses", "anthropic", "ollama")


def whole_format(probe: Any) -> str | None:
    """The format of which ``probe`` (a decoded JSON value) is a whole response, or None.

    An OpenAI ``chat.completion`` (by its ``object``, or choices that carry a
    ``message`` rather than a ``delta``), a Responses ``response`` object,
    an Anthropic ``message``. An Ollama answer is one of its stream's events
    already, and an error body is its format's error event: None for both.
    """
    if not isinstance(probe, dict):
        return None
    kind = probe.get("object")
    if kind == "response":
        return "openai-responses"
    choices = probe.get("choices")
    if kind == "chat.completion" or (
        isinstance(choices, list) and choices and isinstance(choices[0], dict)
        and "message" in choices[0] and "delta" not in choices[0]
    ):
        return "openai"
    if probe.get("type") == "message" and isinstance(probe.get("content"), list):
        return "anthropic"
    return None


def completion_events(format: str, body: bytes) -> list[bytes]:
    """The stream events of a whole (non-streaming) completion ``body`` of ``format``.

    Raises :class:`InputError` when ``body`` is not a JSON object, and
    ``ValueError`` for a format not in :data:`WHOLE_FORMATS`. An object of
    the wrong shape is passed on as it is: the decoder then says what is
    wrong with it.
    """
    whole = _object(body, format)
    if format == "openai":
        return _openai_chat(whole)
    if format == "openai-responses":
        return _openai_responses(whole)
    if format == "anthropic":
        return _anthropic(whole)
    if format == "ollama":
        return [_json.encode(whole)]
    raise ValueError(f"no whole-response form for format {format!r}")


def error_events(format: str, status: int, reason: str, body: bytes) -> list[bytes]:
    """The format's error event for an HTTP error answer (``status`` ≥ 400, ``body``).

    Never raises for a body: one that is not the provider's JSON error is
    described by its status and start. ``ValueError`` for an unknown format.
    """
    try:
        whole = _any.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        whole = None
    error = whole.get("error") if isinstance(whole, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        if format == "openai":
            return [_json.encode({"error": error})]
        if format == "openai-responses":
            label = error.get("code") or error.get("type")
            return [_json.encode({"type": "error", "code": label, "message": error["message"]})]
        if format == "anthropic":
            return [_json.encode({"type": "error", "error": error})]
    if format == "ollama" and isinstance(error, str) and error:
        return [_json.encode({"error": error})]
    message = f"HTTP {status} {reason}".rstrip()
    if body.strip():
        message += f": {preview(body.strip(), 200)}"
    return failure_events(format, message)


def failure_events(format: str, message: str) -> list[bytes]:
    """The format's error event saying ``message`` (a request that got no usable answer).

    ``ValueError`` for a format not in :data:`WHOLE_FORMATS`.
    """
    if format == "openai":
        return [_json.encode({"error": {"message": message}})]
    if format == "openai-responses":
        return [_json.encode({"type": "error", "message": message})]
    if format == "anthropic":
        # api_error: Anthropic's own type for an error not of the caller's making.
        return [_json.encode({"type": "error", "error": {"type": "api_error", "message": message}})]
    if format == "ollama":
        return [_json.encode({"error": message})]
    raise ValueError(f"no error form for format {format!r}")


def _object(body: bytes, format: str) -> dict[str, Any]:
    try:
        whole = _any.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"a whole {format} response that is not JSON: {exc} (starts {preview(body)})"
        ) from None
    except RecursionError:
        raise InputError(
            f"a whole {format} response nested too deeply (starts {preview(body)})",
            code="too-deep",
        ) from None
    if not isinstance(whole, dict):
        raise InputError(f"a whole {format} response that is not a JSON object: {preview(body)}")
    return whole


def _openai_chat(whole: dict[str, Any]) -> list[bytes]:
    choices = whole.get("choices")
    if not isinstance(choices, list):
        return [_json.encode(whole)]
    chunk = {**whole, "object": "chat.completion.chunk", "choices": [
        {**{k: v for k, v in c.items() if k != "message"}, "delta": c.get("message") or {}}
        if isinstance(c, dict) else c
        for c in choices
    ]}
    return [_json.encode(chunk)]


_RESPONSE_ENDS = {"completed": "response.completed", "incomplete": "response.incomplete",
                  "failed": "response.failed"}


def _openai_responses(whole: dict[str, Any]) -> list[bytes]:
    output = whole.get("output")
    items = output if isinstance(output, list) else []
    started = {**whole, "output": [], "status": "in_progress"}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": started}]
    for index, item in enumerate(items):
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    end = _RESPONSE_ENDS.get(str(whole.get("status")))
    if end is not None:
        events.append({"type": end, "response": whole})
    return [_json.encode(e) for e in events]


def _anthropic(whole: dict[str, Any]) -> list[bytes]:
    if whole.get("type") == "error":
        return [_json.encode(whole)]
    content = whole.get("content")
    blocks = content if isinstance(content, list) else []
    message = {k: v for k, v in whole.items() if k not in ("stop_reason", "stop_sequence")}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": []}}
    ]
    for index, block in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        events.append({"type": "content_block_stop", "index": index})
    delta = {"stop_reason": whole.get("stop_reason"), "stop_sequence": whole.get("stop_sequence")}
    events.append({"type": "message_delta", "delta": delta})
    events.append({"type": "message_stop"})
    return [_json.encode(e) for e in events]
