"""Every field shape real servers send, per decoder, and the repairs of out-of-order events.

Each test feeds a hand-written stream through ``convert`` (framing, decoder,
assembler) and reads the final message, which must also encode (no lone
UTF-16 surrogate may reach the encoder).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.ingest_streams import (
    _A_START,
    _a_block,
    _a_delta,
    _a_end,
    _a_stop,
    input_errors,
    jsonl,
    kinds,
    messages,
    sse,
    texts,
    tools,
    warned,
)
from warpd.blocks import is_final
from warpd.protocol import BlocksMessage, encode


def last(data: bytes, format: str) -> BlocksMessage:
    """The final message of the one stream in ``data``, checked to encode."""
    finals = [m for m in messages(data, format) if is_final(m)]
    assert len(finals) == 1
    for message in messages(data, format):
        encode(message)
    return finals[0]


# -- OpenAI chat -------------------------------------------------------------------


def chat(*chunks: dict[str, Any], done: bool = True) -> bytes:
    return sse(*chunks, named=False) + (b"data: [DONE]\n\n" if done else b"")


def delta(finish: str | None = None, index: int = 0, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": index, "delta": fields, "finish_reason": finish}]}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain", [("text", "plain")]),
        (None, []),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], [("text", "ab")]),
        (["bare ", "strings"], [("text", "bare strings")]),
        (
            [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
             {"type": "text", "text": "ok"}],
            [("reasoning", "hmm"), ("text", "ok")],
        ),
        ([{"type": "thinking", "thinking": "a string"}], [("reasoning", "a string")]),
        ([], []),
    ],
)  # fmt: skip
def test_chat_content_shapes(content: Any, expected: list[tuple[str, str]]) -> None:
    message = last(chat(delta(content=content), delta("stop", content="")), "openai")
    assert [(b.type, b.text) for b in message.blocks] == expected
    assert message.finish_reason == "stop" and not message.aborted


def test_chat_unknown_content_parts_are_passed_through() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.org/x.png"}}
    message = last(chat(delta(content=["see ", part, "this"]), delta("stop")), "openai")
    assert [(b.type, b.text, b.upstream_type) for b in message.blocks] == [
        ("text", "see this", None),
        ("text", "", "image_url"),
    ]
    assert message.blocks[1].data == part


def test_chat_reasoning_fields_as_part_lists() -> None:
    stream = chat(
        delta(reasoning_content=[{"type": "text", "text": "think"}]),
        delta(reasoning=["ing"]),
        delta("stop", content="done"),
    )
    assert [(b.type, b.text) for b in last(stream, "openai").blocks] == [
        ("reasoning", "thinking"),
        ("text", "done"),
    ]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"city": "Paris"}', '{"city": "Paris"}'),
        ({"city": "Paris", "days": [1, 2]}, '{"city":"Paris","days":[1,2]}'),
        ([1, "two"], '[1,"two"]'),
        (None, ""),
    ],
)
def test_chat_arguments_as_a_string_or_a_json_value(arguments: Any, expected: str) -> None:
    call = {"index": 0, "id": "c1", "type": "function",
            "function": {"name": "f", "arguments": arguments}}  # fmt: skip
    message = last(chat(delta(tool_calls=[call]), delta("tool_calls")), "openai")
    assert tools(message) == [("c1", "f", expected)]
    assert not message.blocks[0].invalid_arguments


def test_chat_empty_strings_are_absent_values() -> None:
    first = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    # Servers that repeat every field, empty: no new call, no lost name, no finish.
    again = {"index": 0, "id": "", "type": "", "function": {"name": "", "arguments": '{"a":1}'}}
    message = last(
        chat(
            {"model": "m", **delta("", tool_calls=[first])},
            {"model": "", **delta("", tool_calls=[again])},
            delta("tool_calls"),
        ),
        "openai",
    )
    assert tools(message) == [("c1", "f", '{"a":1}')]
    assert message.blocks[0].tool is not None and message.blocks[0].tool.type == "function"
    assert message.finish_reason == "tool_calls" and message.model == "m"


def test_chat_a_new_id_without_a_name_is_the_same_call() -> None:
    """Some servers (Poolside) send another id on every fragment after a call's first one."""
    start = {"index": 0, "id": "call_A", "type": "function",
             "function": {"name": "read", "arguments": ""}}  # fmt: skip
    more = [{"index": 0, "id": "call_B", "function": {"arguments": part}}
            for part in ('{"path":', ' "/x"}')]  # fmt: skip
    message = last(
        chat(*(delta(tool_calls=[c]) for c in [start, *more]), delta("tool_calls")), "openai"
    )
    assert tools(message) == [("call_A", "read", '{"path": "/x"}')]
    # A new id with a name at the same index is still a new call (index 0 for every call).
    again = {"index": 0, "id": "call_C", "type": "function",
             "function": {"name": "read", "arguments": '{"path": "/y"}'}}  # fmt: skip
    message = last(
        chat(*(delta(tool_calls=[c]) for c in [start, *more, again]), delta("tool_calls")),
        "openai",
    )
    assert tools(message) == [
        ("call_A", "read", '{"path": "/x"}'),
        ("call_C", "read", '{"path": "/y"}'),
    ]


