"""Whole JSON answers piped as they are (``curl`` without ``"stream": true``, an
error body): one pretty-printed document is one event, and a whole response is
decoded as the stream it stands for — through convert, push and play alike."""

from __future__ import annotations

import json

import pytest

from tests.daemon import Daemon
from tests.ingest_streams import (
    ANTHROPIC_ERROR,
    ANTHROPIC_MESSAGE,
    CHAT_COMPLETION,
    DOCUMENTS,
    OLLAMA_ERROR_BODY,
    OPENAI_ERROR,
    RESPONSE_OBJECT,
    final,
    input_errors,
    outcome,
    pretty,
    texts,
    warned,
)
from warpd.client import EventFrames
from warpd.ingest.convert import convert
from warpd.ingest.framing import AutoFramer, sniff_framing


def test_a_pretty_printed_object_is_held_to_the_end_and_framed_as_one_json_line() -> None:
    framer = AutoFramer()
    data = b"\n" + pretty(OPENAI_ERROR)
    for line in data.splitlines(keepends=True):
        assert framer.feed(line) == []
        assert framer.framing is None
    (event,) = framer.close()
    assert framer.framing == "jsonl"
    assert b"\n" not in event.payload
    assert json.loads(event.payload) == OPENAI_ERROR


@pytest.mark.parametrize(
    "text",
    [
        b"{ this is prose\nmore }\n",
        b"{\n  oops: not JSON\n}\n",
        # Two objects are JSON lines gone wrong, or prose: not one document.
        b'{\n"a": 1\n}\n{\n"b": 2\n}\n',
        b"{\n",
    ],
)
def test_text_that_starts_like_an_object_but_is_not_one_stays_text(text: bytes) -> None:
    assert sniff_framing(text) == "document"
    assert texts(final(text), "text") == [text.decode()]
    assert warned(text) == []


def test_a_document_over_the_event_size_limit_is_shown_as_text_as_it_is() -> None:
    """It could not be one event: rather than hold it all, it is text (nothing lost)."""
    data = pretty(CHAT_COMPLETION)
    limit = len(data) - 1
    framer = AutoFramer(limit)
    events = framer.feed(data[:limit]) + framer.feed(data[limit:])
    assert framer.framing == "raw"
    assert b"".join(e.payload for e in events + framer.close()) == data
    reads = [data[i : i + 64] for i in range(0, len(data), 64)]
    (message,) = [m for m in convert(reads, max_frame_bytes=limit) if not m.streaming]
    assert texts(message, "text") == [data.decode()]
    # Within the limit it is the completion.
    (whole,) = [m for m in convert([data], max_frame_bytes=len(data)) if not m.streaming]
    assert texts(whole, "text") == ["Hello — there"]


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        (OPENAI_ERROR, "Incorrect API key provided", "invalid_api_key"),
        (ANTHROPIC_ERROR, "authentication_error: invalid x-api-key", "authentication_error"),
        (OLLAMA_ERROR_BODY, 'model "llama9" not found, try pulling it first', None),
    ],
    ids=["openai", "anthropic", "ollama"],
)
def test_an_error_body_is_the_provider_error(body: dict, message: str, code: str | None) -> None:
    for data in (pretty(body), json.dumps(body).encode()):
        result = final(data)
        assert result.aborted
        (block,) = result.blocks
        assert block.type == "error" and block.error is not None
        assert (block.error.message, block.error.source, block.error.code) == (
            message, "provider", code
        )


@pytest.mark.parametrize(
    ("name", "body", "text", "finish"),
    [
        ("chat.completion", CHAT_COMPLETION, "Hello — there", "stop"),
        ("response", RESPONSE_OBJECT, "Hi from Responses", "completed"),
        ("message", ANTHROPIC_MESSAGE, "Bonjour", "end_turn"),
    ],
)
def test_a_whole_response_is_one_complete_stream(
    name: str, body: dict, text: str, finish: str
) -> None:
    for data in (pretty(body), json.dumps(body).encode() + b"\n"):
        result = final(data)
        assert result.complete and not result.aborted, name
        assert texts(result, "text") == [text]
        assert result.finish_reason == finish
        assert input_errors(result) == []


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_each_document_decodes_alike_with_its_format_named_or_detected(name: str) -> None:
    format, data = DOCUMENTS[name]
    assert outcome(final(data, format)) == outcome(final(data))
    assert warned(data) == [] and warned(data, format) == []


def test_push_of_a_pretty_printed_error_exits_4_with_the_providers_message(
    daemon: Daemon,
) -> None:
    result = daemon.push(None, "-v", data=pretty(OPENAI_ERROR))
    assert result.returncode == 4, result.stderr
    err = result.stderr.decode()
    assert "the provider reported an error: invalid_api_key: Incorrect API key provided" in err
    assert "format openai (detected from the first event)" in err
    assert "format text" not in err


def test_push_convert_and_play_of_a_pretty_printed_completion_agree(daemon: Daemon) -> None:
    data = pretty(CHAT_COMPLETION)
    pushed = daemon.push(None, "-v", data=data)
    assert pushed.returncode == 0, pushed.stderr
    assert "format openai (a whole response)" in pushed.stderr.decode()
    converted = daemon.run("convert", data=data, check=True)
    last = json.loads(converted.stdout.splitlines()[-1])
    assert last["complete"] and last["finish_reason"] == "stop"
    assert [b["text"] for b in last["blocks"]] == ["Hello — there"]
    played = daemon.run("play", data=data, check=True)
    assert "Hello — there" in played.stdout.decode()
    assert '"choices"' not in played.stdout.decode()


def test_convert_shows_a_pretty_printed_error_as_an_error_block(daemon: Daemon) -> None:
    converted = daemon.run("convert", data=pretty(ANTHROPIC_ERROR))
    last = json.loads(converted.stdout.splitlines()[-1])
    assert [b["type"] for b in last["blocks"]] == ["error"]
    assert last["blocks"][0]["error"]["message"] == "authentication_error: invalid x-api-key"
    assert last["aborted"]


def test_the_client_pushes_a_pretty_printed_body_as_one_frame_whole_or_in_pieces() -> None:
    data = pretty(CHAT_COMPLETION)
    assert [json.loads(f) for f in EventFrames().frames(data)] == [CHAT_COMPLETION]
    pieces = EventFrames()
    out = [f for i in range(0, len(data), 50) for f in pieces.frames(data[i : i + 50])]
    assert out == []
    # An object pushed next ends the body: the body goes first.
    out = pieces.frames({"choices": []})
    assert [json.loads(f) for f in out] == [CHAT_COMPLETION, {"choices": []}]
