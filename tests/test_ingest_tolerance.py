"""No irregular event ends a stream: the real-world cases, and the property over every recording.

- The cases of ../shared/cases/ingest give their right result (README there).
- Inserting an arbitrary garbage event, an empty ``data:`` event or an
  out-of-order event anywhere in a recorded fixture leaves every other block
  intact and the stream unaborted.
- Irregularities are bounded per stream; two streams in one input where the
  first has a bad event both complete; over-long events are skipped as they
  are read, never buffered; absurd indexes skip their event only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES_DIR, ROOT, fixture_files
from tests.ingest_streams import (
    final,
    input_errors,
    jsonl,
    messages,
    sse,
    texts,
    warned,
    without_input_errors,
)
from warpd.blocks import BlockAssembler, is_final
from warpd.config import LimitsConfig
from warpd.ingest import DECODERS
from warpd.ingest.base import COMMON_IRREGULARITIES
from warpd.ingest.convert import convert
from warpd.ingest.deltas import MAX_INDEX, ChoiceFinish, StreamEnd, TextDelta
from warpd.ingest.framing import JSONLinesFramer, SSEFramer
from warpd.ingest.producer import PRODUCER_IRREGULARITIES, ProducerStreams
from warpd.protocol import BlocksMessage, encode

CASES_DIR = ROOT.parent / "shared" / "cases" / "ingest"


def case(name: str) -> Path:
    path = CASES_DIR / name
    if not path.is_file():
        pytest.skip(f"case {name} not found in {CASES_DIR} (it lives in ../shared, beside us)")
    return path


# -- the real-world cases (../shared/cases/README.md) ----------------------------


def check_case(name: str, last: BlocksMessage) -> None:
    """The right result of a case, as ../shared/cases/README.md gives it."""
    assert is_final(last) and not last.aborted, last.abort_reason
    content = [(b.type, b.text) for b in last.blocks if b.type != "error"]
    if name.startswith("b01"):
        assert content == [
            ("reasoning", "The user wants a short greeting."),
            ("text", "Hello there!"),
        ]
        assert last.finish_reason == "stop"
        assert last.usage == {"prompt_tokens": 9, "total_tokens": 30, "completion_tokens": 21}
    elif name.startswith("b03"):
        assert content == [("text", " Hello there!")] and last.finish_reason == "stop"
    elif name.startswith("b05"):
        assert content == [("text", "Working on it.")] and last.finish_reason == "stop"
    elif name.startswith("b13"):
        assert sorted(content) == [
            ("reasoning", "The user greets me; reply briefly."),
            ("text", "Hello! How can I help?"),
        ]
        assert last.finish_reason == "end_turn"
    else:
        raise AssertionError(f"no right result written for {name}")


CASES = [
    "b01_mistral_content_list.sse",
    "b03_ollama_finish_reason_empty.sse",
    "b05_empty_data_keepalive.sse",
    "b13_litellm_thinking_delta_in_text_block.sse",
]


@pytest.mark.parametrize("name", CASES)
def test_case_through_convert(name: str) -> None:
    data = case(name).read_bytes()
    check_case(name, final(data))
    # Whatever the chunking.
    check_case(name, final([data[i : i + 7] for i in range(0, len(data), 7)]))


def test_case_b13_records_its_irregularities() -> None:
    data = case("b13_litellm_thinking_delta_in_text_block.sse").read_bytes()
    assert [(line, code) for line, code, _ in warned(data)] == [
        (5, "message-start-again"),
        (11, "delta-of-other-kind"),
    ]
    assert input_errors(final(data)) == ["message-start-again", "delta-of-other-kind"]


def test_the_cases_have_no_irregularity_but_b13() -> None:
    for name in CASES[:3]:
        assert warned(case(name).read_bytes()) == [], name


# -- the property: insert anything anywhere in a recording ----------------------


def _units(path: Path) -> tuple[str, list[bytes]]:
    """The recording's framing and its events as they appear in the file."""
    raw = path.read_bytes()
    if path.suffix == ".sse":
        return "sse", [u + b"\n\n" for u in raw.replace(b"\r\n", b"\n").split(b"\n\n") if u.strip()]
    return "jsonl", [line + b"\n" for line in raw.splitlines()]


def _format_of(path: Path) -> str:
    name = path.name
    for prefix, format in (
        ("openai_chat", "openai"),
        ("deepseek", "openai"),
        ("anthropic", "anthropic"),
        ("openai_responses", "openai-responses"),
        ("ollama", "ollama"),
    ):
        if name.startswith(prefix):
            return format
    raise AssertionError(name)


