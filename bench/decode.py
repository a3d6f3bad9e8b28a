"""Decode + assemble: µs per chunk of warpd's sans-I/O path against the SDKs' accumulators.

The same bytes (a long synthetic SSE stream, cut into 16 KiB socket reads)
go through:

- **warpd**: ``warpd.ingest.convert.convert`` — SSE framing, format
  detection, msgspec decoding, the decoder, the BlockAssembler, every block
  message built (what ``warpd convert`` does, minus printing);
- **openai-python**: the SDK's own ``SSEDecoder``, ``sse.json()``,
  ``construct_type(ChatCompletionChunk)`` (what ``Stream`` does per event),
  then ``ChatCompletionStreamState.handle_chunk`` and ``get_final_completion``;
- **anthropic-sdk**: the SDK's ``SSEDecoder``, ``construct_type`` of
  ``RawMessageStreamEvent``, then ``accumulate_event`` (what ``MessageStream``
  does per event);
- **naive**: ``json.loads`` per line and the seed's accumulator, which re-joins
  the text on every chunk (bench/naive.py).

Parsing is inside the timed region for every contender: each starts from the
same bytes and ends with the whole message, as a process consuming the stream
must. A second, "accumulator only" comparison gives openai-python chunk
objects already parsed, and warpd payloads already framed (warpd still
decodes their JSON, so that figure is conservative for warpd).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from bench import naive
from bench.streams import anthropic_messages, event_count, openai_chat, reads
from bench.timing import interleaved_medians, repeat_for, table, verdict, warm_up
from warpd.blocks import is_final
from warpd.ingest import DECODERS
from warpd.ingest.convert import convert
from warpd.ingest.framing import SSEFramer
from warpd.ingest.producer import ProducerStreams
from warpd.protocol import BlocksMessage

# What a contender returns: the final text of each block, in order, so the
# run can check that every contender really did the whole job.
Summary = list[str]

FLATNESS_LIMIT = 1.20
OPENAI_TARGET = 50.0


class Plan:
    """Stream sizes, rounds and sample lengths for a full or a quick run.

    The baselines cost 40–600 µs per chunk and the naive one grows with the
    stream, so they run at the smaller sizes only, ``{size: rounds}`` each.
    """

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.warm_up = 0.3 if quick else 0.6
        # One warpd sample repeats the stream to last about this long.
        self.sample_seconds = 0.15 if quick else 0.5
        self.rounds = 5
        if quick:
            self.sizes: tuple[int, ...] = (2_000, 10_000)
            self.openai_sdk: dict[int, int] = {2_000: 3}
            self.anthropic_sdk: dict[int, int] = {2_000: 3}
            self.naive: dict[int, int] = {2_000: 3, 10_000: 1}
        else:
            self.sizes = (10_000, 50_000, 200_000)
            self.openai_sdk = {10_000: 3}
            self.anthropic_sdk = {10_000: 3, 50_000: 3}
            # One run at 50k: it takes 15–20 s, and its point is the growth
            # (several times the per-chunk cost at 10k), not a precise figure.
            self.naive = {10_000: 3, 50_000: 1}


# -- warpd -----------------------------------------------------------------


def warpd_convert(data: list[bytes]) -> Summary:
    final: BlocksMessage | None = None
    for message in convert(data):
        final = message
    assert final is not None and is_final(final)
    return [_block_value(b) for b in final.blocks]


def _block_value(block: Any) -> str:
    return block.tool.function.arguments if block.tool is not None else block.text or ""


def warpd_payloads(payloads: list[bytes]) -> Summary:
    """ProducerStreams fed pre-framed payloads (JSON decoding still included)."""
    producer = ProducerStreams("bench", "auto", lambda: "bench/1")
    final: BlocksMessage | None = None
    for payload in payloads:
        for message in producer.feed(payload):
            final = message
    for message in producer.end():
        final = message
    assert final is not None
    return [_block_value(b) for b in final.blocks]


def sse_payloads(data: list[bytes]) -> list[bytes]:
    framer = SSEFramer()
    events = [e for chunk in data for e in framer.feed(chunk)] + framer.close()
    return [e.payload for e in events]


# -- openai-python ---------------------------------------------------------


def openai_sdk(data: list[bytes]) -> Summary:
    from openai._models import construct_type
    from openai._streaming import SSEDecoder
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for sse in SSEDecoder().iter_bytes(iter(data)):
        if sse.data.startswith("[DONE]"):
            break
        chunk = construct_type(type_=ChatCompletionChunk, value=sse.json())
        for _event in state.handle_chunk(chunk):
            pass
    return _openai_summary(state.get_final_completion())


def openai_sdk_objects(chunks: list[Any]) -> Summary:
    from openai.lib.streaming.chat import ChatCompletionStreamState

    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        for _event in state.handle_chunk(chunk):
            pass
    return _openai_summary(state.get_final_completion())


def openai_chunk_objects(data: list[bytes]) -> list[Any]:
    from openai._models import construct_type
    from openai._streaming import SSEDecoder
    from openai.types.chat import ChatCompletionChunk

    return [
        construct_type(type_=ChatCompletionChunk, value=sse.json())
        for sse in SSEDecoder().iter_bytes(iter(data))
        if not sse.data.startswith("[DONE]")
    ]


def _openai_summary(completion: Any) -> Summary:
    message = completion.choices[0].message
    calls = message.tool_calls or []
    return [message.content or ""] + [c.function.arguments for c in calls]


def naive_openai(data: list[bytes]) -> Summary:
    acc = naive.NaiveOpenAIAccumulator()
    for chunk in naive.sse_json_events(data):
        acc.add_chunk(chunk)
    calls = [acc.tool_call_buffer[i]["function"]["arguments"] for i in sorted(acc.tool_call_buffer)]
    return ["".join(acc.content_buffer), *calls]


# -- anthropic-sdk ---------------------------------------------------------


def anthropic_sdk(data: list[bytes]) -> Summary:
    from anthropic._models import construct_type
    from anthropic._streaming import SSEDecoder
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent

    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for sse in SSEDecoder().iter_bytes(iter(data)):
        if sse.event == "ping":
            continue  # MessageStream skips pings too.
        event = construct_type(type_=RawMessageStreamEvent, value=sse.json())
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    out: Summary = []
    for block in snapshot.content:
        if block.type == "thinking":
            out.append(block.thinking)
        elif block.type == "text":
            out.append(block.text)
        else:
            out.append(json_bufs[len(out)].decode())
    return out


def naive_anthropic(data: list[bytes]) -> Summary:
    acc = naive.NaiveAnthropicAccumulator()
    for event in naive.sse_json_events(data):
        acc.add_event(event)
    return ["".join(acc.parts[i]) for i in sorted(acc.parts)]


# -- the benchmark ---------------------------------------------------------


def _same_values(a: Summary, b: Summary) -> bool:
    """Whether two summaries hold the same values (tool arguments compared as JSON)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        try:
            if json.loads(x) != json.loads(y):
                return False
        except ValueError:
            return False
    return True


