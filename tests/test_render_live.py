"""The live tail and the frames: every growing block in view, repaints capped, the last
state always drawn, and what a stream's footer says."""

from __future__ import annotations

import random
import re

import pytest

from tests.conftest import case_file, fixture_files
from tests.test_render import (
    HEIGHT,
    NOW,
    WIDTHS,
    assemble,
    check_output,
    fixture_messages,
    one_shot,
    render,
    text_stream,
)
from tests.vt import Terminal
from warpd.ingest.convert import convert
from warpd.ingest.deltas import (
    ChoiceFinish,
    Delta,
    StreamEnd,
    StreamInfo,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
)
from warpd.protocol import BlocksMessage, StreamMessage
from warpd.render import TerminalRenderer


def parallel_calls() -> list[BlocksMessage]:
    return list(convert([case_file("render/parallel_tool_calls.jsonl").read_bytes()]))


def tool_names(messages: list[BlocksMessage]) -> list[str]:
    return [b.tool.function.name for b in messages[-1].blocks if b.tool is not None]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_tool_call_is_on_screen_while_it_grows(width: int) -> None:
    messages = parallel_calls()
    names = tool_names(messages)
    assert len(names) == 3
    renderer = TerminalRenderer(width, 24, fps=0, now=NOW)
    term = Terminal(width, 24)
    started: list[str] = []
    complete: set[str] = set()
    for n, message in enumerate(messages[:-1]):
        term.feed(renderer.feed(message, NOW + n * 0.025))
        for block in message.blocks:
            name = block.tool.function.name if block.tool is not None else ""
            if name and name not in started:
                started.append(name)
            if name and block.complete:
                complete.add(name)
        # A call still growing is on screen; a complete one is in the scrollback.
        screen = "\n".join(term.screen.display)
        for name in started:
            where = "\n".join(term.lines()) if name in complete else screen
            assert f"⚙ {name}" in where, f"after message {n}, {name} not shown:\n{screen}"
    assert started == names
    term.feed(renderer.feed(messages[-1], NOW + len(messages)))
    term.feed(renderer.close())
    lines = term.lines()
    assert lines == one_shot(messages, width, height=24)
    # Each call once, in order, with its arguments as pretty JSON.
    shown = [line for line in lines if line.startswith("⚙ ")]
    assert [line.split()[1] for line in shown] == names


def test_growing_blocks_share_the_tail_and_keep_their_heads() -> None:
    messages = parallel_calls()
    renderer = TerminalRenderer(80, 12, fps=0, now=NOW, max_tail=5)
    term = Terminal(80, 12)
    growing = [m for m in messages if not any(b.complete for b in m.blocks)]
    for message in growing:
        term.feed(renderer.feed(message, NOW))
    screen = [line.rstrip() for line in term.screen.display]
    heads = [line for line in screen if line.startswith("⚙ ")]
    assert len(heads) == 3, screen
    # 5 rows: the three heads, a row of the newest call's arguments, the status.
    tail = [line for line in screen if line][-5:]
    assert tail[0].startswith("⚙ ") and tail[-1].startswith(("⠋", "⠙", "⠹", "⠸"))


def test_later_choices_show_while_they_grow() -> None:
    events: list[list[Delta]] = [[StreamInfo(model="m")]]
    for n in range(30):
        events.append([TextDelta(("t", 0), "text", f"zero {n} ", choice=0)])
        events.append([TextDelta(("t", 1), "text", f"one {n} ", choice=1)])
    events += [[ChoiceFinish(0, "stop"), ChoiceFinish(1, "length")], [StreamEnd()]]
    messages = assemble(events)
    renderer = TerminalRenderer(60, HEIGHT, fps=0, now=NOW)
    term = Terminal(60, HEIGHT)
    for message in messages[:-1]:
        term.feed(renderer.feed(message, NOW))
    screen = "\n".join(term.screen.display)
    assert "choice 0" in screen and "choice 1" in screen and "one 29" in screen
    term.feed(renderer.feed(messages[-1], NOW))
    lines = term.lines()
    assert lines == one_shot(messages, 60)
    # Every choice is labelled, choice 0 too; the footer says how each ended.
    assert lines[1] == "choice 0" and "choice 1" in lines
    assert "choice 0: done, choice 1: cut off at the token limit" in lines[-1]


@pytest.mark.parametrize("path", fixture_files("openai_chat_n3_choices.sse"))
def test_n_choices_are_all_labelled(path: object) -> None:
    messages = fixture_messages(path)  # type: ignore[arg-type]
    lines = render(messages, 80)[0]
    assert [line for line in lines if line.startswith("choice ")] == [
        "choice 0", "choice 1", "choice 2"
    ]
    assert lines == one_shot(messages, 80)


# -- frames ---------------------------------------------------------------