def test_chat_a_tool_fragment_carrying_nothing_starts_no_call() -> None:
    """Gemini sends a fragment holding only ``extra_content`` (a thought signature)."""
    signature = {"extra_content": {"google": {"thought_signature": "c2ln"}}}
    message = last(
        chat(delta(content="Answer"), delta(tool_calls=[signature]), delta("stop")), "openai"
    )
    assert kinds(message) == ["text"] and texts(message, "text") == ["Answer"]
    # After a call, it is that call's (and adds nothing to it).
    call = {"id": "function-call-1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Sydney"}'}}
    message = last(chat(delta(tool_calls=[call]), delta(tool_calls=[signature]), delta("stop")),
                   "openai")  # fmt: skip
    assert tools(message) == [("function-call-1", "get_weather", '{"location": "Sydney"}')]


def test_chat_an_error_field_line_is_the_providers_error() -> None:
    """llama.cpp's server sent a mid-stream error as an ``error:`` SSE field until late 2025."""
    line = b'error: {"code":500,"message":"the request exceeds the context size","type":"x"}\n\n'
    message = last(chat(delta(content="Part"), done=False) + line, "openai")
    assert message.aborted and texts(message, "text") == ["Part"]
    assert [(b.error.source, b.error.code, b.text) for b in message.blocks if b.error] == [
        ("provider", "500", "the request exceeds the context size")
    ]
    # As the first line of the input, it is still SSE (not plain text), and any format's.
    for format in ("auto", "openai"):
        message = last(line + b"data: [DONE]\n\n", format)
        assert message.aborted and [b.text for b in message.blocks] == [
            "the request exceeds the context size"
        ]
    # Not JSON: the error is its text.
    busy = b"error: server busy\n\n"
    message = last(chat(delta(content="Part"), done=False) + busy, "openai")
    assert message.aborted and [b.text for b in message.blocks if b.error] == ["server busy"]


