"""Whole (non-streaming) responses and HTTP error bodies turned into stream events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture_files
from tests.ingest_streams import final, texts, tools
from warpd.errors import InputError
from warpd.ingest.whole import completion_events, error_events, failure_events
from warpd.protocol import BlocksMessage


def whole_final(format: str, whole: dict[str, Any]) -> BlocksMessage:
    events = completion_events(format, json.dumps(whole).encode())
    return final(b"".join(e + b"\n" for e in events), format)


def error_final(format: str, status: int, reason: str, body: bytes) -> BlocksMessage:
    events = error_events(format, status, reason, body)
    return final(b"".join(e + b"\n" for e in events), format)


# Shapes from each provider's API reference (non-streaming answers).
CHAT_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024",
    "choices": [
        {"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": "Checking.", "refusal": None,
            "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"id": "call_b", "type": "function",
                 "function": {"name": "time", "arguments": "{}"}},
            ]}},
        {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}},
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
}

ANTHROPIC_MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Think first.", "signature": "sig=="},
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "warpd"}},
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 30},
}

RESPONSE = {
    "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [
            {"type": "summary_text", "text": "Plan."}]},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Done.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "ls",
         "arguments": "{\"path\": \".\"}", "status": "completed"},
    ],
    "usage": {"input_tokens": 5, "output_tokens": 7},
}


def test_a_chat_completion_is_one_complete_stream() -> None:
    message = whole_final("openai", CHAT_COMPLETION)
    assert not message.aborted and message.model == "gpt-4o-2024"
    assert message.finish_reasons == ["tool_calls", "stop"]
    assert [(b.choice, b.type) for b in message.blocks] == [
        (0, "text"), (0, "tool_call"), (0, "tool_call"), (1, "text")]
    assert texts(message, "text") == ["Checking.", "Hi"]
    assert tools(message) == [("call_a", "weather", '{"city": "Paris"}'), ("call_b", "time", "{}")]
    assert message.usage == CHAT_COMPLETION["usage"]


def test_an_anthropic_message_is_one_complete_stream() -> None:
    message = whole_final("anthropic", ANTHROPIC_MESSAGE)
    assert not message.aborted and message.finish_reason == "tool_use"
    assert [b.type for b in message.blocks] == ["reasoning", "text", "tool_call", "tool_call"]
    assert texts(message, "reasoning") == ["Think first."]
    assert message.blocks[0].data == {"signature": "sig=="}
    assert tools(message) == [("toolu_1", "search", '{"q":"warpd"}'), ("toolu_2", "now", "{}")]
    assert message.usage == ANTHROPIC_MESSAGE["usage"] and message.model == "claude-sonnet-4-5"


def test_a_response_object_is_one_complete_stream() -> None:
    message = whole_final("openai-responses", RESPONSE)
    assert not message.aborted and message.finish_reason == "completed"
    assert [b.type for b in message.blocks] == ["reasoning", "text", "tool_call"]
    assert texts(message, "text") == ["Done."] and texts(message, "reasoning") == ["Plan."]
    assert tools(message) == [("call_9", "ls", '{"path": "."}')]


def test_an_incomplete_response_ends_with_its_reason() -> None:
    cut = {**RESPONSE, "status": "incomplete",
           "incomplete_details": {"reason": "max_output_tokens"}}
    message = whole_final("openai-responses", cut)
    assert not message.aborted and message.finish_reason == "max_output_tokens"


def test_an_ollama_answer_is_its_own_stream() -> None:
    whole = {"model": "llama3", "message": {"role": "assistant", "content": "Yo",
             "thinking": "hm"}, "done": True, "done_reason": "stop", "eval_count": 3}
    message = whole_final("ollama", whole)
    assert texts(message, "text") == ["Yo"] and texts(message, "reasoning") == ["hm"]
    assert message.finish_reason == "stop" and message.usage == {"eval_count": 3}


@pytest.mark.parametrize(
    "path", fixture_files("openai_responses_*.jsonl"), ids=lambda p: p and p.name
)
def test_the_completed_response_of_a_recording_gives_the_streams_blocks(path: Path) -> None:
    # response.completed carries the whole response: what stream=false answers.
    events = [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    whole = next(e["response"] for e in events if e["type"] == "response.completed")
    streamed = final(path.read_bytes())
    converted = whole_final("openai-responses", whole)

    def shown(m: BlocksMessage) -> list[tuple[str, str | None, Any]]:
        return [(b.type, b.text, b.tool) for b in m.blocks]

    assert shown(converted) == shown(streamed)
    assert converted.finish_reason == streamed.finish_reason == "completed"


def test_not_a_json_object_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not JSON"):
        completion_events("openai", b"<html>")
    with pytest.raises(InputError, match="not a JSON object"):
        completion_events("anthropic", b"[1]")


def test_a_body_nested_too_deeply_is_an_input_error_or_its_status() -> None:
    """msgspec raises RecursionError for deep nesting: never out of these functions."""
    deep = b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InputError, match="nested too deeply"):
        completion_events("openai", deep)
    result = error_final("anthropic", 500, "Internal Server Error", deep)
    assert result.aborted
    (text,) = texts(result, "error")
    assert text.startswith("api_error: HTTP 500 Internal Server Error: '{\"choices\": [[[")


OPENAI_401 = json.dumps({"error": {"message": "Incorrect API key provided.",
                                   "type": "invalid_request_error", "param": None,
                                   "code": "invalid_api_key"}}).encode()


@pytest.mark.parametrize(
    ("format", "body", "message", "code"),
    [
        ("openai", OPENAI_401, "Incorrect API key provided.", "invalid_api_key"),
        ("openai-responses", OPENAI_401, "invalid_api_key: Incorrect API key provided.",
         "invalid_api_key"),
        ("anthropic", json.dumps({"type": "error", "error": {
            "type": "rate_limit_error", "message": "Slow down"}}).encode(),
         "rate_limit_error: Slow down", "rate_limit_error"),
        ("ollama", b'{"error":"model \\"x\\" not found"}', 'model "x" not found', None),
    ],
)
def test_a_providers_json_error_keeps_its_message(
    format: str, body: bytes, message: str, code: str | None
) -> None:
    result = error_final(format, 401, "Unauthorized", body)
    assert result.aborted and [b.type for b in result.blocks] == ["error"]
    error = result.blocks[0].error
    assert error is not None and error.source == "provider"
    assert (error.message, error.code) == (message, code)


@pytest.mark.parametrize("format", ["openai", "openai-responses", "anthropic", "ollama"])
def test_an_error_that_is_not_the_providers_json_says_the_status(format: str) -> None:
    result = error_final(format, 502, "Bad Gateway", b"<html>upstream down</html>\n")
    assert result.aborted
    (text,) = texts(result, "error")
    assert "HTTP 502 Bad Gateway: '<html>upstream down</html>'" in text


@pytest.mark.parametrize("format", ["openai", "openai-responses", "anthropic", "ollama"])
def test_a_failure_without_an_answer_is_an_error_block(format: str) -> None:
    events = failure_events(format, "cannot reach the upstream: refused")
    result = final(b"".join(e + b"\n" for e in events), format)
    assert result.aborted and "cannot reach the upstream: refused" in texts(result, "error")[0]
