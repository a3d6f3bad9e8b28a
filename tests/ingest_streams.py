"""Hand-written upstream streams for the decoder tests, and helpers to run them.

Each stream is the bytes a provider would send, built from Python literals:
``sse(...)`` for SSE (with ``event:`` lines, as Anthropic sends them),
``jsonl(...)`` for one JSON object per line (Ollama's NDJSON, recordings).
``HAND_MADE`` lists them all for the property and fuzz tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

from warpd.blocks import is_final
from warpd.ingest.convert import convert
from warpd.protocol import BlocksMessage, WarningMessage


def sse(*events: dict[str, Any], named: bool = True) -> bytes:
    """Events as SSE text: ``event: <type>`` (if ``named``), ``data: <json>``, blank line."""
    out = []
    for event in events:
        if named and "type" in event:
            out.append(f"event: {event['type']}\n")
        out.append(f"data: {json.dumps(event, ensure_ascii=False)}\n\n")
    return "".join(out).encode()


def jsonl(*events: dict[str, Any]) -> bytes:
    """Events as JSON lines."""
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events).encode()


def messages(
    data: bytes | Iterable[bytes], format: str = "auto", *, strict: bool = False
) -> list[BlocksMessage]:
    """Every message ``convert`` makes of ``data`` (bytes, or chunks of it)."""
    chunks = [data] if isinstance(data, bytes) else list(data)
    return list(convert(chunks, format=format, strict=strict))


def final(
    data: bytes | Iterable[bytes], format: str = "auto", *, strict: bool = False
) -> BlocksMessage:
    """The final message of the one stream in ``data``; fails if there is not exactly one."""
    finals = [m for m in messages(data, format, strict=strict) if is_final(m)]
    assert len(finals) == 1, f"expected one stream, got {len(finals)}"
    return finals[0]


def warned(data: bytes | Iterable[bytes], format: str = "auto") -> list[tuple[int, str, str]]:
    """(input line, code, message) of each warning ``convert`` gives for ``data``."""
    chunks = [data] if isinstance(data, bytes) else list(data)
    found: list[tuple[int, str, str]] = []

    def keep(warning: WarningMessage, line: int) -> None:
        found.append((line, warning.code or "", warning.message))

    for _ in convert(chunks, format=format, on_warning=keep):
        pass
    return found


def input_errors(message: BlocksMessage) -> list[str]:
    """The ``code`` of each input error block (the irregularities shown to subscribers)."""
    return [
        b.error.code or ""
        for b in message.blocks
        if b.error is not None and b.error.source == "input"
    ]


def without_input_errors(message: BlocksMessage) -> list[Any]:
    """The blocks that are not input error blocks, ids and indexes left out."""
    return [
        msgspec.structs.replace(b, id="", index=0)
        for b in message.blocks
        if b.error is None or b.error.source != "input"
    ]


def texts(message: BlocksMessage, type: str) -> list[str]:
    """The whole text of each block of ``type`` (text, reasoning, error)."""
    return [b.text or "" for b in message.blocks if b.type == type]


def tools(message: BlocksMessage) -> list[tuple[str, str, str]]:
    """(id, name, arguments) of each tool_call block."""
    return [
        (b.tool.id, b.tool.function.name, b.tool.function.arguments)
        for b in message.blocks
        if b.tool is not None
    ]


def kinds(message: BlocksMessage) -> list[str]:
    """The block types in order."""
    return [b.type for b in message.blocks]


def outcome(message: BlocksMessage) -> tuple[Any, ...]:
    """What must not depend on how the input was chunked: blocks, finish, usage, abort."""
    return (
        message.blocks,
        message.model,
        message.finish_reason,
        message.usage,
        message.aborted,
        message.abort_reason,
    )


# -- Anthropic ---------------------------------------------------------------

_A_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    },
}


def _a_delta(index: int, **delta: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _a_block(index: int, **block: Any) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _a_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def _a_end(reason: str, output_tokens: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


ANTHROPIC_THINKING_TOOL = sse(
    _A_START,
    {"type": "ping"},
    _a_block(0, type="thinking", thinking="", signature=""),
    _a_delta(0, type="thinking_delta", thinking="Let me "),
    _a_delta(0, type="thinking_delta", thinking="think — ünïcode."),
    _a_delta(0, type="signature_delta", signature="c2lnbmF0dXJl"),
    _a_stop(0),
    _a_block(1, type="text", text=""),
    _a_delta(1, type="text_delta", text="I'll look "),
    _a_delta(1, type="text_delta", text="it up."),
    _a_stop(1),
    _a_block(2, type="tool_use", id="toolu_1", name="lookup", input={}),
    _a_delta(2, type="input_json_delta", partial_json=""),
    _a_delta(2, type="input_json_delta", partial_json='{"q": "wea'),
    _a_delta(2, type="input_json_delta", partial_json='ther"}'),
    _a_stop(2),
    *_a_end("tool_use"),
)

ANTHROPIC_ERROR_MID_STREAM = sse(
    _A_START,
    _a_block(0, type="text", text=""),
    _a_delta(0, type="text_delta", text="Hello, "),
    _a_delta(0, type="text_delta", text="wor"),
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
)

ANTHROPIC_TRUNCATED_TOOL = sse(
    _A_START,
    _a_block(0, type="tool_use", id="toolu_2", name="write", input={}),
    _a_delta(0, type="input_json_delta", partial_json='{"path": "a.txt", "text": "abc'),
    *_a_end("max_tokens"),
)

_SEARCH_RESULT = {
    "type": "web_search_tool_result",
    "tool_use_id": "srvtoolu_1",
    "content": [
        {
            "type": "web_search_result",
            "url": "https://example.org/",
            "title": "Example",
            "encrypted_content": "Zm9v",
        }
    ],
}
_CITATION = {
    "type": "web_search_result_location",
    "url": "https://example.org/",
    "title": "Example",
    "cited_text": "an example",
    "encrypted_index": "YmFy",
}

ANTHROPIC_SERVER_TOOL = sse(
    _A_START,
    _a_block(0, type="redacted_thinking", data="ZW5jcnlwdGVk"),
    _a_stop(0),
    _a_block(1, type="server_tool_use", id="srvtoolu_1", name="web_search", input={}),
    _a_delta(1, type="input_json_delta", partial_json='{"query": '),
    _a_delta(1, type="input_json_delta", partial_json='"example"}'),
    _a_stop(1),
    _a_block(2, **_SEARCH_RESULT),
    _a_stop(2),
    _a_block(3, type="text", text="", citations=[]),
    _a_delta(3, type="citations_delta", citation=_CITATION),
    _a_delta(3, type="text_delta", text="It is an example."),
    _a_stop(3),
    *_a_end("end_turn"),
)

# -- OpenAI Responses --------------------------------------------------------


def _r_response(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "model": "gpt-test", "status": status, **extra}


_R_CREATED = {"type": "response.created", "response": _r_response("in_progress")}
_R_USAGE = {"input_tokens": 7, "output_tokens": 9, "total_tokens": 16}


def _r_added(index: int, **item: Any) -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": index, "item": item}


def _r_done(index: int, **item: Any) -> dict[str, Any]:
    return {"type": "response.output_item.done", "output_index": index, "item": item}


def _r_text(index: int, delta: str, item_id: str = "msg_1", part: int = 0) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "item_id": item_id,
        "output_index": index,
        "content_index": part,
        "delta": delta,
    }


RESPONSES_MIXED = jsonl(
    _R_CREATED,
    _r_added(0, id="rs_1", type="reasoning", summary=[]),
    {
        "type": "response.reasoning_text.delta",
        "output_index": 0,
        "content_index": 0,
        "delta": "Thinking ",
    },
    {
        "type": "response.reasoning_text.delta",
        "output_index": 0,
        "content_index": 0,
        "delta": "hard.",
    },
    {
        "type": "response.reasoning_summary_text.delta",
        "output_index": 0,
        "summary_index": 0,
        "delta": "Summary one.",
    },
    {
        "type": "response.reasoning_summary_text.delta",
        "output_index": 0,
        "summary_index": 1,
        "delta": "Summary two.",
    },
    _r_done(0, id="rs_1", type="reasoning", status="completed"),
    _r_added(1, id="ws_1", type="web_search_call", status="in_progress"),
    _r_done(
        1,
        id="ws_1",
        type="web_search_call",
        status="completed",
        action={"type": "search", "query": "weather"},
    ),
    _r_added(
        2, id="fc_1", type="function_call", call_id="call_9", name="get_weather", arguments=""
    ),
    # Proxies may rotate item_id: the output_index is what counts.
    {
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_x",
        "output_index": 2,
        "delta": '{"city":',
    },
    {
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_y",
        "output_index": 2,
        "delta": '"Paris"}',
    },
    {
        "type": "response.function_call_arguments.done",
        "item_id": "fc_1",
        "output_index": 2,
        "arguments": '{"city":"Paris"}',
    },
    _r_done(
        2,
        id="fc_1",
        type="function_call",
        status="completed",
        call_id="call_9",
        name="get_weather",
        arguments='{"city":"Paris"}',
    ),
    _r_added(3, id="msg_1", type="message", role="assistant", content=[]),
    _r_text(3, "It is ", item_id="msg_a"),
    _r_text(3, "sunny.", item_id="msg_b"),
    {
        "type": "response.output_text.done",
        "output_index": 3,
        "content_index": 0,
        "text": "It is sunny.",
    },
    # A part whose text only comes whole, in its .done event.
    {
        "type": "response.output_text.done",
        "output_index": 3,
        "content_index": 1,
        "text": "Whole part.",
    },
    {
        "type": "response.refusal.delta",
        "output_index": 3,
        "content_index": 2,
        "delta": "I can't say more.",
    },
    _r_done(3, id="msg_1", type="message", status="completed", role="assistant", content=[]),
    {"type": "response.completed", "response": _r_response("completed", usage=_R_USAGE)},
)

RESPONSES_FAILED = jsonl(
    _R_CREATED,
    _r_added(0, id="msg_1", type="message", role="assistant", content=[]),
    _r_text(0, "Partial"),
    {
        "type": "response.failed",
        "response": _r_response(
            "failed", error={"code": "server_error", "message": "The server had an error."}
        ),
    },
)

RESPONSES_INCOMPLETE = jsonl(
    _R_CREATED,
    _r_added(0, id="rs_1", type="reasoning", summary=[]),
    {
        "type": "response.reasoning_summary_text.delta",
        "output_index": 0,
        "summary_index": 0,
        "delta": "Plan.",
    },
    _r_done(0, id="rs_1", type="reasoning", status="completed"),
    _r_added(1, id="msg_1", type="message", role="assistant", content=[]),
    _r_text(1, "A long ans"),
    {
        "type": "response.output_text.done",
        "output_index": 1,
        "content_index": 0,
        "text": "A long ans",
    },
    _r_done(1, id="msg_1", type="message", status="incomplete", role="assistant", content=[]),
    {
        "type": "response.incomplete",
        "response": _r_response(
            "incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=_R_USAGE
        ),
    },
)

RESPONSES_ERROR_EVENT = sse(
    _R_CREATED,
    _r_added(0, id="msg_1", type="message", role="assistant", content=[]),
    _r_text(0, "Hi"),
    {
        "type": "error",
        "code": "rate_limit_exceeded",
        "message": "Slow down.",
        "param": None,
        "sequence_number": 4,
    },
    named=False,
)

# -- Ollama ------------------------------------------------------------------


def _o_chat(done: bool = False, **message: Any) -> dict[str, Any]:
    return {
        "model": "qwen3",
        "created_at": "2025-05-27T22:54:57.641643Z",
        "message": {"role": "assistant", "content": "", **message},
        "done": done,
    }


OLLAMA_CHAT_TOOLS = jsonl(
    _o_chat(thinking="The user wants "),
    _o_chat(thinking="the weather."),
    _o_chat(content="Checking."),
    _o_chat(
        tool_calls=[
            {"function": {"name": "get_weather", "arguments": {"city": "Toronto", "n": 1}}},
            {"function": {"name": "get_time", "arguments": {"tz": "EST"}}},
        ]
    ),
    {
        **_o_chat(done=True),
        "done_reason": "stop",
        "total_duration": 1234,
        "prompt_eval_count": 20,
        "eval_count": 30,
    },
)

OLLAMA_GENERATE = jsonl(
    {"model": "llama3", "created_at": "t", "response": "", "thinking": "Hm.", "done": False},
    {"model": "llama3", "created_at": "t", "response": "Héllo", "done": False},
    {"model": "llama3", "created_at": "t", "response": " there", "done": False},
    {
        "model": "llama3",
        "created_at": "t",
        "response": "",
        "done": True,
        "done_reason": "length",
        "eval_count": 3,
    },
)

OLLAMA_ERROR = jsonl(
    _o_chat(content="Par"),
    {"error": "model runner has unexpectedly stopped"},
)

# -- Plain text --------------------------------------------------------------

PLAIN_TEXT = "Build OK ✓\n\tdone: 3 files — naïve\n".encode()

# name -> (format to pass, bytes). Every hand-made stream, for the property tests.
HAND_MADE: dict[str, tuple[str, bytes]] = {
    "anthropic_thinking_tool": ("anthropic", ANTHROPIC_THINKING_TOOL),
    "anthropic_error_mid_stream": ("anthropic", ANTHROPIC_ERROR_MID_STREAM),
    "anthropic_truncated_tool": ("anthropic", ANTHROPIC_TRUNCATED_TOOL),
    "anthropic_server_tool": ("anthropic", ANTHROPIC_SERVER_TOOL),
    "responses_mixed": ("openai-responses", RESPONSES_MIXED),
    "responses_failed": ("openai-responses", RESPONSES_FAILED),
    "responses_incomplete": ("openai-responses", RESPONSES_INCOMPLETE),
    "responses_error_event": ("openai-responses", RESPONSES_ERROR_EVENT),
    "ollama_chat_tools": ("ollama", OLLAMA_CHAT_TOOLS),
    "ollama_generate": ("ollama", OLLAMA_GENERATE),
    "ollama_error": ("ollama", OLLAMA_ERROR),
    "plain_text": ("text", PLAIN_TEXT),
}


# -- whole JSON documents (curl's answers, pretty-printed) ---------------------


def pretty(document: dict[str, Any]) -> bytes:
    """A JSON object over several lines, indented, as ``curl`` shows an API's answer."""
    return json.dumps(document, indent=4, ensure_ascii=False).encode() + b"\n"


