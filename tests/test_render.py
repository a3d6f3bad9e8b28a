"""The terminal renderer, read back through a VT100 emulator (pyte).

The central property: however a stream is delivered (many small deltas, a
snapshot then deltas, a resync), what ends up on screen and in scrollback is
exactly what a one-shot render of the completed stream shows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import fixture_files
from tests.vt import Terminal
from warpd.blocks import BlockAssembler
from warpd.errors import InputError
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
from warpd.protocol import BlocksMessage, ErrorMessage, HelloMessage, StreamMessage
from warpd.render import SYNC_BEGIN, SYNC_END, TerminalRenderer
from warpd.render.wrap import text_width

WIDTHS = (40, 80, 120)
HEIGHT = 12
NOW = 1_700_000_000.0

# The only escape sequences the renderer itself writes.
OWN_SEQUENCES = re.compile(
    r"\x1b\[[0-9;]*m|\x1b\]8;;[!-~]*\x1b\\|\x1b\[\?2026[hl]|\x1b\[A|\x1b\[2K"
)


def clock() -> float:
    return NOW


# -- building streams ---------------------------------------------------------


def fragments(text: str, rng: random.Random, most: int = 4) -> Iterator[str]:
    """``text`` cut into pieces of 1..``most`` characters."""
    i = 0
    while i < len(text):
        n = rng.randint(1, most)
        yield text[i : i + n]
        i += n


def assemble(
    events: Iterable[list[Delta]], *, session: str = "default", stream: str = "default/1"
) -> list[BlocksMessage]:
    """The messages a daemon would publish for these upstream events."""
    assembler = BlockAssembler(session, stream, clock=clock)
    out = []
    for deltas in events:
        message = assembler.feed(deltas)
        if message is not None:
            out.append(message)
        if assembler.done:
            break
    for seq, message in enumerate(out, 1):
        message.seq = seq
    return out


def text_stream(
    text: str,
    *,
    seed: int = 0,
    reasoning: str = "",
    model: str = "test-model",
    finish: str = "stop",
    **names: str,
) -> list[BlocksMessage]:
    rng = random.Random(seed)
    events: list[list[Delta]] = [[StreamInfo(model=model)]]
    events += [[TextDelta("r", "reasoning", piece)] for piece in fragments(reasoning, rng)]
    events += [[TextDelta("t", "text", piece)] for piece in fragments(text, rng)]
    events.append(
        [ChoiceFinish(0, finish), StreamInfo(usage={"input_tokens": 12, "output_tokens": 34})]
    )
    events.append([StreamEnd()])
    return assemble(events, **names)


# -- rendering ----------------------------------------------------------------


def render(
    messages: Iterable[StreamMessage],
    width: int,
    height: int = HEIGHT,
    *,
    ticks: bool = True,
    **options: object,
) -> tuple[list[str], list[bytes]]:
    """Screen + scrollback lines after feeding ``messages``, and every output chunk.

    Unless ``fps`` is given, every change is drawn at once (the most repaints).
    """
    options.setdefault("fps", 0)
    renderer = TerminalRenderer(width, height, now=NOW, **options)  # type: ignore[arg-type]
    term = Terminal(width, height)
    chunks = []
    for n, message in enumerate(messages):
        chunks.append(renderer.feed(message, NOW))
        if ticks and n % 3 == 0:
            chunks.append(renderer.tick(NOW + n))
    chunks.append(renderer.close())
    if options.get("plain"):
        lines = [line.rstrip() for line in b"".join(chunks).decode().split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines, chunks
    for chunk in chunks:
        term.feed(chunk)
    return term.lines(), chunks


def soft_wrapped(lines: list[str], width: int) -> list[str]:
    """Plain output lines as a terminal ``width`` columns wide shows them (wrapping long ones)."""
    out = []
    for line in lines:
        row, used = "", 0
        for ch in line:
            w = text_width(ch)
            if used + w > width:
                out.append(row.rstrip())
                row, used = "", 0
            row += ch
            used += w
        out.append(row.rstrip())
    return out


def one_shot(messages: list[BlocksMessage], width: int, **options: object) -> list[str]:
    return render([messages[-1]], width, ticks=False, **options)[0]


def check_output(chunks: list[bytes], height: int = HEIGHT, max_tail: int = 8) -> None:
    """Every 2026 h has its l, only the renderer's own escapes, a bounded tail."""
    for chunk in chunks:
        text = chunk.decode()
        marks = re.findall(r"\x1b\[\?2026([hl])", text)
        assert "".join(marks) == "hl" * (len(marks) // 2), marks
        # The tail is erased row by row going up, once per update.
        for update in text.split(SYNC_BEGIN):
            assert update.count("\x1b[A") + 1 <= min(max_tail, height - 1)
        rest = OWN_SEQUENCES.sub("", text)
        assert "\x1b" not in rest
        assert not re.search("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]", rest), repr(rest)


# -- recorded fixtures --------------------------------------------------------


def fixture_messages(path: Path) -> list[BlocksMessage]:
    try:
        return list(convert([path.read_bytes()]))
    except InputError as exc:
        pytest.skip(f"{path.name}: its format is not decoded yet ({exc})")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", fixture_files("*.sse", "*.jsonl", "*.ndjson"))
def test_fixture_streamed_equals_one_shot(path: Path, width: int) -> None:
    messages = fixture_messages(path)
    lines, chunks = render(messages, width)
    check_output(chunks)
    assert lines == one_shot(messages, width)
    assert lines[0].startswith("── default/1")
    # The footer closes the stream; no duration when it means nothing ("0.0s").
    footer = next(line for line in reversed(lines) if line.startswith("── "))
    assert "0.0s" not in footer and not footer.startswith("── ──")


@pytest.mark.parametrize("path", fixture_files("*.sse", "*.jsonl", "*.ndjson"))
def test_fixture_plain_mode_has_no_escapes(path: Path) -> None:
    messages = fixture_messages(path)
    lines, chunks = render(messages, 80, plain=True)
    assert b"\x1b" not in b"".join(chunks) and b"\r" not in b"".join(chunks)
    # The same text as a terminal shows.
    assert lines == one_shot(messages, 80)


# -- hand-made streams --------------------------------------------------------

MARKDOWN = """\
# A heading with *emphasis*

Some **bold text**, some _italic_, a `code span`, ~~struck~~ and a
[link to example](https://example.com/a?b=c) in a paragraph that is long enough to wrap \
at forty columns at least once.

## Lists

- first item with a long enough text to wrap under its bullet when narrow
- second item
  - nested item
1. ordered one
2. ordered two

> a quote that is also fairly long so that it wraps on the narrow terminal width

---

```python
def main() -> None:
\tprint("tabs and    spaces kept")  # a long comment that has to be hard-wrapped somewhere
```

| name | value | note |
|:-----|------:|:----:|
| alpha | 1 | first row with a long note that will need wrapping in narrow terminals |
| beta | 22 | `code` |

2 * 3 = 6 and snake_case_names stay as they are; an unclosed ** marker.
Trailing text without a newline"""


def test_markdown_rendering() -> None:
    messages = text_stream(MARKDOWN)
    lines, chunks = render(messages, 80)
    check_output(chunks)
    text = "\n".join(lines)
    assert "# A heading with emphasis" in text
    assert "Some bold text, some italic, a code span, struck and a" in text
    assert "link to example (https://example.com/a?b=c) in a paragraph" in text
    assert "• first item" in text and "  • nested item" in text and "1. ordered one" in text
    assert "│ a quote" in text
    assert "```python" in text and "    print(" in text
    assert "snake_case_names" in text and "2 * 3 = 6" in text
    assert re.search(r"name +│ +value │ +note", text)
    assert re.search(r"alpha +│ +1 │", text)
    assert "| name" not in text
    raw = b"".join(chunks)
    assert b"\x1b]8;;https://example.com/a?b=c\x1b\\" in raw


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("seed", range(3))
def test_markdown_streamed_equals_one_shot(width: int, seed: int) -> None:
    messages = text_stream(MARKDOWN, seed=seed, reasoning="Let me *think* about it.\n\nOK.")
    lines, chunks = render(messages, width)
    check_output(chunks)
    assert lines == one_shot(messages, width)
    # Without colour, code spans keep their backticks: the same rows as plain text.
    mono, _ = render(messages, width, color=False)
    plain, _ = render(messages, width, plain=True)
    assert soft_wrapped(plain, width) == mono
    assert "`code span`" in " ".join(plain) and "`code" not in " ".join(lines)


WIDE = (
    "中文字符在终端里占两个单元格，换行必须按显示宽度计算。"
    "日本語のテキストも同じです。😀 emoji 🎉 and combining: e\u0301 a\u0308 n\u0303.\n"
    "한국어 문장도 마찬가지로 두 칸을 차지합니다 👍🏽 ❤️ 🇫🇷.\n"
    "| 名前 | 値 |\n|---|---|\n| 東京 | 一千万 |\n| x | 😀😀 |\n"
)


@pytest.mark.parametrize("width", WIDTHS)
def test_wide_characters(width: int) -> None:
    messages = text_stream(WIDE * 3, seed=width)
    lines, chunks = render(messages, width)
    check_output(chunks)
    assert lines == one_shot(messages, width)
    # pyte composes combining marks (NFC), and stops drawing a run of text at
    # a VS16 (a pyte quirk): check those in the plain output instead.
    joined = "".join(lines)
    assert "中文字符" in joined and "\u00e9" in joined
    plain = render(messages, width, plain=True)[0]
    assert "e\u0301" in "".join(plain) and "❤\ufe0f 🇫🇷." in "".join(plain)
    for line in plain:
        assert text_width(line) <= width, line


def test_taller_than_screen_commits_each_line_once() -> None:
    body = "".join(f"line {n:04d} of a stream much taller than the screen\n" for n in range(60))
    messages = text_stream(body, seed=7)
    lines, chunks = render(messages, 80, height=8)
    check_output(chunks, height=8)
    assert lines == one_shot(messages, 80)
    numbered = [line for line in lines if line.startswith("line ")]
    assert numbered == [f"line {n:04d} of a stream much taller than the screen" for n in range(60)]
    # Nothing committed is rendered again: each update stays small.
    assert max(len(chunk) for chunk in chunks) < 2000


def test_long_single_line_costs_per_delta_not_per_line() -> None:
    word = "lorem ipsum dolor sit amet " * 150
    messages = text_stream(word, seed=3)
    lines, chunks = render(messages, 80)
    assert lines == one_shot(messages, 80)
    assert max(len(chunk) for chunk in chunks[1:-2]) < 1000


INJECTIONS = [
    "clear\x1b[2J\x1b[Hscreen",
    "title\x1b]0;pwned\x07 and \x1b]2;pwned2\x1b\\",
    "clipboard\x1b]52;c;cm0gLXJmIH4=\x07",
    "fake prompt\r\n$ \rroot@host:~# sudo rm -rf /\x08\x08\x08\x08ok",
    "c1 csi \x9b2J and osc \x9d0;x\x9c and bell \x07",
    "bidi \u202eevil\u202c reversed \u2066iso\u2069",
    "link [click](javascript:alert(1)) [esc](https://e.com/\x1b]8;;)",
    "```\ncode \x1b[31mred\n```",
    "| a\x1b[2J | b |\n|---|---|\n| \x1b]52;c;x\x07 | z |",
]


@pytest.mark.parametrize("width", WIDTHS)
def test_injection_is_neutralised(width: int) -> None:
    text = "\n".join(INJECTIONS) + "\n"
    messages = [
        *text_stream(text, seed=width, model="evil\x1b]0;model\x07")[:-1],
    ]
    tool = assemble(
        [
            [ToolCallDelta("c", '{"x": "\x1b[2J', call_id="id\x1b[H", name="rm\x1b]52;c;x\x07")],
            [ToolCallDelta("c", '"}')],
            [UpstreamError("bad \x1b[2J thing\x07", code="e\x1b")],
            [StreamEnd(aborted=True, reason="gone \x1b]0;t\x07")],
        ],
        stream="default/2",
    )
    final = text_stream(text, seed=width, model="evil\x1b]0;model\x07")[-1]
    lines, chunks = render([*messages, final, *tool], width)
    check_output(chunks)
    term = Terminal(width, HEIGHT)
    for chunk in chunks:
        term.feed(chunk)
    assert term.screen.title == ""
    joined = "".join(lines)
    assert "^[[2J" in joined and "^[]52;c;" in joined and "<U+202E>" in joined
    assert "^M" in joined and "^H^H" in joined and "<U+009B>" in joined
    assert lines[0].startswith("── default/1")  # Nothing cleared the screen.
    assert "click" in joined and b"javascript" not in b"".join(
        re.findall(rb"\x1b]8;;[^\x1b]*", b"".join(chunks))
    )


def test_no_color_and_plain() -> None:
    messages = text_stream(MARKDOWN)
    mono = b"".join(render(messages, 80, color=False)[1]).decode()
    assert not re.search(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;[25];[0-9;]*)[;m]", mono)
    assert "\x1b[?2026h" in mono
    plain = b"".join(render(messages, 80, plain=True)[1])
    assert b"\x1b" not in plain
    # The same text as in colour, but code spans keep their backticks and
    # code has no colours to show.
    def words(lines: list[str]) -> list[str]:
        return [" ".join(line.replace("`", "").split()) for line in lines]

    mono_lines = render(messages, 80, color=False)[0]
    assert "`code span`" in " ".join(mono_lines)
    assert words(mono_lines) == words(render(messages, 80)[0])


def test_status_line_while_live_gone_when_complete() -> None:
    messages = text_stream("hello world, this is streaming\n", seed=1)
    renderer = TerminalRenderer(80, HEIGHT, fps=0, now=NOW)
    term = Terminal(80, HEIGHT)
    for message in messages[:-1]:
        term.feed(renderer.feed(message, NOW))
    assert renderer.live
    spun = renderer.tick(NOW + 5)
    assert spun and SYNC_BEGIN.encode() in spun and SYNC_END.encode() in spun
    term.feed(spun)
    assert any("default/1 · 5.0s" in line for line in term.lines())
    term.feed(renderer.feed(messages[-1], NOW))
    assert not renderer.live and renderer.tick(NOW + 6) == b""
    assert not any("⠋" in line or "⠙" in line for line in term.lines())
    assert term.lines()[-1].startswith("── done · 12 in · 34 out tokens ───")


def test_snapshot_for_late_joiner_and_resync() -> None:
    text = "Some text that arrives\nin pieces\nover several lines\nand ends here.\n"
    messages = text_stream(text, seed=5, reasoning="thinking first")
    assembler = BlockAssembler("default", "default/1", clock=clock)
    rng = random.Random(5)
    events: list[list[Delta]] = [[StreamInfo(model="test-model")]]
    events += [[TextDelta("r", "reasoning", p)] for p in fragments("thinking first", rng)]
    events += [[TextDelta("t", "text", p)] for p in fragments(text, rng)]
    live: list[StreamMessage] = []
    snapshot_at = len(events) // 2
    late: list[StreamMessage] = []
    for n, deltas in enumerate(events):
        message = assembler.feed(deltas)
        if n == snapshot_at:
            late.append(assembler.snapshot())
        if message is not None:
            live.append(message)
            if n > snapshot_at:
                late.append(message)
    final = assembler.feed(
        [ChoiceFinish(0, "stop"), StreamInfo(usage={"input_tokens": 12, "output_tokens": 34})]
    )
    rest = [m for m in (final, assembler.feed([StreamEnd()])) if m is not None]
    expected = one_shot([*live, *rest], 80)
    # A late joiner: the snapshot, then the live deltas.
    assert render([*late, *rest], 80)[0] == expected
    # A resync: some deltas, messages lost, a snapshot with everything so far.
    resync = assembler_snapshot_copy(late[0])
    assert render([*live[:3], resync, *late[1:], *rest], 80)[0] == expected
    assert messages  # the same stream built the ordinary way also renders
    assert render(messages, 80)[0] == one_shot(messages, 80)


def assembler_snapshot_copy(snapshot: StreamMessage) -> StreamMessage:
    snapshot.resync = True
    return snapshot


def test_interleaved_streams_keep_their_blocks_together() -> None:
    a = text_stream("".join(f"alpha {n}\n" for n in range(20)), seed=1, stream="default/1")
    b = text_stream(
        "".join(f"beta {n}\n" for n in range(20)), seed=2, session="other", stream="other/1"
    )
    mixed: list[StreamMessage] = []
    for x, y in zip(a, b, strict=False):
        mixed += [x, y]
    longer = a if len(a) > len(b) else b
    mixed += longer[min(len(a), len(b)) :]
    lines, chunks = render(mixed, 80)
    check_output(chunks)
    assert lines == one_shot(a, 80) + [""] + one_shot(b, 80)


def test_tool_call_pretty_invalid_and_truncated() -> None:
    good = '{"city": "Paris", "days": [1, 2, 3], "nested": {"k": "v"}}'
    messages = assemble(
        [
            [StreamInfo(model="m")],
            *(
                [ToolCallDelta("a", p, call_id="call_1", name="get_weather")]
                for p in fragments(good, random.Random(1))
            ),
            [ToolCallDelta("b", '{"broken": ', call_id="call_2", name="bad_json")],
            [ToolCallDelta("b", "tru")],
            [ChoiceFinish(0, "tool_calls")],
            [StreamEnd()],
        ]
    )
    lines, chunks = render(messages, 80)
    check_output(chunks)
    assert lines == one_shot(messages, 80)
    text = "\n".join(lines)
    # Short arrays of scalars on one line.
    assert '⚙ get_weather call_1\n{\n  "city": "Paris",\n  "days": [1, 2, 3],\n' in text
    assert '{"broken": tru\n(arguments are not valid JSON)' in text
    cut = assemble(
        [
            [ToolCallDelta("a", '{"x": 1', call_id="c", name="f")],
            [StreamEnd(aborted=True, reason="producer went away")],
        ]
    )
    lines = render(cut, 80)[0]
    assert "(cut off before the call was complete)" in lines
    assert any("aborted: producer went away" in line for line in lines)


def test_error_block_in_red_with_reason() -> None:
    messages = assemble(
        [
            [TextDelta("t", "text", "partial")],
            [UpstreamError("Overloaded", code="overloaded_error")],
            [StreamEnd(aborted=True, reason="provider error")],
        ]
    )
    lines, chunks = render(messages, 80)
    assert "✗ provider error (overloaded_error)" in lines
    assert "  Overloaded" in lines
    assert b"\x1b[0;1;31m" in b"".join(chunks)


def test_resize_repaints_tail_at_new_width() -> None:
    messages = text_stream("word " * 400, seed=4)
    renderer = TerminalRenderer(40, HEIGHT, fps=0, now=NOW)
    term = Terminal(40, HEIGHT)
    chunks = []
    half = len(messages) // 2
    for message in messages[:half]:
        chunks.append(renderer.feed(message, NOW))
    for chunk in chunks:
        term.feed(chunk)
    chunks.append(renderer.resize(100, HEIGHT))
    term.screen.resize(HEIGHT, 100)
    term.feed(chunks[-1])
    for message in messages[half:]:
        chunks.append(renderer.feed(message, NOW))
        term.feed(chunks[-1])
    check_output(chunks)
    lines = term.lines()
    assert max(len(line) for line in lines) > 40
    assert all(len(line) <= 100 for line in lines)
    assert " ".join(" ".join(lines).split()).count("word") == 400


def test_reconnection_to_a_restarted_daemon_ends_what_was_live() -> None:
    first = text_stream("before the restart\nand more\n", seed=1)
    renderer = TerminalRenderer(80, HEIGHT, fps=0, now=NOW)
    term = Terminal(80, HEIGHT)
    term.feed(renderer.feed(HelloMessage(epoch="one", sessions=["default"]), NOW))
    for message in first[:-3]:
        term.feed(renderer.feed(message, NOW))
    assert renderer.live
    # The daemon restarted: a new epoch, and its stream ids start again at 1.
    term.feed(renderer.feed(HelloMessage(epoch="two", sessions=["default"]), NOW))
    assert not renderer.live
    again = text_stream("after the restart\n", seed=2)
    for message in again:
        term.feed(renderer.feed(message, NOW))
    term.feed(renderer.close())
    lines = term.lines()
    assert "(interrupted: the connection to warpd was lost)" in lines
    assert lines.count(lines[0]) == 2  # Two headers of default/1.
    assert "after the restart" in lines


def test_error_message_from_the_daemon() -> None:
    renderer = TerminalRenderer(80, HEIGHT, plain=True, now=NOW)
    out = renderer.feed(ErrorMessage(message="unknown session \x1b[2J"), NOW)
    assert out == b"warpd: unknown session ^[[2J\n"


ALPHABET = "ab c\n\n*_`~[]()|-#>1.:\\\t\r\x1b\x07\u202e中😀\u0301é "


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=ALPHABET, max_size=300)
    | st.sampled_from([MARKDOWN, WIDE, "\n".join(INJECTIONS)]),
    cuts=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=50),
    width=st.integers(min_value=8, max_value=60),
)
def test_any_split_renders_like_one_shot(text: str, cuts: list[int], width: int) -> None:
    """Plain output (the committed rows exactly) does not depend on how text was cut."""
    pieces, i, n = [], 0, 0
    while i < len(text):
        pieces.append(text[i : i + cuts[n % len(cuts)]])
        i += cuts[n % len(cuts)]
        n += 1
    events: list[list[Delta]] = [[StreamInfo(model="m")]]
    events += [[TextDelta("t", "text", piece)] for piece in pieces]
    events += [[ChoiceFinish(0, "stop")], [StreamEnd()]]
    messages = assemble(events)
    streamed = b"".join(render(messages, width, plain=True)[1]).decode()
    whole = b"".join(render([messages[-1]], width, plain=True, ticks=False)[1]).decode()
    assert streamed == whole
    assert "\x1b" not in streamed and "\r" not in streamed


def test_note_is_committed_above_the_live_tail() -> None:
    messages = text_stream("first line\nsecond", seed=1)
    renderer = TerminalRenderer(80, HEIGHT, fps=0, now=NOW)
    term = Terminal(80, HEIGHT)
    for message in messages[:-2]:
        term.feed(renderer.feed(message, NOW))
    term.feed(renderer.note("warpd subscribe: reconnected \x1b[2J"))
    for message in messages[-2:]:
        term.feed(renderer.feed(message, NOW))
    lines = term.lines()
    assert "warpd subscribe: reconnected ^[[2J" in lines
    assert lines.count("first line") == 1 and "second" in lines
