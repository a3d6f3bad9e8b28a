"""warpd.Client and warpd.AsyncClient against a real daemon."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warpd
from tests.conftest import fixture_files
from tests.daemon import Daemon
from tests.test_openai_chat import PARALLEL_TOOLS, TEXT_WITH_USAGE
from warpd.blocks import is_final
from warpd.client import Outcome, provider_error, push_outcome
from warpd.errors import DaemonUnavailable, PushRejected
from warpd.ingest.convert import convert
from warpd.protocol import BlocksMessage


def sse_payloads(data: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE or JSON-lines recording, as dicts."""
    out = []
    for line in data.decode().splitlines():
        payload = line.removeprefix("data:").strip()
        if payload.startswith("{"):
            out.append(json.loads(payload))
    return out


def same_result(a: BlocksMessage, b: BlocksMessage, *, ignore_input_errors: bool = False) -> bool:
    """Same blocks and outcome (block ids differ with the session and stream number).

    ``ignore_input_errors``: leave out input error blocks (and block indexes,
    which they shift).
    """
    left_out = {"id", "index"} if ignore_input_errors else {"id"}

    def result(m: BlocksMessage) -> tuple[Any, ...]:
        blocks = [
            {k: v for k, v in msgspec.to_builtins(b).items() if k not in left_out}
            for b in m.blocks
            if not (ignore_input_errors and b.error is not None and b.error.source == "input")
        ]
        return (blocks, m.finish_reason, m.usage, m.model, m.aborted)

    return result(a) == result(b)


def offline_final(data: bytes) -> BlocksMessage:
    return [m for m in convert([data]) if is_final(m)][-1]


def test_push_dicts_returns_the_final_message(daemon: Daemon) -> None:
    sub = daemon.subscriber("--session", "agent")
    try:
        final = warpd.Client(daemon.address).push(sse_payloads(PARALLEL_TOOLS), session="agent")
        seen = sub.messages_until_final()
    finally:
        sub.close()
    assert is_final(final) and final.stream == "agent/1"
    assert same_result(final, offline_final(PARALLEL_TOOLS))
    assert seen[-1]["seq"] == final.seq


def test_push_http_body_in_arbitrary_pieces(daemon: Daemon) -> None:
    pieces = [TEXT_WITH_USAGE[i : i + 7] for i in range(0, len(TEXT_WITH_USAGE), 7)]
    final = warpd.Client(daemon.address).push(pieces)
    assert same_result(final, offline_final(TEXT_WITH_USAGE))


def test_push_json_strings_one_per_event(daemon: Daemon) -> None:
    events = [json.dumps(e) for e in sse_payloads(TEXT_WITH_USAGE)]
    final = warpd.Client(daemon.address).push(events, format="openai")
    assert final.blocks[0].text == "Hello wörld ✓"


def test_stream_context_manager_pushes_from_the_scripts_own_loop(daemon: Daemon) -> None:
    with warpd.Client(daemon.address).stream(session="loop") as s:
        for event in sse_payloads(TEXT_WITH_USAGE):
            s.push(event)
    assert s.final.blocks[0].text == "Hello wörld ✓" and not s.final.aborted


def test_an_exception_in_the_block_aborts_the_stream(daemon: Daemon) -> None:
    sub = daemon.subscriber()
    try:
        with pytest.raises(RuntimeError, match="model went away"):
            with warpd.Client(daemon.address).stream() as s:
                for event in sse_payloads(TEXT_WITH_USAGE)[:3]:
                    s.push(event)
                raise RuntimeError("model went away")
        last = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert last["aborted"] and "model went away" in last["abort_reason"]
    assert last["blocks"][0]["text"] == "Hello "
    # The stream object has the aborted final, as subscribers saw it.
    assert s.final.aborted and s.final.seq == last["seq"]
    assert s.outcome == Outcome.ABORTED and s.error is None