def _check(name: str, expected: Summary, got: Summary) -> None:
    if not _same_values(expected, got):
        raise SystemExit(f"bench decode: {name} does not give the same blocks as warpd")


def _keep(results: list[Summary], fn: Callable[[list[bytes]], Summary], data: list[bytes]) -> None:
    results.append(fn(data))


def _us(seconds: float, chunks: int) -> str:
    return f"{seconds / chunks * 1e6:.2f}"


Baselines = dict[str, tuple[Callable[[list[bytes]], Summary], dict[int, int]]]


def run_format(
    label: str, generate: Callable[[int], bytes], baselines: Baselines, plan: Plan
) -> dict[str, Any]:
    """Measure warpd and ``baselines`` on ``label`` streams; print and return the figures.

    First warpd alone at every size, sizes interleaved round by round with
    samples of equal length (the flatness figure); then each baseline at its
    sizes, each of its runs paired with a warpd sample in the same round (the
    ratio compares those, so load that comes and goes hits both).
    """
    streams = {size: reads(generate(size)) for size in plan.sizes}
    small = reads(generate(500))
    chunks = {size: event_count(b"".join(data)) for size, data in streams.items()}
    expected = {size: warpd_convert(data) for size, data in streams.items()}
    warm_up(partial(warpd_convert, streams[plan.sizes[0]]), plan.warm_up)
    warpd = {
        size: (
            partial(warpd_convert, data),
            repeat_for(partial(warpd_convert, data), plan.sample_seconds),
        )
        for size, data in streams.items()
    }
    flat = interleaved_medians(
        {str(s): w for s, w in warpd.items()}, {str(s): plan.rounds for s in warpd}
    )
    warpd_us = {size: flat[str(size)] / chunks[size] * 1e6 for size in plan.sizes}
    rows: list[list[object]] = []
    ratios: dict[str, dict[int, float]] = {name: {} for name in baselines}
    for size in plan.sizes:
        rows.append([label, "warpd", chunks[size], plan.rounds, f"{warpd_us[size]:.2f}", "", "1×"])
        for name, (fn, runs_at) in baselines.items():
            runs = runs_at.get(size)
            if runs is None:
                continue
            data = streams[size]
            if size == min(runs_at):
                fn(small)  # Untimed: pays for imports and first calls.
            results: list[Summary] = []
            times = interleaved_medians(
                {"warpd": warpd[size], name: (partial(_keep, results, fn, data), 1)},
                {"warpd": runs, name: runs},
            )
            _check(name, expected[size], results[-1])
            ratio = times[name] / times["warpd"]
            ratios[name][size] = ratio
            rows.append(
                [
                    label,
                    name,
                    chunks[size],
                    runs,
                    _us(times[name], chunks[size]),
                    _us(times["warpd"], chunks[size]),
                    f"{ratio:.1f}×",
                ]
            )
    print(
        table(
            [
                "stream",
                "contender",
                "chunks",
                "runs",
                "µs/chunk",
                "warpd µs/chunk, same rounds",
                "÷ warpd",
            ],
            rows,
        )
    )
    first, last = plan.sizes[0], plan.sizes[-1]
    growth = warpd_us[last] / warpd_us[first]
    print(
        f"  warpd per-chunk cost at {last:,} vs {first:,} chunks: {growth:.2f}× "
        f"(target ≤ {FLATNESS_LIMIT:.2f}×: {verdict(growth <= FLATNESS_LIMIT)})"
    )
    return {"warpd_us": warpd_us, "ratios": ratios, "growth": growth}