# Events that break each format's grammar but carry no content, so that a
# repair cannot add to the recording's blocks: the repaired stream must equal
# the clean one, input error blocks aside.
_OUT_OF_ORDER: dict[str, list[dict[str, Any]]] = {
    "anthropic": [
        {"type": "content_block_stop", "index": 99},
        {"type": "message_start", "message": {}},
        {"type": "message_start"},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}},
    ],
    "openai-responses": [
        {"type": "response.output_item.done", "output_index": 99,
         "item": {"type": "message", "content": []}},
        {"type": "response.output_text.delta", "output_index": 98, "content_index": 0,
         "delta": ""},
        {"type": "response.function_call_arguments.delta", "delta": "{"},
    ],
    "openai": [
        {"choices": [{"index": MAX_INDEX + 1, "delta": {"content": "x"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": {"index": 0}}}]},
    ],
    "ollama": [
        {"model": "m", "message": {"content": 5}, "done": False},
        {"model": "m", "done": "yes"},
    ],
}  # fmt: skip


def _frame(framing: str, payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n" if framing == "sse" else payload + b"\n"


def _not_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return True
    return False


# Anything but JSON, line breaks and the end marker (a [DONE] does end a stream).
_garbage = st.binary(min_size=1, max_size=60).filter(
    lambda b: b"\n" not in b and b"\r" not in b and b.strip() not in (b"", b"[DONE]")
    and _not_json(b)
)


def _finals(units: list[bytes], framing: str) -> list[BlocksMessage]:
    finals = []
    for message in convert([b"".join(units)], framing=framing):  # type: ignore[arg-type]
        encode(message)
        if is_final(message):
            finals.append(message)
    return finals


def _content(message: BlocksMessage) -> tuple[Any, ...]:
    return (
        without_input_errors(message),
        message.finish_reason,
        message.finish_reasons,
        message.usage,
        message.model,
        message.aborted,
    )


@pytest.mark.parametrize(
    "path", fixture_files("*.sse", "*.jsonl", "*.ndjson"), ids=lambda p: getattr(p, "name", p)
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_inserted_irregular_event_leaves_every_other_block_intact(
    path: Path, data: st.DataObject
) -> None:
    framing, units = _units(path)
    clean = _finals(units, framing)
    kind = data.draw(st.sampled_from(["garbage", "empty", "out-of-order"]))
    if kind == "garbage":
        extra = _frame(framing, data.draw(_garbage))
    elif kind == "empty":
        extra = data.draw(st.sampled_from([b"data:\n\n", b"data: \n\n", b"data:  \t\n\n"]))
        if framing == "jsonl":
            extra = data.draw(st.sampled_from([b"\n", b" \n", b"\t \n"]))
    else:
        event = data.draw(st.sampled_from(_OUT_OF_ORDER[_format_of(path)]))
        extra = _frame(framing, json.dumps(event).encode())
    at = data.draw(st.integers(min_value=0, max_value=len(units)))
    dirty = _finals([*units[:at], extra, *units[at:]], framing)
    # An event after the recording's end has no stream to go to: it gets a
    # stream of its own, which holds nothing but its input error.
    dirty = [m for m in dirty if without_input_errors(m)]
    assert [_content(m) for m in dirty] == [_content(m) for m in clean]
    assert not any(m.aborted for m in dirty) or all(m.aborted for m in clean)
    if kind == "empty":
        assert all(not input_errors(m) for m in dirty)


def test_fixtures_are_there_for_the_property() -> None:
    if not FIXTURES_DIR.is_dir():
        pytest.skip(f"recorded fixtures not found at {FIXTURES_DIR}")
    assert {_format_of(p) for p in FIXTURES_DIR.glob("*.*") if p.suffix != ".md"} == set(
        _OUT_OF_ORDER
    )


# -- streams go on, warnings are bounded -----------------------------------------


def _chat(content: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


def test_two_streams_in_one_input_where_the_first_has_a_bad_event_both_complete() -> None:
    first = sse(_chat("one"), named=False) + b"data: {broken\n\n" + sse(
        _chat("!", "stop"), named=False
    ) + b"data: [DONE]\n\n"
    second = sse(_chat("two", "stop"), named=False) + b"data: [DONE]\n\n"
    finals = [m for m in messages(first + second) if is_final(m)]
    assert [(texts(m, "text"), m.aborted) for m in finals] == [(["one!"], False), (["two"], False)]
    assert input_errors(finals[0]) == ["invalid-json"] and input_errors(finals[1]) == []


def test_a_flood_of_garbage_shows_a_bounded_number_of_warnings() -> None:
    flood = b"".join(b"data: junk %d\n\n" % i for i in range(500))
    data = sse(_chat("a"), named=False) + flood + sse(_chat("b", "stop"), named=False)
    last = list(convert([data], max_warnings=5))[-1]
    assert texts(last, "text") == ["ab"] and not last.aborted
    errors = [b for b in last.blocks if b.type == "error"]
    assert len(errors) == 6
    assert "later ones are counted" in (errors[4].text or "")
    assert errors[5].text == (
        "495 more input irregularities in this stream were not shown (ingest.max_warnings is 5)"
    )
    seen: list[int] = []
    for _ in convert([data], max_warnings=5, on_warning=lambda w, line: seen.append(line)):
        pass
    assert len(seen) == 5


def test_garbage_with_no_stream_to_go_to_is_bounded_too() -> None:
    flood = b"".join(b"data: junk %d\n\n" % i for i in range(100))
    (only,) = messages(flood)
    assert not only.aborted and len(only.blocks) == 21


def test_strict_mode_ends_the_stream_at_the_first_irregularity() -> None:
    data = sse(_chat("a"), named=False) + b"data: junk\n\n" + sse(_chat("b", "stop"), named=False)
    last = list(convert([data], strict=True, errors="message"))[-1]
    assert last.aborted and texts(last, "text") == ["a"]
    assert last.blocks[-1].error is not None and last.blocks[-1].error.source == "input"


# -- absurd indexes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "event", "path"),
    [
        ("openai", {"choices": [{"index": 10_000_000_000, "delta": {"content": "x"}}]},
         "$.choices[0].index"),
        ("openai", {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 10_000_000_000, "function": {"arguments": "{}"}}]}}]},
         "$.choices[0].delta.tool_calls[0].index"),
        ("openai", {"choices": [{"index": -1, "delta": {"content": "x"}}]}, "$.choices[0].index"),
        ("anthropic", {"type": "content_block_start", "index": 10_000_000_000,
                       "content_block": {"type": "text", "text": "x"}}, "$.index"),
        ("openai-responses", {"type": "response.output_text.delta",
                              "output_index": 10_000_000_000, "delta": "x"}, "$.output_index"),
        ("openai-responses", {"type": "response.output_text.delta", "output_index": 0,
                              "content_index": MAX_INDEX + 1, "delta": "x"}, "$.content_index"),
    ],
)  # fmt: skip
def test_an_absurd_index_skips_its_event_only(
    format: str, event: dict[str, Any], path: str
) -> None:
    data = jsonl(event)
    ((line, code, message),) = warned(data, format)
    assert (line, code) == (1, "schema-mismatch")
    assert f"<= {MAX_INDEX}" in message or ">= 0" in message
    assert path in message


