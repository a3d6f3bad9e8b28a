"""Synthetic provider streams for the benchmarks: long, deterministic, realistic in shape.

Each generator returns the bytes a provider would send (SSE), built from a
seeded random source so every run measures the same input. Fragments are
token-sized (a few characters, some non-ASCII, some newlines), as real streams
are; tool-call arguments are valid JSON once joined.

Run ``python -m bench.streams openai 10000 > stream.sse`` to write one out,
e.g. to feed ``warpd convert`` by hand.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator

_WORDS = (
    "the stream of tokens arrives in small pieces and each piece is a few "
    "characters long so the daemon must keep up with café naïve résumé "
    "déjà vu — 東京 ✓ 🚀 code `x = 1` **bold** and\n"
).split(" ")

_OPENAI_HEAD = {
    "id": "chatcmpl-bench",
    "object": "chat.completion.chunk",
    "created": 1727346178,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_5050236cbd",
}


def _fragments(rng: random.Random) -> Iterator[str]:
    """Endless token-sized text fragments."""
    while True:
        word = rng.choice(_WORDS)
        yield " " + word


def _argument_fragments(rng: random.Random, count: int, call: int) -> list[str]:
    """``count`` fragments (≥ 1) that join into one valid JSON object."""
    # Build a JSON document with about 5 characters per fragment, then cut it.
    words = []
    fragments = _fragments(rng)
    while sum(len(w) for w in words) < count * 5:
        words.append(next(fragments))
    document = json.dumps({"call": call, "query": "".join(words)}, ensure_ascii=False)
    size = max(1, len(document) // count)
    parts = [document[i : i + size] for i in range(0, size * (count - 1), size)]
    parts.append(document[size * (count - 1) :])
    return parts


def _sse(obj: object, event: str | None = None) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def openai_chat(chunks: int, *, tools: int = 4, seed: int = 7) -> bytes:
    """An OpenAI chat stream of about ``chunks`` events: text, then ``tools`` parallel calls.

    60% of the events carry text, 40% tool-call argument fragments (the calls
    follow one another, each introduced by a fragment with its id and name, as
    OpenAI sends them); then a finish chunk, a usage chunk and ``[DONE]``.
    """
    rng = random.Random(seed)
    out = [_sse({**_OPENAI_HEAD, "choices": [_choice({"role": "assistant", "content": None})]})]
    body = max(chunks - 3, tools * 2)
    text_chunks = body * 6 // 10
    fragments = _fragments(rng)
    for _ in range(text_chunks):
        out.append(_sse({**_OPENAI_HEAD, "choices": [_choice({"content": next(fragments)})]}))
    per_call = max(1, (body - text_chunks) // tools)
    for call in range(tools):
        for i, args in enumerate(_argument_fragments(rng, per_call, call)):
            fragment: dict[str, object] = {"index": call, "function": {"arguments": args}}
            if i == 0:
                fragment = {
                    "index": call,
                    "id": f"call_{call:04d}",
                    "type": "function",
                    "function": {"name": f"tool_{call}", "arguments": args},
                }
            out.append(_sse({**_OPENAI_HEAD, "choices": [_choice({"tool_calls": [fragment]})]}))
    out.append(_sse({**_OPENAI_HEAD, "choices": [_choice({}, finish="tool_calls")]}))
    usage = {"prompt_tokens": 100, "completion_tokens": chunks, "total_tokens": chunks + 100}
    out.append(_sse({**_OPENAI_HEAD, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _choice(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def anthropic_messages(chunks: int, *, tools: int = 2, seed: int = 7) -> bytes:
    """An Anthropic Messages stream of about ``chunks`` events: thinking, text, tool use.

    30% of the events are thinking deltas (then a signature), 40% text deltas,
    30% ``input_json_delta`` fragments of ``tools`` tool_use blocks; a ping every
    500 events; then ``message_delta`` and ``message_stop``.
    """
    rng = random.Random(seed)
    fragments = _fragments(rng)
    out = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 1},
                },
            },
            "message_start",
        )
    ]
    body = max(chunks - 8 - 2 * tools, 3 + tools)
    thinking = body * 3 // 10
    text = body * 4 // 10
    per_call = max(1, (body - thinking - text) // tools)
    emitted = 0

    def delta(index: int, payload: dict[str, object]) -> None:
        nonlocal emitted
        out.append(
            _sse(
                {"type": "content_block_delta", "index": index, "delta": payload},
                "content_block_delta",
            )
        )
        emitted += 1
        if emitted % 500 == 0:
            out.append(_sse({"type": "ping"}, "ping"))

    def start(index: int, block: dict[str, object]) -> None:
        out.append(
            _sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
        )

    def stop(index: int) -> None:
        out.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))

    start(0, {"type": "thinking", "thinking": "", "signature": ""})
    for _ in range(thinking):
        delta(0, {"type": "thinking_delta", "thinking": next(fragments)})
    delta(0, {"type": "signature_delta", "signature": "EqQBCkgIARABGAIiQL" * 8})
    stop(0)
    start(1, {"type": "text", "text": ""})
    for _ in range(text):
        delta(1, {"type": "text_delta", "text": next(fragments)})
    stop(1)
    for call in range(tools):
        index = 2 + call
        start(
            index,
            {"type": "tool_use", "id": f"toolu_{call:04d}", "name": f"tool_{call}", "input": {}},
        )
        for args in _argument_fragments(rng, per_call, call):
            delta(index, {"type": "input_json_delta", "partial_json": args})
        stop(index)
    out.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
            "message_delta",
        )
    )
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return b"".join(out)


STREAMS = {"openai": openai_chat, "anthropic": anthropic_messages}


def reads(data: bytes, size: int = 16384) -> list[bytes]:
    """``data`` cut into socket-sized reads (cuts fall mid-line and mid-character)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def event_count(data: bytes) -> int:
    """The number of SSE events (``data:`` lines) in ``data``."""
    return data.count(b"\ndata: ") + data.startswith(b"data: ")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in STREAMS or not argv[1].isdigit():
        print(f"usage: python -m bench.streams {{{'|'.join(STREAMS)}}} CHUNKS", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(STREAMS[argv[0]](int(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
