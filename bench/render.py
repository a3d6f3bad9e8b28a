"""Render: µs per delta of the terminal renderer at 10k and 100k deltas.

One long markdown stream (paragraphs, lists, code, small tables, wide
characters) is delivered as small text deltas (1–6 characters, as providers
send tokens), each a block message built by the real BlockAssembler before
timing starts. Timed: ``TerminalRenderer.feed`` for every message, live tail
and synchronized updates included, as ``warpd subscribe`` runs it.

The claim is that the cost per delta does not grow with the stream: the
figure at 100k deltas must be within ±25% of the figure at 10k. The baseline,
measured in the same run, re-renders the whole text on every delta (what
renderers that repaint the whole message do, e.g. aider's); it runs at small
sizes only, because it is quadratic.

Second figure: bytes written per byte of text, on a long answer arriving
fast (2,000 lines at 1,000 deltas a second, on a clock of the benchmark's
own, the status line ticking ten times a second as ``warpd subscribe`` does),
with repaints capped at 30 frames a second against one repaint per delta
(``fps=0``, how the renderer worked before the cap). Target: ≤ 3×. This is
what the terminal, an SSH link or tmux has to carry.

Run: ``python -m bench render [--quick]`` (or ``python -m bench.render``).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable

from bench.timing import machine
from warpd.blocks import BlockAssembler
from warpd.ingest.deltas import ChoiceFinish, StreamEnd, StreamInfo, TextDelta
from warpd.protocol import BlocksMessage
from warpd.render import TerminalRenderer
from warpd.render.markdown import MarkdownWriter
from warpd.render.style import PLAIN, Row
from warpd.render.wrap import Layout

WIDTH, HEIGHT = 100, 40
FLATNESS = 0.25
_WORDS = (
    "the stream of tokens arrives in small pieces and every piece must be shown "
    "at once without repainting what the terminal already shows 終端 表示 ✓ "
    "**bold** _emphasis_ `code` [a link](https://example.com/x)"
).split()


def markdown_text(deltas: int, seed: int = 1) -> str:
    """About ``deltas`` × 3.5 characters of varied markdown."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    target = deltas * 3.5
    while size < target:
        kind = rng.random()
        if kind < 0.6:
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 60)))
        elif kind < 0.8:
            line = "- " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 20)))
        elif kind < 0.9:
            line = (
                "```python\n"
                + "\n".join(f"    value_{n} = compute({n}, {rng.random():.3f})" for n in range(5))
                + "\n```"
            )
        elif kind < 0.95:
            line = "## " + " ".join(rng.choice(_WORDS) for _ in range(4))
        else:
            line = "| a | b |\n|---|--:|\n" + "\n".join(
                f"| {rng.choice(_WORDS)} | {n} |" for n in range(4)
            )
        out.append(line + "\n\n")
        size += len(line) + 2
    return "".join(out)


def messages(deltas: int) -> list[BlocksMessage]:
    """The block messages of one stream of about ``deltas`` text deltas."""
    return messages_of(markdown_text(deltas))


def messages_of(text: str) -> list[BlocksMessage]:
    """The block messages of one stream of ``text`` in deltas of 1–6 characters."""
    rng = random.Random(2)
    assembler = BlockAssembler("bench", "bench/1", clock=lambda: 1_700_000_000.0)
    out: list[BlocksMessage] = []
    first = assembler.feed([StreamInfo(model="bench-model")])
    if first is not None:
        out.append(first)
    i = 0
    while i < len(text):
        n = rng.randint(1, 6)
        message = assembler.feed([TextDelta("t", "text", text[i : i + n])])
        if message is not None:
            out.append(message)
        i += n
    for deltas_ in ([ChoiceFinish(0, "stop")], [StreamEnd()]):
        message = assembler.feed(deltas_)
        if message is not None:
            out.append(message)
    return out


NOW = 1_700_000_000.0
BYTES_TARGET = 3.0


def warpd_render(stream: list[BlocksMessage]) -> int:
    """Feed every message to a renderer (every change drawn at once); the bytes it wrote."""
    renderer = TerminalRenderer(WIDTH, HEIGHT, fps=0, now=NOW)
    written = 0
    for message in stream:
        written += len(renderer.feed(message, NOW))
    return written + len(renderer.close())


# An answer's prose: plain words mostly, some inline code and bold, a link now and then.
_PROSE = (
    "the handler waits for the timer to fire once after the last event so that a burst "
    "of changes is seen as one and the callback runs with every path it collected"
).split()
_MARKED = ["`threading.Timer`", "`callback`", "**once**", "`asyncio`"]
_LINK = "[the docs](https://docs.python.org/3/library/threading.html)"


def long_answer(lines: int = 2_000, seed: int = 3) -> str:
    """A long answer: prose, list items and python blocks, ``lines`` source lines."""
    rng = random.Random(seed)
    out: list[str] = []

    def words(low: int, high: int) -> str:
        picked = [
            rng.choice(_MARKED) if rng.random() < 0.06 else rng.choice(_PROSE)
            for _ in range(rng.randint(low, high))
        ]
        if rng.random() < 0.05:
            picked.append(_LINK)
        return " ".join(picked)

    while len(out) < lines:
        kind = rng.random()
        if kind < 0.55:
            out.append(words(10, 22))
        elif kind < 0.75:
            out.append("- " + words(5, 14))
        elif kind < 0.9:
            out.append("```python")
            out += [f"    value_{n} = compute({n}, {rng.random():.3f})  # step {n}"
                    for n in range(6)]
            out.append("```")
        else:
            out.append("")
    return "\n".join(out[:lines]) + "\n"