def test_the_largest_index_allowed_is_a_map_key() -> None:
    data = jsonl(
        {"choices": [{"index": MAX_INDEX, "delta": {"content": "x"}, "finish_reason": "stop"}]}
    )
    last = final(data, "openai")
    assert texts(last, "text") == ["x"] and not warned(data, "openai")
    assert last.finish_reasons is not None and len(last.finish_reasons) == MAX_INDEX + 1


# -- event size -------------------------------------------------------------------


def _image_event(size: int) -> bytes:
    """An OpenAI image-generation event: one line of base64 of ``size`` bytes."""
    b64 = (b"iVBORw0KGgo" * (size // 11 + 1))[:size]
    return json.dumps(
        {"type": "response.image_generation_call.partial_image", "output_index": 0,
         "partial_image_b64": b64.decode(), "partial_image_index": 0}
    ).encode()  # fmt: skip


_RESP_START = {"type": "response.created", "response": {"model": "gpt-image"}}
_RESP_END = {"type": "response.completed", "response": {"status": "completed"}}


def test_the_default_limit_passes_a_4mb_single_line_event() -> None:
    limit = LimitsConfig().max_frame_bytes
    event = _image_event(4_200_000)
    data = sse(_RESP_START) + b"data: " + event + b"\n\n" + sse(_RESP_END)
    seen: list[str] = []
    found = list(
        convert([data], max_frame_bytes=limit, on_warning=lambda w, line: seen.append(w.message))
    )
    assert seen == []
    assert is_final(found[-1]) and not found[-1].aborted


@pytest.mark.parametrize("framing", ["sse", "jsonl"])
def test_an_event_over_the_limit_is_skipped_with_a_warning(framing: str) -> None:
    big = _image_event(300_000)
    frame = (lambda p: b"data: " + p + b"\n\n") if framing == "sse" else (lambda p: p + b"\n")
    data = (
        frame(json.dumps(_RESP_START).encode())
        + frame(big)
        + frame(json.dumps(_RESP_END).encode())
    )
    seen: list[tuple[int, str, str]] = []
    out = list(
        convert(
            [data[i : i + 4096] for i in range(0, len(data), 4096)],
            framing=framing,  # type: ignore[arg-type]
            max_frame_bytes=100_000,
            on_warning=lambda w, line: seen.append((line, w.code or "", w.message)),
        )
    )
    assert is_final(out[-1]) and not out[-1].aborted and out[-1].finish_reason == "completed"
    ((line, code, message),) = seen
    assert (line, code) == (2 if framing == "jsonl" else 3, "oversized-frame")
    # The size of the line that held it (SSE: with its "data: " field name).
    size = len(big) + (len(b"data: ") if framing == "sse" else 0)
    assert f"event of {size} bytes is over the limit of 100000 bytes" in message


@pytest.mark.parametrize("framer_class", [SSEFramer, JSONLinesFramer])
def test_an_over_long_line_is_discarded_as_it_arrives(framer_class: type[Any]) -> None:
    framer = framer_class(1000)
    events = framer.feed(b"data: {}\n\n" if framer_class is SSEFramer else b"{}\n")
    for _ in range(1000):
        events += framer.feed(b"x" * 10_000)
        # Never more than the limit held, however long the line grows.
        assert framer._lines._partial_size <= 1100
    events += framer.feed(b"\n\n" + (b"data: {}\n\n" if framer_class is SSEFramer else b"{}\n"))
    assert [(e.payload, e.oversized) for e in events] == [
        (b"{}", 0),
        (b"", 10_000_000),
        (b"{}", 0),
    ]


def test_sse_events_with_empty_data_are_not_events() -> None:
    framer = SSEFramer()
    data = b"data:\n\ndata: \n\n: comment\n\ndata:\ndata:\n\nevent: ping\ndata:\n\ndata: x\n\n"
    assert [e.payload for e in framer.feed(data) + framer.close()] == [b"x"]


def test_the_assembler_lays_out_no_list_by_an_absurd_choice() -> None:
    """Decoders refuse such an index; the assembler keeps the promise on its own too."""
    assembler = BlockAssembler("s", "s/1")
    huge = 10_000_000_000
    assembler.feed([TextDelta("k", "text", "x", huge), ChoiceFinish(huge, "stop")])
    final = assembler.feed([ChoiceFinish(0, "stop"), StreamEnd()])
    assert final is not None and final.finish_reasons is None and final.finish_reason == "stop"


# -- the one list of irregularities ------------------------------------------------


def test_every_irregularity_recorded_is_listed_once_and_documented() -> None:
    """Each code a decoder records is in its table (or the common ones) and in docs/protocol.md."""
    docs = (ROOT / "docs" / "protocol.md").read_text()
    used = re.compile(r'(?:irregular\(\s*|code=)"([a-z0-9-]+)"')
    for decoder in DECODERS.values():
        module = __import__(decoder.__module__, fromlist=["_"])
        source = Path(module.__file__ or "").read_text()
        known = {**COMMON_IRREGULARITIES, **decoder.irregularities_table}
        codes = set(used.findall(source))
        assert codes <= set(known), (decoder.name, codes - set(known))
        assert set(decoder.irregularities_table) <= codes, decoder.name
    for code in [*COMMON_IRREGULARITIES, *PRODUCER_IRREGULARITIES] + [
        code for d in DECODERS.values() for code in d.irregularities_table
    ]:
        assert f"`{code}`" in docs, code


def test_a_stream_opened_before_its_first_event_shows_a_skipped_one() -> None:
    """With ``open`` (the capture proxy), a first event no decoder knows goes into that stream."""
    streams = ProducerStreams("s", "auto", lambda: "s/1")
    streams.open(None)
    (update,) = streams.feed(b'{"hello": "world"}')
    assert [b.error.code for b in update.blocks if b.error is not None] == ["unknown-format"]
    assert [w.code for w in streams.warnings] == ["unknown-format"]
    (final,) = streams.feed(b'{"model": "m", "response": "ok", "done": true}')
    assert is_final(final) and not final.aborted and final.stream == "s/1"
    assert texts(final, "text") == ["ok"] and input_errors(final) == ["unknown-format"]