def test_chat_finish_reason_empty_never_ends_a_choice() -> None:
    message = last(chat(delta("", content="a"), delta("", content="b"), delta("stop")), "openai")
    assert texts(message, "text") == ["ab"] and message.finish_reason == "stop"
    # Without [DONE] and without a real finish reason, the stream was cut.
    cut = last(chat(delta("", content="a"), done=False), "openai")
    assert cut.aborted


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": [{"index": 0, "delta": None, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": None, "content": None}}]},
        {"choices": None},
        {"choices": [{"index": None, "delta": {"function_call": None}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": None}]}}]},
    ],
)
def test_chat_nulls_where_objects_or_lists_go(chunk: dict[str, Any]) -> None:
    stream = chat(delta(content="a"), chunk, delta("stop", content="b"))
    assert warned(stream, "openai") == []
    message = last(stream, "openai")
    assert "ab" in "".join(texts(message, "text")) and not message.aborted


def test_chat_usage_from_x_groq_when_the_top_level_has_none() -> None:
    groq = {"id": "req_1", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    message = last(chat(delta(content="a"), {**delta("stop"), "x_groq": groq}), "openai")
    assert message.usage == {"prompt_tokens": 3, "completion_tokens": 2}
    top = {**delta("stop"), "x_groq": groq, "usage": {"total_tokens": 9}}
    assert last(chat(delta(content="a"), top), "openai").usage == {"total_tokens": 9}


def test_chat_error_as_a_string() -> None:
    message = last(chat(delta(content="a"), {"error": "overloaded"}, done=False), "openai")
    assert message.aborted and texts(message, "error") == ["overloaded"]


# -- UTF-16 surrogates -------------------------------------------------------------

# JSON escapes as providers write them: 🚀 is \ud83d\ude80.
_HIGH, _LOW = b"\\ud83d", b"\\ude80"


def raw_chat(*contents: bytes, field: bytes = b"content") -> bytes:
    """Chat chunks whose ``field`` JSON string literals are given as raw bytes."""
    body = b"".join(
        b'data: {"choices": [{"index": 0, "delta": {"' + field + b'": "' + c + b'"}}]}\n\n'
        for c in contents
    )
    return body + b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'


@pytest.mark.parametrize("field", [b"content", b"reasoning_content"])
def test_a_surrogate_pair_split_across_deltas_is_rejoined(field: bytes) -> None:
    stream = raw_chat(b"go " + _HIGH, _LOW + b" now", field=field)
    message = last(stream, "openai")
    assert [b.text for b in message.blocks] == ["go \U0001f680 now"]
    assert warned(stream, "openai") == []


def test_a_pair_in_one_delta_and_pairs_split_many_times() -> None:
    stream = raw_chat(_HIGH + _LOW, _HIGH, _LOW + _HIGH, _LOW)
    assert texts(last(stream, "openai"), "text") == ["\U0001f680" * 3]


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        ((b"a" + _HIGH, b"b"), "a\ufffdb"),  # the low half never came
        ((_LOW + b"x",), "\ufffdx"),  # a low half alone
        ((b"a" + _HIGH + b"b",), "a\ufffdb"),  # a high half inside a string
    ],
)
def test_a_lone_surrogate_becomes_a_replacement_character(
    contents: tuple[bytes, ...], expected: str
) -> None:
    assert texts(last(raw_chat(*contents), "openai"), "text") == [expected]


def test_a_half_pair_left_when_its_block_ends_is_recorded() -> None:
    stream = raw_chat(b"a" + _HIGH)
    message = last(stream, "openai")
    assert texts(message, "text") == ["a"]
    assert [code for _, code, _ in warned(stream, "openai")] == ["unpaired-surrogate"]


def test_lone_surrogates_outside_text_never_reach_the_encoder() -> None:
    stream = (
        b'data: {"model": "m\\ud83d", "choices": [{"index": 0, "delta": {"tool_calls": '
        b'[{"index": 0, "id": "c\\ude80", "function": {"name": "f\\ud83d", '
        b'"arguments": {"k": "v\\ud83d"}}}]}}], "usage": {"note\\ud83d": "x\\ude80"}}\n\n'
        b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
    )
    message = last(stream, "openai")
    assert message.model == "m\ufffd"
    assert tools(message) == [("c\ufffd", "f\ufffd", '{"k":"v\ufffd"}')]
    assert message.usage == {"note\ufffd": "x\ufffd"}


def test_surrogates_in_other_formats() -> None:
    anthropic = (
        sse(_A_START, _a_block(0, type="text", text=""))
        + b'data: {"type": "content_block_delta", "index": 0, "delta": '
        b'{"type": "text_delta", "text": "hi ' + _HIGH + b'"}}\n\n'
        + b'data: {"type": "content_block_delta", "index": 0, "delta": '
        b'{"type": "text_delta", "text": "' + _LOW + b'"}}\n\n'
        + sse(_a_stop(0), *_a_end("end_turn"))
    )
    assert texts(last(anthropic, "anthropic"), "text") == ["hi \U0001f680"]
    ollama = (
        b'{"model": "m", "message": {"content": "' + _HIGH + b'"}, "done": false}\n'
        b'{"model": "m", "message": {"content": "' + _LOW + b'!"}, "done": true}\n'
    )
    assert texts(last(ollama, "ollama"), "text") == ["\U0001f680!"]
    responses = jsonl(
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message"}}
    ) + (
        b'{"type": "response.output_text.delta", "output_index": 0, "delta": "' + _HIGH + b'"}\n'
        b'{"type": "response.output_text.delta", "output_index": 0, "delta": "' + _LOW + b'"}\n'
    ) + jsonl({"type": "response.completed", "response": {"status": "completed"}})
    assert texts(last(responses, "openai-responses"), "text") == ["\U0001f680"]


