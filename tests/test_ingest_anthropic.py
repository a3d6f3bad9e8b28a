"""AnthropicDecoder through convert(): hand-written streams and the recorded fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import fixture_files
from tests.ingest_streams import (
    _A_START,
    ANTHROPIC_ERROR_MID_STREAM,
    ANTHROPIC_SERVER_TOOL,
    ANTHROPIC_THINKING_TOOL,
    ANTHROPIC_TRUNCATED_TOOL,
    _a_block,
    _a_delta,
    _a_end,
    _a_stop,
    final,
    input_errors,
    jsonl,
    kinds,
    messages,
    sse,
    texts,
    tools,
    warned,
)
from warpd.errors import InputError
from warpd.ingest.anthropic import AnthropicDecoder
from warpd.ingest.deltas import BlockDone, ChoiceFinish, StreamEnd


@pytest.mark.parametrize("format", ["anthropic", "auto"])
def test_thinking_text_and_tool_use(format: str) -> None:
    message = final(ANTHROPIC_THINKING_TOOL, format)
    assert kinds(message) == ["reasoning", "text", "tool_call"]
    assert texts(message, "reasoning") == ["Let me think — ünïcode."]
    assert message.blocks[0].data == {"signature": "c2lnbmF0dXJl"}
    assert texts(message, "text") == ["I'll look it up."]
    assert tools(message) == [("toolu_1", "lookup", '{"q": "weather"}')]
    assert message.finish_reason == "tool_use"
    assert message.model == "claude-test"
    assert message.usage == {"input_tokens": 10, "output_tokens": 5}
    assert not message.aborted
    assert all(b.complete and not b.truncated and not b.invalid_arguments for b in message.blocks)


def test_streaming_messages_carry_fragments_then_whole_values() -> None:
    sent = messages(ANTHROPIC_THINKING_TOOL)
    text_fragments = [
        b.text for m in sent[:-1] for b in m.blocks if b.type == "text" and b.streaming
    ]
    assert text_fragments == ["", "I'll look ", "it up."]
    done = [b for m in sent[:-1] for b in m.blocks if b.type == "text" and b.complete]
    assert [b.text for b in done] == ["I'll look it up."]


def test_error_mid_stream_keeps_the_text_and_aborts() -> None:
    message = final(ANTHROPIC_ERROR_MID_STREAM)
    assert kinds(message) == ["text", "error"]
    assert texts(message, "text") == ["Hello, wor"]
    assert message.blocks[0].truncated
    error = message.blocks[1].error
    assert error is not None
    assert error.message == "overloaded_error: Overloaded"
    assert error.source == "provider"
    assert error.code == "overloaded_error"
    assert message.aborted
    assert message.abort_reason == "provider error: overloaded_error: Overloaded"


def test_tool_input_cut_by_max_tokens_is_truncated() -> None:
    message = final(ANTHROPIC_TRUNCATED_TOOL)
    assert tools(message) == [("toolu_2", "write", '{"path": "a.txt", "text": "abc')]
    (block,) = message.blocks
    assert block.truncated and block.invalid_arguments and block.complete
    assert message.finish_reason == "max_tokens"
    assert not message.aborted


def test_block_left_open_is_done_truncated_before_the_finish() -> None:
    decoder = AnthropicDecoder()
    events = [_A_START, _a_block(0, type="text", text=""), _a_delta(0, type="text_delta", text="x")]
    for event in events:
        decoder.feed(json.dumps(event).encode())
    deltas = decoder.feed(b'{"type":"message_delta","delta":{"stop_reason":"max_tokens"}}')
    assert deltas == [BlockDone(0, truncated=True), ChoiceFinish(0, "max_tokens")]
    assert decoder.feed(b'{"type":"message_stop"}') == [StreamEnd()]
    assert decoder.ended


def test_redacted_thinking_server_tool_and_result_block_pass_through() -> None:
    message = final(ANTHROPIC_SERVER_TOOL)
    assert kinds(message) == ["reasoning", "tool_call", "text", "text"]
    redacted, search, result, answer = message.blocks
    assert redacted.upstream_type == "redacted_thinking"
    assert redacted.data == {"data": "ZW5jcnlwdGVk"}
    assert redacted.text == ""
    assert search.upstream_type == "server_tool_use"
    assert tools(message) == [("srvtoolu_1", "web_search", '{"query": "example"}')]
    assert result.upstream_type == "web_search_tool_result"
    assert result.data is not None
    assert result.data["tool_use_id"] == "srvtoolu_1"
    assert result.data["content"][0]["url"] == "https://example.org/"
    assert answer.text == "It is an example."
    assert answer.data is not None
    assert [c["cited_text"] for c in answer.data["citations"]] == ["an example"]
    assert message.finish_reason == "end_turn"
    assert not any(b.truncated for b in message.blocks)


def test_tool_input_given_whole_in_the_start_event() -> None:
    stream = jsonl(
        _A_START,
        _a_block(0, type="tool_use", id="toolu_3", name="f", input={"a": [1, 2]}),
        _a_stop(0),
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
        {"type": "message_stop"},
    )
    assert tools(final(stream)) == [("toolu_3", "f", '{"a":[1,2]}')]


def test_unknown_delta_type_is_kept_in_the_block_data() -> None:
    stream = jsonl(
        _A_START,
        _a_block(0, type="text", text=""),
        _a_delta(0, type="shiny_delta", sparkle=3),
        _a_stop(0),
        {"type": "message_stop"},
    )
    message = final(stream)
    assert message.blocks[0].data == {"shiny_delta": [{"type": "shiny_delta", "sparkle": 3}]}


def test_input_ending_without_message_stop() -> None:
    cut = sse(_A_START, _a_block(0, type="text", text=""), _a_delta(0, type="text_delta", text="a"))
    message = final(cut)
    assert message.aborted
    assert message.abort_reason == "input ended before message_stop"
    assert message.blocks[0].truncated
    # With the stop reason given, only message_stop is missing: not aborted.
    stopped = cut + sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})
    message = final(stopped)
    assert not message.aborted
    assert message.finish_reason == "end_turn"


_OUT_OF_ORDER = [
    (
        [_A_START, _a_delta(2, type="text_delta", text="x")],
        "line 5: text_delta for index 2, never started: a text block starts",
        "delta-without-block",
    ),
    (
        [_A_START, _a_block(0, type="text", text=""), _a_stop(0), _a_stop(0)],
        "line 11: content_block_stop for index 0, already stopped: ignored",
        "stop-without-block",
    ),
    (
        [_A_START, _a_block(0, type="text", text=""), _a_block(0, type="text", text="")],
        "line 8: content_block_start for index 0, still open: the open block completes "
        "truncated, a new one starts",
        "block-start-while-open",
    ),
    (
        [
            _A_START,
            _a_block(0, type="tool_use", id="t", name="f", input={}),
            _a_delta(0, type="text_delta", text="x"),
        ],
        "line 8: text_delta for index 0, a tool_use block: shown in a text block beside it",
        "delta-of-other-kind",
    ),
    (
        [_A_START, {"type": "content_block_delta", "delta": {"type": "text_delta"}}],
        "line 5: Anthropic content_block_delta without the index of its content block",
        "missing-index",
    ),
]


@pytest.mark.parametrize(("events", "strict_message", "code"), _OUT_OF_ORDER)
def test_events_out_of_order_are_recorded_and_the_stream_goes_on(
    events: list[dict[str, object]], strict_message: str, code: str
) -> None:
    after = sse(_a_block(7, type="text", text="after"), _a_stop(7), *_a_end("end_turn"))
    data = sse(*events) + after
    last = final(data, "anthropic")
    assert not last.aborted and texts(last, "text")[-1] == "after"
    assert input_errors(last) == [code]
    ((line, warned_code, message),) = warned(data, "anthropic")
    assert (warned_code, f"line {line}: {message}") == (code, strict_message) or (
        code == "missing-index" and message == strict_message.split(": ", 1)[1] + ": event skipped"
    )


@pytest.mark.parametrize(("events", "strict_message", "code"), _OUT_OF_ORDER)
def test_strict_mode_events_out_of_order_end_the_stream(
    events: list[dict[str, object]], strict_message: str, code: str
) -> None:
    with pytest.raises(InputError) as caught:
        messages(sse(*events), "anthropic", strict=True)
    assert str(caught.value).endswith(strict_message)
    assert caught.value.frame == len(events) and caught.value.code == code


def test_invalid_json_and_wrong_types_are_skipped_or_read_as_absent() -> None:
    start = sse(_A_START)
    end = sse(_a_block(0, type="text", text="kept"), _a_stop(0), *_a_end("end_turn"))
    data = start + b'event: ping\ndata: {"type": "ping"\n\n' + end
    assert texts(final(data, "anthropic"), "text") == ["kept"]
    assert [w[:2] for w in warned(data, "anthropic")] == [(5, "invalid-json")]
    data = start + sse({"type": "content_block_start", "index": "0"}) + end
    assert texts(final(data, "anthropic"), "text") == ["kept"]
    ((_, code, message),) = warned(data, "anthropic")
    assert code == "schema-mismatch" and "$.index" in message
    # A content block field of the wrong shape is read as absent: the block stays.
    block = _a_block(0, type="text", text=5, citations=[])
    data = start + sse(block, _a_stop(0), *_a_end("end_turn"))
    assert kinds(final(data, "anthropic")) == ["error", "text"]
    assert [w[1] for w in warned(data, "anthropic")] == ["block-fields"]


def test_strict_mode_invalid_json_and_wrong_types_name_the_event() -> None:
    start = sse(_A_START)
    with pytest.raises(InputError, match=r"^frame 2: line 5: invalid JSON in Anthropic"):
        messages(start + b'event: ping\ndata: {"type": "ping"\n\n', "anthropic", strict=True)
    with pytest.raises(InputError) as caught:
        messages(start + sse({"type": "content_block_start", "index": "0"}), "anthropic",
                 strict=True)
    assert "not a valid Anthropic stream event" in str(caught.value)
    assert "$.index" in str(caught.value)
    with pytest.raises(InputError, match=r"not a valid Anthropic text content block.*\$\.text"):
        messages(start + sse(_a_block(0, type="text", text=5)), "anthropic", strict=True)


def _joined(path: Path, field: str) -> dict[int, str]:
    """An independent reading of a recording: ``field`` of its deltas joined per block."""
    parts: dict[int, str] = {}
    for line in path.read_text().splitlines():
        payload = line.removeprefix("data: ")
        if not payload.startswith("{"):
            continue
        event = json.loads(payload)
        if event["type"] == "content_block_delta" and field in event["delta"]:
            parts[event["index"]] = parts.get(event["index"], "") + event["delta"][field]
    return parts


EXPECTED = {
    "anthropic_text.jsonl": (
        ["text"],
        "end_turn",
        [
            "Hello! I'm doing well, thank you for asking. How are you doing today? "
            "Is there anything I can help you with?"
        ],
    ),
    "anthropic_text_then_tool_use.sse": (
        ["text", "tool_call"],
        "tool_use",
        ["I'll check the current weather in Paris for you."],
    ),
    "anthropic_thinking_signature.jsonl": (["reasoning", "text"], "end_turn", ["925 ÷ 5 = 185"]),
    "anthropic_tool_use_truncated_max_tokens.sse": (
        ["text", "tool_call"],
        "max_tokens",
        [
            "I'll create a comprehensive tax guide for someone with multiple W2s and save it "
            "in a file called taxes.txt. Let me do that for you now."
        ],
    ),
}


@pytest.mark.parametrize("path", fixture_files("anthropic_*"), ids=lambda p: getattr(p, "name", p))
def test_recorded_fixtures_with_auto_format(path: Path) -> None:
    message = final(path.read_bytes(), "auto")
    block_kinds, finish, text = EXPECTED[path.name]
    assert kinds(message) == block_kinds
    assert texts(message, "text") == text
    assert message.finish_reason == finish
    assert not message.aborted
    thinking = _joined(path, "thinking")
    assert texts(message, "reasoning") == list(thinking.values())
    arguments = _joined(path, "partial_json")
    assert [t[2] for t in tools(message)] == list(arguments.values())
    cut = path.name == "anthropic_tool_use_truncated_max_tokens.sse"
    assert [b.truncated for b in message.blocks] == [False] * (len(block_kinds) - 1) + [cut]


@pytest.mark.parametrize(
    "path",
    fixture_files("anthropic_text_then_tool_use.sse", "anthropic_thinking_signature.jsonl"),
    ids=lambda p: getattr(p, "name", p),
)
def test_recorded_tool_call_and_signature(path: Path) -> None:
    message = final(path.read_bytes())
    if "tool_use" in path.name:
        assert tools(message) == [
            ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"location": "Paris"}')
        ]
    else:
        assert texts(message, "reasoning") == [
            "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
        ]
        assert message.blocks[0].data is not None
        assert message.blocks[0].data["signature"].startswith("EvQBCkYICxgCKkAxhD4NUKFz")


def test_a_tool_without_parameters_has_arguments_of_an_empty_object() -> None:
    data = sse(
        _A_START,
        _a_block(0, type="tool_use", id="toolu_1", name="get_time", input={}),
        _a_delta(0, type="input_json_delta", partial_json=""),
        _a_stop(0),
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
        {"type": "message_stop"},
    )
    last = final(data)
    assert tools(last) == [("toolu_1", "get_time", "{}")]
    assert not last.blocks[0].invalid_arguments
