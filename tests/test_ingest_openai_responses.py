"""OpenAIResponsesDecoder through convert(): hand-written streams and the recorded fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import fixture_files
from tests.ingest_streams import (
    _R_CREATED,
    RESPONSES_ERROR_EVENT,
    RESPONSES_FAILED,
    RESPONSES_INCOMPLETE,
    RESPONSES_MIXED,
    _r_added,
    _r_done,
    _r_text,
    final,
    input_errors,
    jsonl,
    kinds,
    messages,
    texts,
    tools,
    warned,
)
from warpd.errors import InputError


@pytest.mark.parametrize("format", ["openai-responses", "auto"])
def test_reasoning_tool_call_passthrough_and_text(format: str) -> None:
    message = final(RESPONSES_MIXED, format)
    assert kinds(message) == [
        "reasoning",
        "reasoning",
        "reasoning",
        "text",
        "tool_call",
        "text",
        "text",
        "text",
    ]
    assert texts(message, "reasoning") == ["Thinking hard.", "Summary one.", "Summary two."]
    search = message.blocks[3]
    assert search.upstream_type == "web_search_call"
    assert search.text == ""
    # The item's done replaced what its added said.
    assert search.data is not None
    assert search.data["status"] == "completed"
    assert search.data["action"] == {"type": "search", "query": "weather"}
    # The name comes from output_item.added, whatever item_id the deltas carried.
    assert tools(message) == [("call_9", "get_weather", '{"city":"Paris"}')]
    assert texts(message, "text") == ["", "It is sunny.", "Whole part.", "I can't say more."]
    assert [b.refusal for b in message.blocks[5:]] == [False, False, True]
    assert message.finish_reason == "completed"
    assert message.model == "gpt-test"
    assert message.usage == {"input_tokens": 7, "output_tokens": 9, "total_tokens": 16}
    assert not message.aborted
    assert not any(b.truncated for b in message.blocks)


def test_failed_response_aborts_with_the_provider_error() -> None:
    message = final(RESPONSES_FAILED)
    assert kinds(message) == ["text", "error"]
    assert texts(message, "text") == ["Partial"]
    assert message.blocks[0].truncated
    assert texts(message, "error") == ["server_error: The server had an error."]
    error = message.blocks[1].error
    assert error is not None and error.code == "server_error" and error.source == "provider"
    assert message.aborted
    assert message.abort_reason == "provider error: server_error: The server had an error."


def test_incomplete_response_ends_with_its_reason_and_truncated_blocks() -> None:
    message = final(RESPONSES_INCOMPLETE)
    assert texts(message, "reasoning") == ["Plan."]
    assert texts(message, "text") == ["A long ans"]
    assert [b.truncated for b in message.blocks] == [False, True]
    assert message.finish_reason == "max_output_tokens"
    assert message.usage == {"input_tokens": 7, "output_tokens": 9, "total_tokens": 16}
    assert not message.aborted


def test_incomplete_response_truncates_items_never_done() -> None:
    stream = jsonl(
        _R_CREATED,
        _r_added(0, id="fc_1", type="function_call", call_id="c1", name="f", arguments=""),
        {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": '{"a'},
        {"type": "response.incomplete", "response": {"status": "incomplete"}},
    )
    message = final(stream)
    assert tools(message) == [("c1", "f", '{"a')]
    assert message.blocks[0].truncated and message.blocks[0].invalid_arguments
    assert message.finish_reason == "incomplete"
    assert not message.aborted


def test_error_event_aborts_with_code_and_message() -> None:
    message = final(RESPONSES_ERROR_EVENT)
    assert kinds(message) == ["text", "error"]
    assert texts(message, "text") == ["Hi"]
    assert texts(message, "error") == ["rate_limit_exceeded: Slow down."]
    assert message.aborted
    assert message.abort_reason == "provider error: rate_limit_exceeded: Slow down."


def test_input_ending_before_completed_is_aborted() -> None:
    stream = jsonl(_R_CREATED, _r_added(0, id="m", type="message", content=[]), _r_text(0, "Hi"))
    message = final(stream)
    assert message.aborted
    assert message.abort_reason == "input ended before response.completed"
    assert texts(message, "text") == ["Hi"]
    assert message.blocks[0].truncated


def test_function_call_arguments_only_in_done_events() -> None:
    stream = jsonl(
        _R_CREATED,
        _r_added(0, id="fc_1", type="function_call", call_id="c1", name="f", arguments=""),
        {
            "type": "response.function_call_arguments.done",
            "output_index": 0,
            "arguments": '{"x":1}',
        },
        _r_done(0, id="fc_1", type="function_call", call_id="c1", name="f", arguments='{"x":1}'),
        _r_added(1, id="fc_2", type="function_call", call_id="c2", name="g", arguments=""),
        _r_done(1, id="fc_2", type="function_call", call_id="c2", name="g", arguments="{}"),
        {"type": "response.completed", "response": {"status": "completed"}},
    )
    assert tools(final(stream)) == [("c1", "f", '{"x":1}'), ("c2", "g", "{}")]


_OUT_OF_ORDER = [
    (
        [_R_CREATED, _r_text(0, "x")],
        "frame 2: line 2: response.output_text.delta for output_index 0 "
        "before its response.output_item.added: a message item starts",
        "event-without-item",
        ["x"],
    ),
    (
        [
            _R_CREATED,
            _r_added(0, id="m", type="message", content=[]),
            _r_text(0, "a"),
            _r_done(0, id="m", type="message"),
            _r_text(0, "x"),
        ],
        "frame 5: line 5: response.output_text.delta for output_index 0 "
        "after its response.output_item.done: a message item starts",
        "event-without-item",
        ["a", "x"],
    ),
    (
        [_R_CREATED, _r_added(0, id="r", type="reasoning"), _r_text(0, "x")],
        "frame 3: line 3: response.output_text.delta for output_index 0, "
        "a reasoning item (expected message): shown in a block of its own",
        "event-for-other-item",
        ["x"],
    ),
    (
        [
            _R_CREATED,
            _r_added(0, id="m", type="message"),
            _r_text(0, "a"),
            _r_added(0, id="m", type="message"),
            _r_text(0, "x"),
        ],
        "frame 4: line 4: response.output_item.added for output_index 0, still open: "
        "its blocks complete truncated, a new item starts",
        "item-added-again",
        ["a", "x"],
    ),
    (
        [_R_CREATED, {"type": "response.function_call_arguments.delta", "delta": "{"}],
        "frame 2: line 2: response.function_call_arguments.delta without output_index",
        "missing-index",
        [],
    ),
    (
        [_R_CREATED, _r_added(0, id="f", type="function_call", name=7)],
        "frame 2: line 2: response.output_item.added: item field 'name' is not a string (7): "
        "read as absent",
        "item-fields",
        [],
    ),
]


@pytest.mark.parametrize(("events", "strict_message", "code", "text"), _OUT_OF_ORDER)
def test_events_out_of_order_or_malformed_are_repaired(
    events: list[dict[str, object]], strict_message: str, code: str, text: list[str]
) -> None:
    data = jsonl(*events, {"type": "response.completed", "response": {"status": "completed"}})
    last = final(data, "openai-responses")
    assert not last.aborted and last.finish_reason == "completed"
    assert texts(last, "text") == text
    assert input_errors(last) == [code]
    ((line, warned_code, message),) = warned(data, "openai-responses")
    assert warned_code == code
    assert strict_message.startswith(f"frame {line}: line {line}: {message.split(': event')[0]}")


@pytest.mark.parametrize(("events", "strict_message", "code", "text"), _OUT_OF_ORDER)
def test_strict_mode_events_out_of_order_or_malformed_end_the_stream(
    events: list[dict[str, object]], strict_message: str, code: str, text: list[str]
) -> None:
    with pytest.raises(InputError) as caught:
        messages(jsonl(*events), "openai-responses", strict=True)
    assert str(caught.value) == strict_message


def test_wrong_field_type_is_skipped_with_a_warning_naming_the_field() -> None:
    bad = b'{"type":"response.output_text.delta","output_index":0,"delta":5}\n'
    stream = jsonl(_R_CREATED) + bad
    ((line, code, message),) = warned(stream, "openai-responses")
    assert (line, code) == (2, "schema-mismatch")
    assert message.startswith("not a valid OpenAI Responses event") and "$.delta" in message


def test_strict_mode_wrong_field_type_names_the_field() -> None:
    stream = (
        jsonl(_R_CREATED) + b'{"type":"response.output_text.delta","output_index":0,"delta":5}\n'
    )
    with pytest.raises(InputError) as caught:
        messages(stream, "openai-responses", strict=True)
    assert str(caught.value).startswith("frame 2: line 2: not a valid OpenAI Responses event")
    assert "$.delta" in str(caught.value)


def _recorded_deltas(path: Path, event_type: str) -> list[str]:
    """An independent reading of a recording: the deltas of ``event_type`` joined per item."""
    joined: dict[int, str] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == event_type:
            joined[event["output_index"]] = joined.get(event["output_index"], "") + event["delta"]
    return list(joined.values())


@pytest.mark.parametrize(
    "path", fixture_files("openai_responses_*"), ids=lambda p: getattr(p, "name", p)
)
def test_recorded_fixtures_with_auto_format(path: Path) -> None:
    message = final(path.read_bytes(), "auto")
    assert not message.aborted
    assert message.finish_reason == "completed"
    assert message.model == "gpt-5.1-codex-max"
    assert message.usage is not None and message.usage["total_tokens"] > 0
    assert all(b.complete and not b.truncated for b in message.blocks)
    reasoning = _recorded_deltas(path, "response.reasoning_summary_text.delta")
    assert texts(message, "reasoning") == reasoning
    assert texts(message, "text") == _recorded_deltas(path, "response.output_text.delta")
    if path.name == "openai_responses_output_text.jsonl":
        assert kinds(message) == ["text"]
        assert texts(message, "text") == ["The final result is **570**."]
    else:
        assert kinds(message) == ["reasoning", "tool_call"]
        assert reasoning[0].startswith("**Calculating step-by-step using calculator**\n\nI'll")
        assert reasoning[0].endswith("multiply that by 10, reporting the final product.")
        assert tools(message) == [
            ("call_AB6AaRZ1FYZB2RwS6A5vbdqn", "calculator", '{"a":12,"b":7,"op":"add"}')
        ]


def test_response_failed_after_the_error_event_belongs_to_the_same_stream() -> None:
    from tests.ingest_streams import jsonl, messages
    from warpd.blocks import is_final

    data = jsonl(
        {"type": "response.created",
         "response": {"id": "r1", "model": "m", "status": "in_progress"}},
        {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 1},
        {"type": "response.failed",
         "response": {"id": "r1", "status": "failed",
                      "error": {"code": "server_error", "message": "boom"}}},
    )
    finals = [m for m in messages(data) if is_final(m)]
    assert len(finals) == 1 and finals[0].aborted


def test_text_that_only_the_done_item_carries_is_kept() -> None:
    data = jsonl(
        _R_CREATED,
        _r_added(0, type="reasoning", id="rs_1", summary=[]),
        _r_done(0, type="reasoning", id="rs_1",
                summary=[{"type": "summary_text", "text": "Thought it over."}]),
        _r_added(1, type="message", id="msg_1", role="assistant", content=[]),
        _r_done(1, type="message", id="msg_1", role="assistant", status="completed",
                content=[{"type": "output_text", "text": "The whole answer.", "annotations": []}]),
        {"type": "response.completed",
         "response": {"id": "r", "model": "m", "status": "completed", "output": []}},
    )
    last = final(data)
    assert texts(last, "reasoning") == ["Thought it over."]
    assert texts(last, "text") == ["The whole answer."]
    assert not last.aborted