# -- Anthropic ---------------------------------------------------------------------


def anthropic(*events: dict[str, Any]) -> bytes:
    return sse(_A_START, *events, *_a_end("end_turn"))


def test_anthropic_thinking_delta_in_a_text_block_goes_to_a_reasoning_block() -> None:
    stream = anthropic(
        _a_block(0, type="text", text=""),
        _a_delta(0, type="thinking_delta", thinking="hmm"),
        _a_delta(0, type="signature_delta", signature="c2ln"),
        _a_delta(0, type="text_delta", text="Hi"),
        _a_delta(0, type="thinking_delta", thinking=" more"),
        _a_stop(0),
    )
    message = last(stream, "anthropic")
    assert [(b.type, b.text) for b in message.blocks if b.type != "error"] == [
        ("text", "Hi"),
        ("reasoning", "hmm more"),
    ]
    reasoning = [b for b in message.blocks if b.type == "reasoning"][0]
    assert reasoning.data == {"signature": "c2ln"} and reasoning.complete
    # Recorded once, when the reasoning block beside the text block opened.
    assert input_errors(message) == ["delta-of-other-kind"]


@pytest.mark.parametrize(
    ("delta", "kind", "value"),
    [
        ({"type": "text_delta", "text": "t"}, "text", "t"),
        ({"type": "thinking_delta", "thinking": "r"}, "reasoning", "r"),
        ({"type": "input_json_delta", "partial_json": '{"a": 1}'}, "tool_call", '{"a": 1}'),
    ],
)
def test_anthropic_a_delta_for_a_block_never_started_starts_one(
    delta: dict[str, Any], kind: str, value: str
) -> None:
    stream = anthropic(_a_delta(3, **delta), _a_stop(3))
    message = last(stream, "anthropic")
    (block,) = [b for b in message.blocks if b.type != "error"]
    assert block.type == kind and block.complete and not block.truncated
    got = block.tool.function.arguments if block.tool is not None else block.text
    assert got == value
    assert input_errors(message) == ["delta-without-block"]


def test_anthropic_a_delta_after_its_block_stopped_starts_a_new_one() -> None:
    stream = anthropic(
        _a_block(0, type="text", text="a"), _a_stop(0), _a_delta(0, type="text_delta", text="b")
    )
    message = last(stream, "anthropic")
    assert texts(message, "text") == ["a", "b"] and not message.aborted


def test_anthropic_a_start_at_an_open_index_truncates_the_open_block() -> None:
    stream = anthropic(
        _a_block(0, type="tool_use", id="t1", name="f", input={}),
        _a_delta(0, type="input_json_delta", partial_json='{"a'),
        _a_block(0, type="text", text="next"),
        _a_stop(0),
    )
    message = last(stream, "anthropic")
    tool, text = [b for b in message.blocks if b.type != "error"]
    assert tool.truncated and tool.tool is not None and tool.tool.function.arguments == '{"a'
    assert text.text == "next" and not text.truncated
    assert input_errors(message) == ["block-start-while-open"]


def test_anthropic_a_start_again_after_a_stop_is_a_new_block() -> None:
    stream = anthropic(
        _a_block(0, type="text", text="one"), _a_stop(0),
        _a_block(0, type="text", text="two"), _a_stop(0),
    )  # fmt: skip
    message = last(stream, "anthropic")
    assert texts(message, "text") == ["one", "two"]
    assert input_errors(message) == ["block-start-again"]