def paced(
    messages: list[StreamMessage], renderer: TerminalRenderer, per_second: float
) -> list[bytes]:
    """Feed ``messages`` ``per_second`` on a simulated clock, as ``warpd subscribe``
    does: frames drawn when due, the status line ticked every 0.1 s."""
    out: list[bytes] = []
    next_tick = NOW + 0.1
    for n, message in enumerate(messages):
        now = NOW + n / per_second
        while True:
            due = renderer.due
            moment = next_tick if due is None else min(due, next_tick)
            if moment > now:
                break
            if moment == next_tick:
                out.append(renderer.tick(moment))
                next_tick += 0.1
            else:
                out.append(renderer.flush(moment))
        out.append(renderer.feed(message, now))
    due = renderer.due
    if due is not None:
        out.append(renderer.flush(due))
    out.append(renderer.close())
    return out


def long_answer(lines: int) -> str:
    rng = random.Random(5)
    words = "the handler waits for the timer to fire once after the last event so".split()
    out = []
    for n in range(lines):
        if n % 10 < 7:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(8, 20))))
        elif n % 10 == 7:
            out.append("```python")
        elif n % 10 == 8:
            out.append(f"value_{n} = compute({n}, 0.5)  # step {n}")
        else:
            out.append("```")
    return "\n".join(out) + "\n"


def test_a_fast_answer_costs_a_small_multiple_of_its_text() -> None:
    """1,000 deltas a second, repaints capped at 30 a second: ≤ 3 bytes per byte of text."""
    text = long_answer(300)
    messages = text_stream(text, seed=4)
    renderer = TerminalRenderer(100, 40, fps=30, now=NOW)
    chunks = paced(messages, renderer, per_second=1000)
    check_output(chunks, height=40)
    written = sum(map(len, chunks))
    assert written <= 3 * len(text.encode()), written / len(text.encode())
    # Capped: at most 30 frames a second, over the ~len(messages)/1000 s of the stream.
    frames = sum(1 for chunk in chunks if chunk)
    assert frames <= 30 * len(messages) / 1000 + 15
    # And the last state is drawn: the same screen as every delta drawn at once.
    term = Terminal(100, 40)
    for chunk in chunks:
        term.feed(chunk)
    drawn, at_once = term.lines(), render(messages, 100, height=40)[0]
    assert drawn[:-1] == at_once[:-1] and drawn[-1].startswith(at_once[-1][:30])
    uncapped = sum(map(len, paced(messages, TerminalRenderer(100, 40, fps=0, now=NOW), 1000)))
    assert uncapped > 10 * written


def test_a_held_frame_is_due_and_flush_draws_it() -> None:
    messages = text_stream("first words\nsecond line of text\n", seed=1)
    renderer = TerminalRenderer(80, HEIGHT, fps=30, now=NOW)
    assert renderer.feed(messages[0], NOW)  # The first frame is drawn at once.
    held = renderer.feed(messages[1], NOW + 0.001)
    assert held == b"" and renderer.due == pytest.approx(NOW + 1 / 30)
    assert renderer.flush(NOW + 0.01) == b""  # Not due yet.
    frame = renderer.flush(NOW + 1 / 30)
    assert frame and renderer.due is None


# -- footer ---------------------------------------------------------------


def test_footer_says_how_it_ended_in_words() -> None:
    for reason, words in (
        ("end_turn", "done"),
        ("max_tokens", "cut off at the token limit"),
        ("tool_use", "tool calls"),
        ("content_filter", "filtered"),
        ("odd\x1b[2J", "odd^[[2J"),
    ):
        lines = render(text_stream("hi\n", finish=reason), 80)[0]
        assert lines[-1].startswith(f"── {words} · 12 in · 34 out tokens ──"), lines[-1]


def test_footer_shows_a_duration_only_when_it_means_something() -> None:
    messages = text_stream("some text\n" * 3, seed=1)
    renderer = TerminalRenderer(80, HEIGHT, fps=0, now=NOW)
    term = Terminal(80, HEIGHT)
    for n, message in enumerate(messages):
        term.feed(renderer.feed(message, NOW + n * 0.5))
    seconds = (len(messages) - 1) * 0.5
    assert term.lines()[-1].startswith(f"── done · 12 in · 34 out tokens · {seconds:.1f}s")
    # Seen only at its end (history, a replay): no duration.
    assert not re.search(r"\d\.\ds ─", one_shot(messages, 80)[-1])


def test_an_error_is_said_once() -> None:
    messages = assemble(
        [
            [TextDelta("t", "text", "partial")],
            [UpstreamError("Overloaded, try later", code="overloaded_error")],
            [StreamEnd(aborted=True, reason="provider error: Overloaded, try later")],
        ]
    )
    text = "\n".join(render(messages, 80)[0])
    assert text.count("Overloaded, try later") == 1
    assert "── aborted: provider error ──" in text


def test_tool_calls_with_choices_say_which() -> None:
    messages = assemble(
        [
            [ToolCallDelta(("c", 0), '{"a": 1}', call_id="x", name="f", choice=0)],
            [ToolCallDelta(("c", 1), '{"a": 2}', call_id="y", name="f", choice=1)],
            [ChoiceFinish(0, "tool_calls"), ChoiceFinish(1, "tool_calls")],
            [StreamEnd()],
        ]
    )
    lines = render(messages, 80)[0]
    assert "⚙ choice 0 · f x" in lines and "⚙ choice 1 · f y" in lines
    assert lines[-1].startswith("── tool calls ──")