def accumulator_only(plan: Plan) -> float:
    """openai-python's handle_chunk on parsed chunks vs warpd on framed payloads."""
    size = min(plan.openai_sdk)
    data = reads(openai_chat(size))
    payloads = sse_payloads(data)
    objects = openai_chunk_objects(data)
    chunks = len(objects)
    _check("openai-python (objects)", warpd_payloads(payloads), openai_sdk_objects(objects))
    warm_up(partial(warpd_payloads, payloads), plan.warm_up)
    warpd_fn = partial(warpd_payloads, payloads)
    times = interleaved_medians(
        {
            "warpd": (warpd_fn, repeat_for(warpd_fn, plan.sample_seconds)),
            "sdk": (partial(openai_sdk_objects, objects), 1),
        },
        {"warpd": 3, "sdk": 3},
    )
    warpd_time, sdk_time = times["warpd"], times["sdk"]
    ratio = sdk_time / warpd_time
    print(
        table(
            ["accumulator only (parsing outside the timed region)", "chunks", "µs/chunk", "ratio"],
            [
                [
                    "warpd ProducerStreams.feed(payload) — JSON decode included",
                    chunks,
                    _us(warpd_time, chunks),
                    "1×",
                ],
                [
                    "openai-python handle_chunk(ChatCompletionChunk)",
                    chunks,
                    _us(sdk_time, chunks),
                    f"{ratio:.1f}×",
                ],
            ],
        )
    )
    return ratio


def run(quick: bool = False) -> None:
    plan = Plan(quick)
    print("## Decode + assemble")
    print(
        "Same bytes for every contender (synthetic SSE, 16 KiB reads); parsing (SSE + JSON) "
        "is inside the timed region for all of them. Times are the process's CPU time; "
        "µs/chunk is the median of `runs` runs, and each baseline run is paired with a warpd "
        "sample taken in the same round.\n"
    )
    openai = run_format(
        "openai chat",
        openai_chat,
        {
            "openai-python ChatCompletionStreamState": (openai_sdk, plan.openai_sdk),
            "naive dict+json, re-join per chunk": (naive_openai, plan.naive),
        },
        plan,
    )
    print()
    anthropic_baselines = {
        "anthropic-sdk accumulate_event": (anthropic_sdk, plan.anthropic_sdk),
        "naive dict+json, re-join per chunk": (naive_anthropic, plan.naive),
    }
    if "anthropic" in DECODERS:
        run_format("anthropic", anthropic_messages, anthropic_baselines, plan)
    else:
        print("anthropic: skipped — warpd has no anthropic decoder yet")
    print()
    objects_ratio = accumulator_only(plan)
    print()
    sdk_ratio = openai["ratios"]["openai-python ChatCompletionStreamState"][min(plan.openai_sdk)]
    print(
        f"Target ≥ {OPENAI_TARGET:.0f}× openai-python's accumulator: {sdk_ratio:.1f}× from bytes "
        f"({verdict(sdk_ratio >= OPENAI_TARGET)}), {objects_ratio:.1f}× accumulator only "
        f"({verdict(objects_ratio >= OPENAI_TARGET)})"
    )