def test_anthropic_message_start_twice_keeps_the_stream() -> None:
    second = {**_A_START, "message": {**_A_START["message"], "model": "other"}}
    stream = sse(_A_START, _a_block(0, type="text", text="a"), second, _a_stop(0),
                 *_a_end("end_turn"))  # fmt: skip
    message = last(stream, "anthropic")
    assert texts(message, "text") == ["a"] and message.model == "other"
    assert input_errors(message) == ["message-start-again"]


@pytest.mark.parametrize("block", [None, {}, {"type": ""}, {"type": 5}])
def test_anthropic_a_start_without_a_usable_block_starts_a_text_block(block: Any) -> None:
    start = {"type": "content_block_start", "index": 0, "content_block": block}
    message = last(anthropic(start, _a_delta(0, type="text_delta", text="x"), _a_stop(0)),
                   "anthropic")  # fmt: skip
    assert texts(message, "text") == ["x"]
    assert input_errors(message) in (["block-start-without-block"], ["schema-mismatch"])


def test_anthropic_a_delta_type_without_a_type_is_kept_as_data() -> None:
    stream = anthropic(_a_block(0, type="text", text="a"), _a_delta(0, other=1), _a_stop(0))
    message = last(stream, "anthropic")
    assert texts(message, "text") == ["a"] and message.blocks[0].data == {"deltas": [{"other": 1}]}


# -- OpenAI Responses ----------------------------------------------------------------

_CREATED = {"type": "response.created", "response": {"model": "gpt-5"}}
_COMPLETED = {"type": "response.completed", "response": {"status": "completed"}}
_CUSTOM = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_9", "name": "apply_patch"}
_PATCH = "*** Begin Patch\n*** Update File: a.py\n-x\n+y\n*** End Patch"


def responses(*events: dict[str, Any]) -> bytes:
    return jsonl(_CREATED, *events, _COMPLETED)


def _custom_added(**item: Any) -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": 0,
            "item": {**_CUSTOM, "input": "", **item}}  # fmt: skip


def _custom_done(**item: Any) -> dict[str, Any]:
    return {"type": "response.output_item.done", "output_index": 0,
            "item": {**_CUSTOM, "input": _PATCH, "status": "completed", **item}}  # fmt: skip


@pytest.mark.parametrize(
    "events",
    [
        # Deltas, then the .done event and the done item repeating the input.
        [
            _custom_added(),
            {"type": "response.custom_tool_call_input.delta", "output_index": 0,
             "item_id": "ctc_1", "delta": _PATCH[:20]},
            {"type": "response.custom_tool_call_input.delta", "output_index": 0,
             "item_id": "ctc_1", "delta": _PATCH[20:]},
            {"type": "response.custom_tool_call_input.done", "output_index": 0,
             "item_id": "ctc_1", "input": _PATCH},
            _custom_done(),
        ],
        # Only the .done event carries the input.
        [
            _custom_added(),
            {"type": "response.custom_tool_call_input.done", "output_index": 0, "input": _PATCH},
            _custom_done(),
        ],
        # Only the done item carries it.
        [_custom_added(), _custom_done()],
        # The input whole in the added item.
        [_custom_added(input=_PATCH), _custom_done()],
    ],
)  # fmt: skip
def test_responses_custom_tool_calls_are_tool_calls_with_free_form_input(
    events: list[dict[str, Any]],
) -> None:
    stream = responses(*events)
    message = last(stream, "openai-responses")
    (block,) = message.blocks
    assert block.type == "tool_call" and block.tool is not None
    assert (block.tool.id, block.tool.type, block.tool.function.name) == (
        "call_9",
        "custom",
        "apply_patch",
    )
    assert block.tool.function.arguments == _PATCH
    assert not block.invalid_arguments and block.complete
    assert warned(stream, "openai-responses") == []


def test_responses_function_call_input_that_is_not_json_is_still_flagged() -> None:
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}
    stream = responses(
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
    )
    assert last(stream, "openai-responses").blocks[0].invalid_arguments