def paced_bytes(text: str, fps: float, deltas_per_second: float = 1_000.0) -> int:
    """Bytes a renderer writes for ``text`` arriving in 1–6 character deltas at
    ``deltas_per_second``, driven as ``warpd subscribe`` drives it: frames
    drawn when due, the status line ticked every 0.1 s, on a simulated clock."""
    stream = messages_of(text)
    renderer = TerminalRenderer(WIDTH, HEIGHT, fps=fps, now=NOW)
    written = 0
    next_tick = NOW + 0.1
    for n, message in enumerate(stream):
        now = NOW + n / deltas_per_second
        while True:
            due = renderer.due
            moment = next_tick if due is None else min(due, next_tick)
            if moment > now:
                break
            if moment == next_tick:
                written += len(renderer.tick(next_tick))
                next_tick += 0.1
            else:
                written += len(renderer.flush(moment))
        written += len(renderer.feed(message, now))
    due = renderer.due
    if due is not None:
        written += len(renderer.flush(due))
    return written + len(renderer.close())


def naive_render(stream: list[BlocksMessage]) -> int:
    """Re-render the whole text so far on every delta (same markdown code, from scratch)."""
    layout = Layout(WIDTH)
    parts: list[str] = []
    rows = 0
    for message in stream:
        for block in message.blocks:
            if block.streaming and block.text:
                parts.append(block.text)
        out: list[Row] = []
        writer = MarkdownWriter(layout, out.append, base=PLAIN)
        writer.feed("".join(parts))
        writer.finish()
        rows = len(out)
    return rows


def cpu_seconds(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


def run(quick: bool = False) -> dict[str, float]:
    """Measure and print the table; returns the figures (µs per delta)."""
    sizes = (2_000, 20_000) if quick else (10_000, 100_000)
    naive_sizes = (250, 500) if quick else (500, 1_500)
    rounds = 3
    streams = {n: messages(n) for n in (*sizes, *naive_sizes)}
    # The input messages are held in memory only by the benchmark: keep the
    # garbage collector from walking them (a cost that grows with their number
    # and is not the renderer's).
    gc.collect()
    gc.freeze()
    warpd_render(streams[naive_sizes[0]])  # Untimed: imports, caches.
    figures: dict[str, float] = {}
    rows: list[tuple[str, int, float, float]] = []
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    written: dict[int, int] = {}
    for _ in range(rounds):
        # Sizes interleaved round by round: load from neighbours hits both alike.
        for n in sizes:
            stream = streams[n]
            seconds = cpu_seconds(lambda s=stream: written.__setitem__(len(s), warpd_render(s)))
            samples[n].append(seconds)
    for n in sizes:
        stream = streams[n]
        us = statistics.median(samples[n]) / len(stream) * 1e6
        figures[f"warpd {n}"] = us
        rows.append(("warpd", len(stream), us, written[len(stream)] / len(stream)))
    for n in naive_sizes:
        stream = streams[n]
        seconds = statistics.median(
            cpu_seconds(lambda s=stream: naive_render(s)) for _ in range(rounds)
        )
        us = seconds / len(stream) * 1e6
        figures[f"naive {n}"] = us
        rows.append(("re-render whole text per delta", len(stream), us, 0.0))
    small, large = sizes
    ratio = figures[f"warpd {large}"] / figures[f"warpd {small}"]
    figures["ratio"] = ratio
    print("## Render\n")
    print(
        f"`TerminalRenderer.feed` per delta (text deltas of 1–6 characters, markdown, "
        f"{WIDTH}×{HEIGHT} terminal, live tail and synchronized output on); CPU time, "
        f"median of {rounds} runs.\n"
    )
    print("| contender | deltas | µs/delta | bytes written/delta |")
    print("|---|--:|--:|--:|")
    for name, count, us, per in rows:
        bytes_each = f"{per:.0f}" if per else ""
        print(f"| {name} | {count} | {us:.1f} | {bytes_each} |")
    verdict = "MET" if abs(ratio - 1) <= FLATNESS else "NOT MET"
    naive_growth = figures[f"naive {naive_sizes[1]}"] / figures[f"naive {naive_sizes[0]}"]
    print(
        f"\nwarpd at {large // 1000}k vs {small // 1000}k deltas: ×{ratio:.2f} per delta "
        f"(target within ±{FLATNESS:.0%}: {verdict}); the re-rendering baseline grows "
        f"×{naive_growth:.1f} per delta from {naive_sizes[0]} to {naive_sizes[1]} deltas."
    )
    text = long_answer(400 if quick else 2_000)
    size = len(text.encode())
    print(
        f"\nBytes written per byte of text: a {text.count(chr(10))}-line answer "
        f"({size / 1000:.0f} kB) in 1–6 character deltas at 1,000 deltas/s.\n"
    )
    print("| repaints | bytes written | per byte of text |")
    print("|---|--:|--:|")
    for name, fps in (("every delta (fps=0, before the cap)", 0.0), ("capped at 30/s", 30.0)):
        written = paced_bytes(text, fps)
        figures[f"bytes per text byte, fps={fps:g}"] = written / size
        print(f"| {name} | {written:,} | {written / size:.2f}× |")
    capped = figures["bytes per text byte, fps=30"]
    verdict = "MET" if capped <= BYTES_TARGET else "NOT MET"
    print(f"\nCapped: {capped:.2f}× the text (target ≤ {BYTES_TARGET:g}×: {verdict}).")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    quick = parser.parse_args().quick
    print(f"machine: {machine()}\n")
    run(quick=quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