OPENAI_ERROR = {
    "error": {
        "message": "Incorrect API key provided",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}
CHAT_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-test",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello — there"},
         "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
RESPONSE_OBJECT = {
    "id": "resp_1",
    "object": "response",
    "status": "completed",
    "model": "gpt-test",
    "output": [
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Hi from Responses", "annotations": []}]}
    ],
    "usage": {"input_tokens": 4, "output_tokens": 3, "total_tokens": 7},
}
ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [{"type": "text", "text": "Bonjour"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 3},
}
ANTHROPIC_ERROR = {
    "type": "error",
    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
}
OLLAMA_WHOLE_CHAT = {
    "model": "llama-test",
    "created_at": "2024-01-01T00:00:00Z",
    "message": {"role": "assistant", "content": "Salut"},
    "done": True,
    "done_reason": "stop",
}
OLLAMA_ERROR_BODY = {"error": 'model "llama9" not found, try pulling it first'}

# name -> (format to pass, bytes): each a whole answer as one pretty-printed document.
DOCUMENTS: dict[str, tuple[str, bytes]] = {
    "openai_error_document": ("openai", pretty(OPENAI_ERROR)),
    "chat_completion_document": ("openai", pretty(CHAT_COMPLETION)),
    "responses_document": ("openai-responses", pretty(RESPONSE_OBJECT)),
    "anthropic_message_document": ("anthropic", pretty(ANTHROPIC_MESSAGE)),
    "anthropic_error_document": ("anthropic", pretty(ANTHROPIC_ERROR)),
    "ollama_chat_document": ("ollama", pretty(OLLAMA_WHOLE_CHAT)),
    "ollama_error_document": ("ollama", pretty(OLLAMA_ERROR_BODY)),
}
