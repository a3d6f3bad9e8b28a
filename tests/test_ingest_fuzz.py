"""Property tests of every decoder: chunking never changes the result; bad input never escapes.

- Re-chunking the bytes of any recorded or hand-made stream, or whole
  pretty-printed answer, at arbitrary points (mid-line, mid-UTF-8
  character) gives the same final blocks.
- Arbitrary bytes, sequences of arbitrary JSON objects built from each
  format's own field names and event types, and JSON nested far deeper than
  any parser allows never make an exception escape a decoder (in strict
  mode: nothing but :class:`InputError`); through ``convert`` every stream
  they start is completed and every message encodes.

The coverage-guided counterpart is ``bench/fuzz_decoders.py`` (not run here).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import fixture_files
from tests.ingest_streams import DOCUMENTS, HAND_MADE, final, outcome
from warpd.blocks import is_final
from warpd.errors import InputError
from warpd.ingest import DECODERS, FORMATS
from warpd.ingest.convert import convert
from warpd.protocol import BlocksMessage, encode

_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _rechunk_holds(data: bytes, format: str, cuts: list[int]) -> None:
    whole = outcome(final(data, format))
    assert outcome(final(_split(data, cuts), format)) == whole


_cuts = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=24)


@pytest.mark.parametrize(
    "path", fixture_files("*.sse", "*.jsonl", "*.ndjson"), ids=lambda p: getattr(p, "name", p)
)
@_SETTINGS
@given(cuts=_cuts)
def test_rechunking_a_recording_keeps_its_final_blocks(path: Path, cuts: list[int]) -> None:
    raw = path.read_bytes()
    # Cut points spread over the whole recording, not only its start.
    spread = [c * len(raw) // (1 << 16) for c in cuts]
    _rechunk_holds(raw, "auto", spread)


_STREAMS = {**HAND_MADE, **DOCUMENTS}


@pytest.mark.parametrize("name", sorted(_STREAMS))
@_SETTINGS
@given(cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=24))
def test_rechunking_a_hand_made_stream_keeps_its_final_blocks(name: str, cuts: list[int]) -> None:
    format, raw = _STREAMS[name]
    _rechunk_holds(raw, format, cuts)
    _rechunk_holds(raw, "auto", cuts)


@pytest.mark.parametrize("name", sorted(_STREAMS))
def test_one_byte_chunks_keep_the_final_blocks(name: str) -> None:
    format, raw = _STREAMS[name]
    chunks = [raw[i : i + 1] for i in range(len(raw))]
    assert outcome(final(chunks, "auto")) == outcome(final(raw, format))


# -- fuzzing -------------------------------------------------------------------

# Field names and event types of every format, so that random objects reach
# past the first check of each decoder.
_KEYS = [
    "type", "index", "delta", "content_block", "message", "usage", "error", "text",
    "partial_json", "thinking", "signature", "citation", "stop_reason", "id", "name",
    "input", "data", "output_index", "content_index", "summary_index", "item", "response",
    "arguments", "refusal", "annotation", "status", "call_id", "incomplete_details",
    "reason", "code", "model", "choices", "object", "finish_reason", "tool_calls",
    "function", "content", "reasoning_content", "done", "done_reason", "eval_count",
    "sequence_number",
]  # fmt: skip
_TYPES = [
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "ping", "error", "text", "thinking", "tool_use",
    "redacted_thinking", "server_tool_use", "web_search_tool_result", "text_delta",
    "input_json_delta", "thinking_delta", "signature_delta", "citations_delta",
    "response.created", "response.output_item.added", "response.output_item.done",
    "response.output_text.delta", "response.output_text.done", "response.refusal.delta",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
    "response.output_text.annotation.added", "response.completed", "response.failed",
    "response.incomplete", "message", "reasoning", "function_call", "web_search_call",
    "incomplete", "chat.completion.chunk", "function",
]  # fmt: skip

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(_TYPES)
    | st.text(max_size=12)
)
_json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=20,
)
_events = st.dictionaries(st.sampled_from(_KEYS), _json_values, max_size=6)


def _check_convert(chunks: list[bytes], format: str) -> None:
    """Nothing escapes (strict: only InputError); every stream completes; every message encodes."""
    for strict in (False, True):
        last: dict[str, BlocksMessage] = {}
        for message in convert(chunks, format=format, errors="message", strict=strict):
            encode(message)
            last[message.stream] = message
        for stream, message in last.items():
            assert is_final(message), f"stream {stream} left open"
            if not strict:
                assert not (message.aborted and message.abort_reason or "").startswith("bad input")


def _check_decoders(lines: list[bytes]) -> None:
    """Fed straight to each decoder: nothing escapes; strict decoders raise only InputError."""
    for decoder_class in DECODERS.values():
        decoder = decoder_class()
        for line in lines:
            if decoder.ended:
                break
            decoder.feed(line)
        decoder.end_of_input()
        strict = decoder_class(strict=True)
        try:
            for line in lines:
                if strict.ended:
                    break
                strict.feed(line)
            strict.end_of_input()
        except InputError:
            pass


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), format=st.sampled_from(FORMATS))
def test_arbitrary_bytes(data: bytes, format: str) -> None:
    _check_convert([data], format)
    _check_decoders([data])


@settings(max_examples=150, deadline=None)
@given(events=st.lists(_events, min_size=1, max_size=8), format=st.sampled_from(FORMATS))
def test_arbitrary_json_events(events: list[dict[str, Any]], format: str) -> None:
    lines = [json.dumps(e).encode() + b"\n" for e in events]
    _check_convert(lines, format)
    _check_decoders(lines)


# JSON nested deeper than any parser's recursion limit, in every place an
# event can hold it: a whole line, a field, the middle of a known event.
_DEEP_PLACES = [
    b"%s",
    b'{"type": %s}',
    b'{"choices": [{"index": 0, "delta": {"content": %s}}]}',
    b'{"type": "content_block_start", "index": 0, "content_block": %s}',
    b'{"type": "response.output_item.added", "output_index": 0, "item": %s}',
    b'{"model": "m", "message": {"tool_calls": [{"function": {"arguments": %s}}]}}',
    b'{"choices": [{"delta": {"tool_calls": [{"function": {"arguments": %s}}]}}]}',
]


@settings(max_examples=40, deadline=None)
@given(
    depth=st.sampled_from([900, 1_000, 5_000, 100_000]),
    opener=st.sampled_from([b"[", b'{"a":']),
    closed=st.booleans(),
    place=st.sampled_from(_DEEP_PLACES),
    format=st.sampled_from(FORMATS),
)
def test_deeply_nested_json(
    depth: int, opener: bytes, closed: bool, place: bytes, format: str
) -> None:
    closer = (b"]" if opener == b"[" else b"}") * depth if closed else b""
    line = place % (opener * depth + (b"1" if opener != b"[" else b"") + closer)
    prefix = b'{"choices": [{"index": 0, "delta": {"content": "ok"}}]}\n'
    for lines in ([line + b"\n"], [prefix, line + b"\n"], [b"data: " + line + b"\n\n"]):
        _check_convert(lines, format)
        _check_decoders([raw.strip() for raw in lines])


@pytest.mark.parametrize("name", sorted(_STREAMS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mutated_hand_made_streams(name: str, data: st.DataObject) -> None:
    """Real streams with one event replaced, dropped or repeated: still only InputError."""
    format, raw = _STREAMS[name]
    lines = raw.splitlines(keepends=True)
    at = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    action = data.draw(st.sampled_from(["drop", "repeat", "replace"]))
    if action == "drop":
        lines[at : at + 1] = []
    elif action == "repeat":
        lines.insert(at, lines[at])
    else:
        lines[at] = b"data: " + json.dumps(data.draw(_events)).encode() + b"\n"
    for fmt in (format, "auto"):
        _check_convert(lines, fmt)


def test_errors_message_mode_still_reports_bad_input() -> None:
    """The fuzz checks run strict convert with errors="message": that mode shows errors."""
    by_stream: dict[str, list[BlocksMessage]] = defaultdict(list)
    data = b'{"type":"message_start","message":{}}\n{oops\n'
    for message in convert([data], errors="message", strict=True):
        by_stream[message.stream].append(message)
    (messages,) = by_stream.values()
    assert messages[-1].aborted
    assert [b.type for b in messages[-1].blocks] == ["error"]
    assert "line 2: invalid JSON in Anthropic stream event" in (messages[-1].blocks[0].text or "")