# An Anthropic stream the provider cut off with an error event.
OVERLOADED = [
    {"type": "message_start", "message": {"model": "claude-test", "usage": {"input_tokens": 5}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
]


def test_the_stream_says_how_it_ended(daemon: Daemon) -> None:
    client = warpd.Client(daemon.address)
    with client.stream() as s:
        for event in sse_payloads(TEXT_WITH_USAGE):
            s.push(event)
    assert s.outcome == Outcome.OK and s.error is None
    with client.stream() as s:
        for event in OVERLOADED:
            s.push(event)
    assert s.outcome == Outcome.PROVIDER_ERROR
    assert s.error is not None and s.error.code == "overloaded_error"
    assert provider_error(s.final) == s.error
    # The input ends before the provider's end marker: aborted.
    with client.stream() as s:
        for event in sse_payloads(TEXT_WITH_USAGE)[:2]:
            s.push(event)
    assert s.outcome == Outcome.ABORTED and s.final.aborted


def test_push_outcome_takes_the_worst_stream() -> None:
    ok = offline_final(TEXT_WITH_USAGE)
    cut = offline_final(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n"
                                 for e in sse_payloads(TEXT_WITH_USAGE)[:3]))
    failed = offline_final(b"\n".join(json.dumps(e).encode() for e in OVERLOADED))
    assert cut.aborted and failed.aborted
    assert push_outcome([]) == Outcome.OK
    assert push_outcome([ok, ok]) == Outcome.OK
    assert push_outcome([ok, cut]) == Outcome.ABORTED
    assert push_outcome([failed, cut, ok]) == Outcome.PROVIDER_ERROR


def test_an_irregular_event_is_a_warning_and_the_stream_goes_on(daemon: Daemon) -> None:
    payloads = sse_payloads(TEXT_WITH_USAGE)
    events = [*payloads[:2], "{not json\n", *payloads[2:]]
    with warpd.Client(daemon.address).stream(format="openai") as stream:
        for event in events:
            stream.push(event)
    assert not stream.final.aborted
    assert same_result(stream.final, offline_final(TEXT_WITH_USAGE), ignore_input_errors=True)
    (warning,) = stream.warnings
    assert warning.frame == 3 and warning.code == "invalid-json"
    assert warning.message.startswith("invalid JSON in OpenAI chat completion chunk")
    assert warning.stream == stream.final.stream


def test_strict_a_rejected_event_raises_with_the_daemons_reason(daemon: Daemon) -> None:
    events = [*sse_payloads(TEXT_WITH_USAGE)[:2], "{not json"]
    with pytest.raises(PushRejected, match=r"frame 3: invalid JSON") as info:
        warpd.Client(daemon.address).push(events, format="openai", strict=True)
    assert info.value.frame == 3
    # The daemon serves on.
    assert warpd.Client(daemon.address).push(sse_payloads(TEXT_WITH_USAGE)).blocks


def test_async_client_takes_an_async_iterable(daemon: Daemon) -> None:
    async def events() -> AsyncIterator[dict[str, Any]]:
        for event in sse_payloads(PARALLEL_TOOLS):
            await asyncio.sleep(0)
            yield event

    final = asyncio.run(warpd.AsyncClient(daemon.address).push(events(), session="async"))
    assert same_result(final, offline_final(PARALLEL_TOOLS))


def test_no_daemon_raises_daemon_unavailable(short_tmp: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="no warpd daemon at unix:"):
        warpd.Client(f"unix:{short_tmp}/none.sock").push([{"choices": []}])


def test_unpushable_objects_are_a_type_error(daemon: Daemon) -> None:
    with pytest.raises(TypeError, match="cannot push a object"):
        warpd.Client(daemon.address).push([object()])


@pytest.mark.parametrize(
    "path", fixture_files("openai_chat_*.sse", "deepseek_*.jsonl"), ids=lambda p: p and p.name
)
def test_openai_sdk_chunks_pushed_as_they_are(daemon: Daemon, path: Path) -> None:
    from openai.types.chat import ChatCompletionChunk

    chunks = [ChatCompletionChunk.model_validate(p) for p in sse_payloads(path.read_bytes())]
    final = warpd.Client(daemon.address).push(chunks)
    assert same_result(final, offline_final(path.read_bytes()))


@pytest.mark.parametrize(
    "path", fixture_files("anthropic_*.sse", "anthropic_*.jsonl"), ids=lambda p: p and p.name
)
def test_anthropic_sdk_events_pushed_as_they_are(daemon: Daemon, path: Path) -> None:
    from anthropic._models import construct_type
    from anthropic.types import RawMessageStreamEvent

    # The SDK's stream yields these typed events and swallows pings.
    events = [
        construct_type(type_=RawMessageStreamEvent, value=p)
        for p in sse_payloads(path.read_bytes())
        if p["type"] != "ping"
    ]
    final = warpd.Client(daemon.address).push(events)
    assert same_result(final, offline_final(path.read_bytes()))


def test_an_ndjson_body_split_mid_line_is_framed_not_sent_as_is(daemon: Daemon) -> None:
    from tests.ingest_streams import OLLAMA_CHAT_TOOLS

    pieces = [OLLAMA_CHAT_TOOLS[i : i + 40] for i in range(0, len(OLLAMA_CHAT_TOOLS), 40)]
    assert pieces[0].startswith(b"{") and b"\n" not in pieces[0]
    final = warpd.Client(daemon.address).push(pieces)
    assert same_result(final, offline_final(OLLAMA_CHAT_TOOLS))
