"""OllamaDecoder through convert(): /api/chat and /api/generate streams, errors, the recording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import fixture_files
from tests.ingest_streams import (
    OLLAMA_CHAT_TOOLS,
    OLLAMA_ERROR,
    OLLAMA_GENERATE,
    _o_chat,
    final,
    jsonl,
    kinds,
    messages,
    texts,
    tools,
    warned,
)
from warpd.errors import InputError


@pytest.mark.parametrize("format", ["ollama", "auto"])
def test_chat_thinking_content_and_tool_calls(format: str) -> None:
    message = final(OLLAMA_CHAT_TOOLS, format)
    assert kinds(message) == ["reasoning", "text", "tool_call", "tool_call"]
    assert texts(message, "reasoning") == ["The user wants the weather."]
    assert texts(message, "text") == ["Checking."]
    # Arguments arrive as a JSON object and leave as its JSON text.
    assert tools(message) == [
        ("", "get_weather", '{"city":"Toronto","n":1}'),
        ("", "get_time", '{"tz":"EST"}'),
    ]
    assert not any(b.invalid_arguments or b.truncated for b in message.blocks)
    assert message.finish_reason == "stop"
    assert message.model == "qwen3"
    assert message.usage == {"prompt_eval_count": 20, "eval_count": 30, "total_duration": 1234}
    assert not message.aborted


def test_tool_call_id_and_string_arguments_are_kept() -> None:
    call = {"id": "call_7", "function": {"name": "f", "arguments": '{"a": 1}'}}
    stream = jsonl(_o_chat(tool_calls=[call]), {**_o_chat(done=True), "done_reason": "stop"})
    assert tools(final(stream)) == [("call_7", "f", '{"a": 1}')]


def test_text_after_a_tool_call_is_a_new_block() -> None:
    stream = jsonl(
        _o_chat(content="Before."),
        _o_chat(tool_calls=[{"function": {"name": "f", "arguments": {}}}]),
        _o_chat(content="After."),
        {**_o_chat(done=True), "done_reason": "stop"},
    )
    message = final(stream)
    assert kinds(message) == ["text", "tool_call", "text"]
    assert texts(message, "text") == ["Before.", "After."]


def test_generate_stream() -> None:
    message = final(OLLAMA_GENERATE)
    assert kinds(message) == ["reasoning", "text"]
    assert texts(message, "reasoning") == ["Hm."]
    assert texts(message, "text") == ["Héllo there"]
    assert message.finish_reason == "length"
    assert message.usage == {"eval_count": 3}


def test_error_line_aborts_with_an_error_block() -> None:
    message = final(OLLAMA_ERROR)
    assert kinds(message) == ["text", "error"]
    assert texts(message, "text") == ["Par"]
    assert texts(message, "error") == ["model runner has unexpectedly stopped"]
    assert message.aborted
    assert message.abort_reason == "provider error: model runner has unexpectedly stopped"


def test_error_as_the_first_line_is_detected() -> None:
    message = final(b'{"error":"model \\"nope\\" not found, try pulling it first"}\n')
    assert texts(message, "error") == ['model "nope" not found, try pulling it first']
    assert message.aborted


def test_input_ending_before_done() -> None:
    message = final(jsonl(_o_chat(content="Half")))
    assert message.aborted
    assert message.abort_reason == "input ended before done: true"
    assert message.blocks[0].truncated


_WRONG_TYPES = [
    (b'{"model":"m","response":"x","done":"no"}', "$.done"),
    (b'{"model":"m","message":{"content":5},"done":false}', "$.message.content"),
    (b'{"model":"m","message":{"tool_calls":{}},"done":false}', "$.message.tool_calls"),
]


@pytest.mark.parametrize(("line", "expected"), _WRONG_TYPES)
def test_wrong_types_are_skipped_with_a_warning_naming_the_field(
    line: bytes, expected: str
) -> None:
    stream = jsonl(_o_chat(content="ok")) + line + b"\n" + jsonl(_o_chat(content="!", done=True))
    last = final(stream, "ollama")
    assert texts(last, "text") == ["ok!"] and not last.aborted
    ((at, code, message),) = warned(stream, "ollama")
    assert (at, code) == (2, "schema-mismatch")
    assert message.startswith("not a valid Ollama stream object") and expected in message


@pytest.mark.parametrize(("line", "expected"), _WRONG_TYPES)
def test_strict_mode_wrong_types_name_the_field(line: bytes, expected: str) -> None:
    stream = jsonl(_o_chat(content="ok")) + line + b"\n"
    with pytest.raises(InputError) as caught:
        messages(stream, "ollama", strict=True)
    assert str(caught.value).startswith("frame 2: line 2: not a valid Ollama stream object")
    assert expected in str(caught.value)


def test_invalid_json_is_skipped() -> None:
    stream = jsonl(_o_chat(content="ok")) + b'{"done": tru\n' + jsonl(_o_chat(done=True))
    assert texts(final(stream, "ollama"), "text") == ["ok"]
    assert [w[:2] for w in warned(stream, "ollama")] == [(2, "invalid-json")]


def test_strict_mode_invalid_json() -> None:
    with pytest.raises(InputError, match=r"^frame 2: line 2: invalid JSON in Ollama"):
        messages(jsonl(_o_chat(content="ok")) + b'{"done": tru\n', "ollama", strict=True)


@pytest.mark.parametrize("path", fixture_files("ollama_*"), ids=lambda p: getattr(p, "name", p))
def test_recorded_generate_stream_with_auto_format(path: Path) -> None:
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    message = final(path.read_bytes(), "auto")
    assert kinds(message) == ["reasoning", "text"]
    assert texts(message, "reasoning") == ["".join(o.get("thinking", "") for o in objects)]
    assert texts(message, "text") == ["Fluffy, swift, gentle."]
    assert texts(message, "reasoning")[0].startswith('User asks: "Describe a rabbit in 3 words".')
    assert message.finish_reason == "stop"
    assert message.model == "gpt-oss:120b"
    assert message.usage == {
        "prompt_eval_count": 81,
        "eval_count": 53,
        "total_duration": 602776194,
    }
    assert not message.aborted
    assert all(b.complete and not b.truncated for b in message.blocks)