def test_responses_a_done_item_never_added_keeps_its_content() -> None:
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"a":1}'}
    text = {"type": "message", "content": [{"type": "output_text", "text": "hi"}]}
    stream = responses(
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.output_item.done", "output_index": 1, "item": text},
    )
    message = last(stream, "openai-responses")
    assert tools(message) == [("c", "f", '{"a":1}')] and texts(message, "text") == ["hi"]
    assert input_errors(message) == ["done-without-item", "done-without-item"]


def test_responses_without_output_index_go_to_their_items() -> None:
    """llama.cpp's /v1/responses (and servers built on it) send no output_index at all."""
    def added(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "response.output_item.added", "item": item}

    def done(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "response.output_item.done", "item": {**item, "status": "completed"}}

    reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "content": []}
    call = {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": ""}
    final = last(
        responses(
            added(reasoning),
            {"type": "response.reasoning_text.delta", "item_id": "rs_1", "delta": "Think"},
            done(reasoning),
            added(message),
            {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hel"},
            {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "lo"},
            done(message),
            added(call),
            # An item_id that names no item (the call has no id): the latest item's.
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{}"},
            done({**call, "arguments": "{}"}),
        ),
        "openai-responses",
    )
    assert kinds(final) == ["reasoning", "text", "tool_call"] and input_errors(final) == []
    assert texts(final, "reasoning") == ["Think"] and texts(final, "text") == ["Hello"]
    assert tools(final) == [("call_1", "get", "{}")]
    # From a server that sends output_index, an event without it is still skipped.
    indexed = responses(
        {"type": "response.output_item.added", "output_index": 0, "item": message},
        {"type": "response.output_text.delta", "delta": "stray"},
        {"type": "response.output_text.delta", "output_index": 0, "delta": "ok"},
    )
    final = last(indexed, "openai-responses")
    assert texts(final, "text") == ["ok"] and input_errors(final) == ["missing-index"]


def test_responses_arguments_before_their_item_start_a_tool_call() -> None:
    stream = responses(
        {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": '{"a"'},
        {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": ":1}"},
    )
    message = last(stream, "openai-responses")
    assert tools(message) == [("", "", '{"a":1}')]
    assert input_errors(message) == ["event-without-item"]


# -- Ollama ------------------------------------------------------------------------


def ollama(*lines: dict[str, Any]) -> bytes:
    return jsonl(*lines)


def _o(done: bool = False, **fields: Any) -> dict[str, Any]:
    return {"model": "qwen3", "done": done, **fields}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("text", [("text", "text")]),
        (None, []),
        ([{"type": "text", "text": "a"}, "b"], [("text", "ab")]),
        ([{"type": "thinking", "thinking": "r"}, {"type": "text", "text": "t"}],
         [("reasoning", "r"), ("text", "t")]),
    ],
)  # fmt: skip
def test_ollama_content_shapes(content: Any, expected: list[tuple[str, str]]) -> None:
    message = last(ollama(_o(message={"content": content}), _o(done=True)), "ollama")
    assert [(b.type, b.text) for b in message.blocks] == expected


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"city": "Paris"}, '{"city":"Paris"}'),
        ('{"city": "Paris"}', '{"city": "Paris"}'),
        (["a"], '["a"]'),
    ],
)
def test_ollama_arguments_shapes(arguments: Any, expected: str) -> None:
    call = {"function": {"name": "weather", "arguments": arguments}, "id": ""}
    message = last(ollama(_o(message={"tool_calls": [call]}), _o(done=True)), "ollama")
    assert tools(message) == [("", "weather", expected)]
    assert not message.blocks[0].invalid_arguments


def test_ollama_nulls_empty_strings_and_float_counts() -> None:
    stream = ollama(
        _o(message=None),
        _o(message={"content": "a", "tool_calls": None}),
        _o(done=True, done_reason="", eval_count=3.0, total_duration=1e9, model=""),
    )
    message = last(stream, "ollama")
    assert texts(message, "text") == ["a"] and message.finish_reason is None
    assert message.usage == {"eval_count": 3.0, "total_duration": 1e9}
    assert message.model == "qwen3" and warned(stream, "ollama") == []
    assert kinds(message) == ["text"]
