"""Format auto-detection: each first event is claimed by its own decoder only; framing sniffing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture_files
from tests.ingest_streams import HAND_MADE, final, input_errors, messages, texts, warned
from warpd.blocks import is_final
from warpd.errors import InputError
from warpd.ingest import DECODERS, detect_format
from warpd.ingest.framing import AutoFramer, sniff_framing
from warpd.ingest.producer import ProducerStreams

FIRST_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("openai", {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}),
    ("openai", {"id": "x", "choices": []}),
    ("openai", {"error": {"message": "Rate limit", "type": "requests", "code": "429"}}),
    ("anthropic", {"type": "message_start", "message": {"model": "claude"}}),
    ("anthropic", {"type": "ping"}),
    ("anthropic", {"type": "content_block_delta", "index": 0, "delta": {}}),
    ("anthropic", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}),
    ("openai-responses", {"type": "response.created", "response": {"model": "gpt"}}),
    ("openai-responses", {"type": "response.output_text.delta", "output_index": 0}),
    ("openai-responses", {"type": "error", "code": "c", "message": "m", "sequence_number": 0}),
    ("openai-responses", {"type": "error", "code": "c", "message": "m", "param": None}),
    ("ollama", {"model": "llama3", "created_at": "t", "message": {"content": ""}, "done": False}),
    ("ollama", {"model": "llama3", "created_at": "t", "response": "Hi", "done": False}),
    ("ollama", {"model": "llama3", "done": True, "done_reason": "stop"}),
    ("ollama", {"error": "model not found"}),
]


@pytest.mark.parametrize(("format", "event"), FIRST_EVENTS)
def test_exactly_one_decoder_claims_each_first_event(format: str, event: dict[str, Any]) -> None:
    claimed = [name for name, decoder in DECODERS.items() if decoder.detect(event)]
    assert claimed == [format]
    assert detect_format(json.dumps(event).encode()) is DECODERS[format]


def _first_payload(data: bytes) -> bytes:
    for line in data.decode().splitlines():
        line = line.removeprefix("data: ")
        if line.startswith("{"):
            return line.encode()
    raise AssertionError("no JSON event")


def _format_of(name: str) -> str:
    for prefix, format in [
        ("anthropic_", "anthropic"),
        ("openai_responses_", "openai-responses"),
        ("openai_chat_", "openai"),
        ("deepseek_", "openai"),
        ("ollama_", "ollama"),
    ]:
        if name.startswith(prefix):
            return format
    raise AssertionError(f"no format known for {name}")


@pytest.mark.parametrize(
    "path", fixture_files("*.sse", "*.jsonl", "*.ndjson"), ids=lambda p: getattr(p, "name", p)
)
def test_recorded_fixtures_are_detected(path: Path) -> None:
    payload = _first_payload(path.read_bytes())
    expected = _format_of(path.name)
    claimed = [n for n, d in DECODERS.items() if d.detect(json.loads(payload))]
    assert claimed == [expected]


@pytest.mark.parametrize("name", [n for n, (f, _) in HAND_MADE.items() if f != "text"])
def test_hand_made_streams_are_detected(name: str) -> None:
    format, data = HAND_MADE[name]
    assert detect_format(_first_payload(data)) is DECODERS[format]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"hello": "world"}',
        b"[1, 2]",
        b'"text"',
        b"{not json",
        b'{"type": "unknown"}',
        b'{"type": []}',
        b'{"type": {"a": 1}, "error": []}',
    ],
)
def test_unknown_first_event_names_the_formats_tried(payload: bytes) -> None:
    with pytest.raises(InputError) as caught:
        detect_format(payload)
    message = str(caught.value)
    assert "tried openai, openai-responses, anthropic, ollama)" in message
    assert message.endswith(f"the event starts {payload.decode()!r}")


def test_unknown_first_event_through_convert_is_skipped_and_named_by_line() -> None:
    long_event = b'{"greeting": "' + b"x" * 100 + b'"}\n'
    ((line, code, message),) = warned(b"\n" + long_event)
    assert (line, code) == (2, "unknown-format")
    assert message.startswith("cannot tell the stream's format")
    assert message.endswith('the event starts \'{"greeting": "' + "x" * 46 + "'…: event skipped")
    # No stream followed: the warning completes in a stream of its own.
    (only,) = messages(b"\n" + long_event)
    assert is_final(only) and not only.aborted and input_errors(only) == ["unknown-format"]
    # A stream that follows shows it, and is whole.
    ok = b'{"model":"m","response":"ok","done":true}\n'
    last = final(long_event + ok)
    assert texts(last, "text") == ["ok"] and input_errors(last) == ["unknown-format"]


def test_strict_mode_unknown_first_event_through_convert_names_frame_and_line() -> None:
    long_event = b'{"greeting": "' + b"x" * 100 + b'"}\n'
    with pytest.raises(InputError) as caught:
        messages(b"\n" + long_event, strict=True)
    message = str(caught.value)
    assert message.startswith("frame 1: line 2: cannot tell the stream's format")
    assert message.endswith('the event starts \'{"greeting": "' + "x" * 46 + "'…")


@pytest.mark.parametrize(
    ("start", "framing"),
    [
        (b'{"a": 1}\n', "jsonl"),
        (b'  \n\n{"b": [1]}\r\n', "jsonl"),
        (b"data: {}\n\n", "sse"),
        (b"data:{}\n\n", "sse"),
        (b"event: ping\ndata: {}\n", "sse"),
        (b": keep-alive\n\ndata: x\n", "sse"),
        (b"id: 7\ndata: x\n", "sse"),
        (b"retry: 1000\ndata: x\n", "sse"),
        (b"\r\n\r\ndata: x\n", "sse"),
        (b"Hello world\n", "raw"),
        (b"identity\n", "raw"),
        (b"data\n", "raw"),
        (b"dat", "raw"),
        (b"\xff\xfe binary", "raw"),
        (b"", "raw"),
        # Plain text that only looks like the start of SSE or JSON is text.
        (b":) thanks!\nHere is the answer.\n", "raw"),
        (b"event: the party starts at 8\nbring snacks\n", "raw"),
        (b"id: 42\nname: bob\n", "raw"),
        (b": only a comment\n", "raw"),
        (b"[1] first item\n[2] second\n", "raw"),
        # Held to the end: text unless all of it is one JSON object (the framer tells).
        (b"{name} is a placeholder\n", "document"),
        (b'{\n    "error": {}\n}\n', "document"),
        (b'["a", "b"]\n', "raw"),
    ],
)
def test_sniff_framing(start: bytes, framing: str) -> None:
    assert sniff_framing(start) == framing


_BOM = b"\xef\xbb\xbf"
_CHAT = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
_OLLAMA = b'{"model":"m","response":"Hello","done":false}\n{"model":"m","done":true}\n'


@pytest.mark.parametrize(
    ("data", "format"),
    [(_CHAT, "auto"), (_CHAT, "openai"), (_OLLAMA, "auto"), (_OLLAMA, "ollama")],
    ids=["sse-auto", "sse-openai", "jsonl-auto", "jsonl-ollama"],
)
def test_a_byte_order_mark_at_the_start_is_not_part_of_the_input(data: bytes, format: str) -> None:
    """As WHATWG SSE says; editors and PowerShell write one at the start of saved files."""
    data = _BOM + data
    for cut in range(6):  # the mark split across reads too
        last = final([data[:cut], data[cut:]], format)
        assert texts(last, "text") == ["Hello"] and not last.aborted
        assert input_errors(last) == []
    assert sniff_framing(_BOM + b"data: x\n") == "sse"
    assert sniff_framing(_BOM[:2], final=False) is None


def test_an_explicit_format_never_reads_its_input_as_plain_text() -> None:
    """With --format openai, a line before the events costs that line, not the whole input."""
    headers = b"HTTP/2 200 \r\ncontent-type: text/event-stream\r\n\r\n"  # curl -i
    assert texts(final(headers + _CHAT, "openai"), "text") == ["Hello"]
    # In chunks, the framing waits for a line that decides.
    assert texts(final([headers[:7], headers[7:], _CHAT], "openai"), "text") == ["Hello"]
    # JSON lines after a banner: the banner is one skipped event, the rest is kept.
    ollama = b'{"model":"m","response":"Hi","done":false}\n{"model":"m","done":true}\n'
    last = final(b"connected to proxy\n" + ollama, "ollama")
    assert texts(last, "text") == ["Hi"] and input_errors(last) == ["invalid-json"]
    # Neither SSE nor JSON anywhere: every line is reported, none skipped unseen.
    assert [code for _, code, _ in warned(b"one\ntwo\n", "openai")] == [
        "invalid-json", "invalid-json"
    ]  # fmt: skip
    # With format auto, the same input is plain text, as before.
    assert [b.text for b in final(headers + _CHAT).blocks] == [(headers + _CHAT).decode()]


def test_a_first_json_line_longer_than_the_sniff_limit_is_json_in_any_reads() -> None:
    """The same bytes give the same stream however they are read (1 MiB is the sniff limit)."""
    long = "x" * (1536 * 1024)
    data = (
        json.dumps({"choices": [{"index": 0, "delta": {"content": long}}]}).encode() + b"\n"
        + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).encode()
        + b"\n"
    )  # fmt: skip
    for size in (16384, 65536, len(data)):
        last = final([data[i : i + size] for i in range(0, len(data), size)])
        assert texts(last, "text") == [long] and last.finish_reason == "stop", size


def test_auto_framer_waits_until_the_start_decides() -> None:
    framer = AutoFramer()
    assert framer.feed(b"\nda") == []
    assert framer.framing is None
    events = framer.feed(b'ta: {"x": 1}\n\n')
    assert framer.framing == "sse"
    assert [e.payload for e in events] == [b'{"x": 1}']
    assert events[0].line == 2


def test_auto_framer_waits_for_a_whole_first_line_but_not_for_text() -> None:
    framer = AutoFramer()
    assert framer.feed(b'{"choices": [') == [] and framer.framing is None
    assert [e.payload for e in framer.feed(b']}\n')] == [b'{"choices": []}']
    assert framer.framing == "jsonl"
    text = AutoFramer()
    assert [e.payload for e in text.feed(b"Hello, wor")] == [b"Hello, wor"]
    assert text.framing == "raw"


def test_auto_framer_decides_raw_at_close() -> None:
    framer = AutoFramer()
    assert framer.feed(b"re") == []
    events = framer.close()
    assert framer.framing == "raw"
    assert [e.payload for e in events] == [b"re"]


def test_producer_told_of_plain_text_uses_the_text_decoder() -> None:
    streams = iter(range(1, 100))
    producer = ProducerStreams("s", "auto", lambda: f"s/{next(streams)}")
    producer.plain_text_input()
    assert producer.detected == "text"
    producer.feed(b"data: not SSE here, just text")
    (message,) = producer.end()
    assert [b.text for b in message.blocks] == ["data: not SSE here, just text"]
    # An explicit format is never overridden.
    fixed = ProducerStreams("s", "ollama", lambda: "s/1")
    fixed.plain_text_input()
    assert fixed.detected == "ollama"


def test_invalid_utf8_inside_a_json_string_is_skipped_with_a_warning() -> None:
    bad = b'{"model":"m","response":"x\xbe","done":false}\n'
    ok = b'{"model":"m","response":"ok","done":false}\n'
    end = b'{"model":"m","done":true}\n'
    assert [w[:2] for w in warned(bad + ok + end)] == [(1, "invalid-utf8")]
    assert [w[:2] for w in warned(ok + bad + end)] == [(2, "invalid-utf8")]
    assert texts(final(ok + bad + end), "text") == ["ok"]


def test_strict_mode_invalid_utf8_inside_a_json_string_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"^frame 1: line 1: invalid UTF-8 in the stream's first"):
        messages(b'{"model":"m","response":"x\xbe","done":false}\n', strict=True)
    ok = b'{"model":"m","response":"ok","done":false}\n'
    with pytest.raises(
        InputError, match=r"^frame 2: line 2: invalid UTF-8 in Ollama stream object"
    ):
        messages(ok + b'{"model":"m","response":"x\xbe","done":false}\n', strict=True)
