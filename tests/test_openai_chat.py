"""OpenAI chat-completions streams: every shape the recordings show, and providers' quirks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import fixture_files
from tests.ingest_streams import final, input_errors, jsonl, messages, texts, tools, warned
from warpd.blocks import is_final
from warpd.errors import InputError
from warpd.ingest.convert import convert


def chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "model": "gpt-test", "choices": list(choices),
            **extra}


def choice(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish}


def sse_chat(*chunks: dict[str, Any], done: bool = True) -> bytes:
    import json

    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


def call(index: int | None = None, id: str | None = None, name: str | None = None,
         arguments: str | None = None, type: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if index is not None:
        out["index"] = index
    if id is not None:
        out["id"] = id
    if type is not None:
        out["type"] = type
    function = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    if function:
        out["function"] = function
    return out


TEXT_WITH_USAGE = sse_chat(
    chunk(choice(role="assistant", content="", refusal=None)),
    chunk(choice(content="Hel")),
    chunk(choice(content="lo ")),
    chunk(choice(content=None)),
    chunk(choice(content="wörld ✓")),
    chunk(choice(finish="stop")),
    chunk(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
)

PARALLEL_TOOLS = sse_chat(
    chunk(choice(role="assistant", content=None)),
    chunk(choice(tool_calls=[call(0, "call_a", "get_weather", "", "function")])),
    chunk(choice(tool_calls=[call(0, arguments='{"city"')])),
    chunk(choice(tool_calls=[call(0, arguments=': "Paris"}')])),
    chunk(choice(tool_calls=[call(1, "call_b", "get_time", "", "function")])),
    chunk(choice(tool_calls=[call(1, arguments='{"tz": "CET"}')])),
    chunk(choice(finish="tool_calls")),
)

# Quirks: no index at all; id/type/name repeated on every fragment; a chunk
# without delta; empty choices (filter annotations); the last argument
# fragment in the chunk carrying finish_reason.
QUIRKS = sse_chat(
    chunk({"index": 0}),
    chunk(prompt_filter_results=[{"prompt_index": 0}]) | {"choices": []},
    chunk(choice(tool_calls=[call(None, "call_x", "search", '{"q": ', "function")])),
    chunk(choice(tool_calls=[call(None, "call_x", "search", '"cats"', "function")])),
    chunk(choice(tool_calls=[call(None, None, None, ', "n": 2}')])),
    chunk(choice(tool_calls=[call(None, "call_y", "lookup", '{"id": 7', "function")])),
    chunk(choice(finish="tool_calls", tool_calls=[call(None, "call_y", "lookup", "}")])),
)

# Several parallel calls all labelled index 0 (seen from some proxies): a new id is a new call.
SAME_INDEX = sse_chat(
    chunk(choice(tool_calls=[call(0, "c1", "f", '{"a": 1}', "function")])),
    chunk(choice(tool_calls=[call(0, "c2", "g", '{"b": 2}', "function")])),
    chunk(choice(finish="tool_calls")),
)

REASONING = jsonl(
    chunk(choice(role="assistant", content=None, reasoning_content="")),
    chunk(choice(reasoning_content="Think")),
    chunk(choice(reasoning_content="ing.")),
    chunk(choice(reasoning="More.")),
    chunk(choice(content="Answer")),
    chunk(choice(content="", finish="stop"), usage={"total_tokens": 9}),
)

N2 = sse_chat(
    chunk(choice(0, role="assistant", content="")),
    chunk(choice(1, role="assistant", content="")),
    chunk(choice(0, content="A0")),
    chunk(choice(1, content="B0")),
    chunk(choice(1, content="B1")),
    chunk(choice(0, content="A1")),
    chunk(choice(1, finish="length")),
    chunk(choice(0, finish="stop")),
)

REFUSAL = sse_chat(
    chunk(choice(role="assistant", content=None, refusal="")),
    chunk(choice(refusal="I can't ")),
    chunk(choice(refusal="help with that.")),
    chunk(choice(finish="stop")),
)

CUT_OFF = sse_chat(
    chunk(choice(content="Partial answ")),
    chunk(choice(tool_calls=[call(0, "call_c", "f", '{"x": ')])),
    done=False,
)

BAD_ARGUMENTS = sse_chat(
    chunk(choice(tool_calls=[call(0, "call_d", "f", '{"x": 1,,}')])),
    chunk(choice(finish="tool_calls")),
)

PROVIDER_ERROR = sse_chat(
    chunk(choice(content="Some text")),
    {"error": {"message": "The server had an error", "type": "server_error"}},
    done=False,
)

HAND_MADE = {
    "text_with_usage": TEXT_WITH_USAGE,
    "parallel_tools": PARALLEL_TOOLS,
    "quirks": QUIRKS,
    "same_index": SAME_INDEX,
    "reasoning": REASONING,
    "n2": N2,
    "refusal": REFUSAL,
    "cut_off": CUT_OFF,
    "bad_arguments": BAD_ARGUMENTS,
    "provider_error": PROVIDER_ERROR,
}


def test_text_stream_carries_fragments_then_the_whole_text() -> None:
    all_messages = messages(TEXT_WITH_USAGE)
    fragments = [b.text for m in all_messages[:-1] for b in m.blocks if b.streaming]
    assert fragments == ["Hel", "lo ", "wörld ✓"]
    last = all_messages[-1]
    assert is_final(last) and not last.aborted
    assert texts(last, "text") == ["Hello wörld ✓"]
    assert last.finish_reason == "stop"
    assert last.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert last.model == "gpt-test"
    assert all(b.complete and not b.streaming for b in last.blocks)
    assert [m.seq for m in all_messages] == list(range(1, len(all_messages) + 1))


def test_parallel_tool_calls_keep_id_and_name_from_their_first_fragment() -> None:
    last = final(PARALLEL_TOOLS)
    assert tools(last) == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_time", '{"tz": "CET"}'),
    ]
    assert last.finish_reason == "tool_calls"
    assert not any(b.invalid_arguments for b in last.blocks)


def test_provider_quirks_route_fragments_without_index_and_never_concatenate_names() -> None:
    last = final(QUIRKS)
    assert tools(last) == [
        ("call_x", "search", '{"q": "cats", "n": 2}'),
        ("call_y", "lookup", '{"id": 7}'),
    ]
    assert [b.index for b in last.blocks] == [0, 1]


def test_a_new_id_under_the_same_index_is_a_new_call() -> None:
    assert tools(final(SAME_INDEX)) == [("c1", "f", '{"a": 1}'), ("c2", "g", '{"b": 2}')]


def test_reasoning_content_and_reasoning_become_one_reasoning_block_before_the_text() -> None:
    all_messages = messages(REASONING)
    last = all_messages[-1]
    assert [(b.type, b.text) for b in last.blocks] == [
        ("reasoning", "Thinking.More."),
        ("text", "Answer"),
    ]
    # The reasoning block completes as soon as the answer starts.
    answer_starts = next(m for m in all_messages if any(b.type == "text" for b in m.blocks))
    reasoning = next(b for b in answer_starts.blocks if b.type == "reasoning")
    assert reasoning.complete and reasoning.text == "Thinking.More."
    # JSON lines without [DONE] still complete normally: every choice finished.
    assert not last.aborted and last.usage == {"total_tokens": 9}


def test_n2_choices_are_separate_blocks_tagged_with_their_choice() -> None:
    last = final(N2)
    assert [(b.choice, b.text) for b in last.blocks] == [(0, "A0A1"), (1, "B0B1")]
    assert last.finish_reasons == ["stop", "length"]
    assert last.finish_reason == "stop"


def test_refusal_is_a_text_block_flagged_as_refusal() -> None:
    last = final(REFUSAL)
    assert [(b.type, b.text, b.refusal) for b in last.blocks] == [
        ("text", "I can't help with that.", True)
    ]


def test_a_stream_cut_off_completes_aborted_with_every_block_it_had() -> None:
    last = final(CUT_OFF)
    assert last.aborted and last.abort_reason
    assert texts(last, "text") == ["Partial answ"]
    assert tools(last) == [("call_c", "f", '{"x": ')]
    tool_block = last.blocks[1]
    assert tool_block.truncated and tool_block.invalid_arguments and tool_block.complete


def test_invalid_arguments_complete_the_block_flagged() -> None:
    last = final(BAD_ARGUMENTS)
    assert not last.aborted
    assert last.blocks[0].invalid_arguments and not last.blocks[0].truncated


def test_a_provider_error_mid_stream_ends_it_with_an_error_block() -> None:
    last = final(PROVIDER_ERROR)
    assert last.aborted
    assert texts(last, "text") == ["Some text"]
    errors = [b for b in last.blocks if b.type == "error"]
    assert len(errors) == 1 and errors[0].error is not None
    assert errors[0].error.message == "The server had an error"
    assert errors[0].error.code == "server_error"


def test_two_streams_in_one_input_are_two_streams() -> None:
    all_messages = messages(TEXT_WITH_USAGE + PARALLEL_TOOLS)
    finals = [m for m in all_messages if is_final(m)]
    assert [m.stream for m in finals] == ["default/1", "default/2"]


def test_invalid_json_is_skipped_with_a_warning_naming_the_line() -> None:
    data = sse_chat(chunk(choice(content="ok")), chunk(choice(content="!", finish="stop")))
    data = data.replace(b"data: [DONE]", b"data: {nope\n\ndata: [DONE]")
    last = final(data, "openai")
    assert texts(last, "text") == ["ok!"] and not last.aborted
    assert last.finish_reason == "stop"
    assert input_errors(last) == ["invalid-json"]
    ((line, code, message),) = warned(data, "openai")
    assert (line, code) == (5, "invalid-json")
    assert message.startswith("invalid JSON in OpenAI chat completion chunk")
    assert message.endswith("event skipped")


def test_strict_mode_invalid_json_names_the_line() -> None:
    data = sse_chat(chunk(choice(content="ok"))) .replace(b"data: [DONE]", b"data: {nope")
    with pytest.raises(InputError, match=r"line 3: invalid JSON in OpenAI chat completion chunk"):
        list(convert([data], format="openai", strict=True))


def test_wrong_type_is_skipped_with_a_warning_naming_the_field() -> None:
    data = sse_chat(
        chunk(choice(content="a")), {"choices": [{"index": 0, "delta": {"content": 5}}]},
        chunk(choice(content="b", finish="stop")),
    )
    last = final(data, "openai")
    assert texts(last, "text") == ["ab"] and not last.aborted
    ((_, code, message),) = warned(data, "openai")
    assert code == "schema-mismatch" and "$.choices[0].delta.content" in message


def test_strict_mode_wrong_type_names_the_field() -> None:
    data = b'data: {"choices": [{"index": 0, "delta": {"content": 5}}]}\n\n'
    with pytest.raises(InputError, match=r"content"):
        list(convert([data], format="openai", strict=True))


def test_strict_bad_input_can_become_an_error_block_instead() -> None:
    data = sse_chat(chunk(choice(content="ok")), done=False) + b"data: {nope\n\n"
    last = list(convert([data], format="openai", errors="message", strict=True))[-1]
    assert last.aborted and texts(last, "text") == ["ok"]
    assert last.blocks[-1].type == "error" and last.blocks[-1].error is not None
    assert last.blocks[-1].error.source == "input"


def _final_blocks(chunks: list[bytes]) -> list[Any]:
    finals = [m for m in convert(chunks) if is_final(m)]
    return [(m.aborted, m.finish_reason, m.blocks) for m in finals]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(HAND_MADE)), cuts=st.lists(st.integers(0, 10**6), max_size=30),
       crlf=st.booleans())
def test_any_rechunking_gives_the_same_blocks(name: str, cuts: list[int], crlf: bool) -> None:
    data = HAND_MADE[name]
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    assert _final_blocks(_split(data, cuts)) == _final_blocks([HAND_MADE[name]])


@pytest.mark.parametrize(
    "path", fixture_files("openai_chat_*.sse", "deepseek_*.jsonl"), ids=lambda p: p and p.name
)
@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 10**6), max_size=40))
def test_fixture_rechunking_gives_the_same_blocks(path: Path, cuts: list[int]) -> None:
    data = path.read_bytes()
    whole = _final_blocks([data])
    assert _final_blocks(_split(data, cuts)) == whole
    assert _final_blocks([data[i : i + 1] for i in range(len(data))]) == whole or len(data) > 20000


@pytest.mark.parametrize(
    "path", fixture_files("openai_chat_*.sse", "deepseek_*.jsonl"), ids=lambda p: p and p.name
)
def test_fixture_holds_exactly_the_recorded_text_and_tool_calls(path: Path) -> None:
    import json

    expected_text: dict[int, str] = {}
    expected_reasoning: dict[int, str] = {}
    expected_args: dict[int, str] = {}
    for line in path.read_text().splitlines():
        payload = line.removeprefix("data: ").strip()
        if not payload.startswith("{"):
            continue
        for c in json.loads(payload).get("choices", []):
            delta = c.get("delta") or {}
            n = c["index"]
            expected_text[n] = expected_text.get(n, "") + (delta.get("content") or "")
            expected_reasoning[n] = expected_reasoning.get(n, "") + (
                delta.get("reasoning_content") or ""
            )
            for tc in delta.get("tool_calls") or []:
                key = tc["index"]
                expected_args[key] = expected_args.get(key, "") + tc["function"].get(
                    "arguments", ""
                )
    last = final(path.read_bytes())
    assert not last.aborted
    assert {b.choice: b.text for b in last.blocks if b.type == "text"} == {
        n: t for n, t in expected_text.items() if t
    }
    assert [b.text for b in last.blocks if b.type == "reasoning"] == [
        t for t in expected_reasoning.values() if t
    ]
    assert [a for _, _, a in tools(last)] == [expected_args[k] for k in sorted(expected_args)]
    assert all(b.complete and not b.streaming and not b.invalid_arguments for b in last.blocks)
