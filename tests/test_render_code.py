"""Code in the terminal renderer: highlighted by Pygments line by line, never broken.

A line of code (or of a tool call's JSON, or a URL) longer than the terminal
is written as one line, which the terminal soft-wraps: copied from the
scrollback, it is the line the model wrote.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pygments.lexers import get_lexer_by_name
from pygments.token import Text

from tests.conftest import case_file
from tests.test_render import (
    NOW,
    WIDTHS,
    assemble,
    check_output,
    one_shot,
    render,
    soft_wrapped,
    text_stream,
)
from warpd.ingest.convert import convert
from warpd.ingest.deltas import ChoiceFinish, StreamEnd, StreamInfo, ToolCallDelta
from warpd.protocol import BlocksMessage
from warpd.render import TerminalRenderer
from warpd.render.code import lex_line

ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\]8;;[^\x1b]*\x1b\\|\x1b\[\?2026[hl]")
SGR_COLOUR = re.compile(rb"\x1b\[[0-9;]*?(38;5;\d+|38;2;\d+;\d+;\d+)")


def coding_answer() -> list[BlocksMessage]:
    return list(convert([case_file("render/coding_answer.jsonl").read_bytes()]))


def answer_text(messages: list[BlocksMessage]) -> str:
    final = messages[-1]
    return "".join(block.text or "" for block in final.blocks if block.type == "text")


def long_code_lines(text: str, width: int) -> list[str]:
    """The lines inside fences that are wider than ``width``."""
    lines, inside = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            inside = not inside
        elif inside and len(line) > width:
            lines.append(line)
    return lines


@pytest.mark.parametrize("width", (40, 60, 80, 120))
def test_a_long_code_line_is_one_line_soft_wrapped(width: int) -> None:
    messages = coding_answer()
    long_lines = long_code_lines(answer_text(messages), width)
    assert long_lines, "the case has code lines longer than the terminal"
    lines, chunks = render(messages, width, height=24)
    check_output(chunks)
    # In the bytes: each line whole between two line ends, no newline inside.
    written = ESCAPES.sub("", b"".join(chunks).decode())
    for line in long_lines:
        assert re.search("[\r\n]" + re.escape(line) + "\r\n", written), line
    # On screen: the terminal wrapped it, row after row, at its width.
    for line in long_lines:
        rows = [line[i : i + width].rstrip() for i in range(0, len(line), width)]
        at = lines.index(rows[0])
        assert lines[at : at + len(rows)] == rows
    # Plain output: the line as the model wrote it, on one line.
    plain, _ = render(messages, width, plain=True)
    for line in long_lines:
        assert line in plain
    assert soft_wrapped(plain, width) == render(messages, width, height=24, color=False)[0]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_coding_answer_streamed_equals_one_shot(width: int) -> None:
    messages = coding_answer()
    lines, chunks = render(messages, width, height=24)
    check_output(chunks, height=24)
    assert lines == one_shot(messages, width, height=24)


def test_python_is_highlighted_in_several_colours() -> None:
    messages = coding_answer()
    raw = b"".join(render(messages, 80, height=24)[1])
    python = raw[raw.index(b"```python") : raw.index(b"```bash")]
    colours = set(SGR_COLOUR.findall(python))
    assert len(colours) >= 4, colours
    assert all(code.startswith(b"38;5;") for code in colours)
    # COLORTERM=truecolor: the same colours as 24-bit RGB.
    true = b"".join(render(messages, 80, height=24, truecolor=True)[1])
    assert {c for c in SGR_COLOUR.findall(true) if c.startswith(b"38;2;")}
    # NO_COLOR: not one colour, and the same text.
    mono = b"".join(render(messages, 80, height=24, color=False)[1])
    assert not SGR_COLOUR.search(mono) and not re.search(rb"\x1b\[[0-9;]*3[1-7]m", mono)


def test_lexer_state_is_carried_from_line_to_line() -> None:
    code = 'x = """first line\ndef not_a_function(): class\nend"""\ny = 1\n'
    messages = text_stream(f"```python\n{code}```\n")
    raw = b"".join(render(messages, 80)[1]).decode()
    middle = next(row for row in raw.split("\r\n") if "not_a_function" in row)
    # The whole line is inside the string: one colour, not a keyword's.
    assert len(set(re.findall(r"38;5;\d+", middle))) == 1, repr(middle)
    after = next(row for row in raw.split("\r\n") if row.endswith("1\x1b[0m") and "y" in row)
    assert "38;5;" in after


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", 'def f(x):\n    y = """A string\n    on two."""\n    return f"{x!r}" # c\n'),
        ("python", "s = f'''{a}\n  {b!r:>10}'''\nclass C:\n    pass\n"),
        ("bash", 'for f in *; do\n  echo "$f is\n  here"\ndone\n'),
        ("javascript", "const s = `a\n${b} c`;\nlet y = 2; // done\n"),
        # An ExtendedRegexLexer: the state is carried in its LexerContext.
        ("ruby", 's = "a\n#{b} c"\nputs s # done\n'),
    ],
)
def test_line_by_line_lexing_matches_lexing_the_whole_text(language: str, code: str) -> None:
    """Carrying the state from line to line gives Pygments' own result on the whole block
    (for constructs a lexer follows with states; one that a single regex matches
    across lines, like C's ``/* … */``, is seen a line at a time)."""
    lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    whole = [(t, v) for _, t, v in lexer.get_tokens_unprocessed(code)]
    stack: tuple[str, ...] = ("root",)
    pieces = []
    for line in code.split("\n")[:-1]:
        tokens, stack = lex_line(lexer, line, stack)
        pieces.extend(tokens)

    def per_char(tokens: list[tuple[Any, str]]) -> list[Any]:
        # Whitespace is whitespace, whether the lexer calls it Text or Whitespace.
        return [Text if t in Text else t for t, v in tokens for ch in v if ch != "\n"]

    assert "".join(v for _, v in pieces) == code
    assert per_char(pieces) == per_char(whole)


def test_nothing_in_code_reaches_the_terminal_raw() -> None:
    code = (
        'print("\x1b[2J\x1b]0;pwned\x07")  # \u202egnp.exe \x9b31m\n'
        '\tx = "\x1b]52;c;AAAA\x1b\\\\"\n'
    )
    messages = text_stream(f"```python\n{code}```\n")
    for options in ({}, {"color": False}, {"truecolor": True}):
        lines, chunks = render(messages, 80, **options)
        check_output(chunks)
        joined = "\n".join(lines)
        assert "^[[2J" in joined and "^[]0;pwned^G" in joined and "<U+202E>" in joined
        assert "<U+009B>" in joined and "^[]52;c;AAAA^[" in joined
    plain = b"".join(render(messages, 80, plain=True)[1])
    assert b"\x1b" not in plain and b"\x07" not in plain and "\u202e".encode() not in plain


def test_tool_call_json_lines_are_never_broken() -> None:
    url = "https://example.com/" + "a" * 90 + "?q=1"
    arguments = '{"url": "' + url + '", "ids": [1, 2, 3], "nested": {"k": "v"}}'
    messages = assemble(
        [
            [StreamInfo(model="m")],
            [ToolCallDelta("a", arguments[:40], call_id="call_1", name="fetch")],
            [ToolCallDelta("a", arguments[40:])],
            [ChoiceFinish(0, "tool_calls")],
            [StreamEnd()],
        ]
    )
    plain, _ = render(messages, 40, plain=True)
    assert f'  "url": "{url}",' in plain
    assert '  "ids": [1, 2, 3],' in plain
    lines, chunks = render(messages, 40)
    check_output(chunks)
    assert lines == soft_wrapped(plain, 40)


def test_prose_wraps_at_words_but_never_inside_a_long_token() -> None:
    url = "https://example.com/a/very/long/path/that/does/not/fit/" + "x" * 40
    text = f"Some words before {url} and words after it, wrapped as prose is.\n"
    plain, _ = render(text_stream(text), 40, plain=True)
    body = plain[1:-1]
    assert url in body
    assert all(len(line) <= 40 for line in body if url not in line)
    assert " ".join(" ".join(body).split()) == text.strip()


def test_a_long_line_of_code_costs_its_length_once() -> None:
    """The live tail shows the end of an unfinished long line; committing it writes it once."""
    line = "x = [" + ", ".join(str(n) for n in range(3000)) + "]"
    messages = text_stream(f"```python\n{line}\n```\n", seed=2)
    renderer = TerminalRenderer(80, 12, fps=0, now=NOW)
    sizes = [len(renderer.feed(message, NOW)) for message in messages]
    sizes.append(len(renderer.close()))
    # Every repaint of the tail is bounded by the tail's size, not the line's
    # (~15 kB): only the update that commits the line writes it.
    big = [size for size in sizes if size > 5000]
    assert len(big) == 1 and big[0] > len(line)
    assert line in b"".join(render(messages, 80, plain=True)[1]).decode()


def test_unknown_language_and_plain_fences_keep_the_code_as_is() -> None:
    text = "```nosuchlanguage\nsome code here\n```\n\n```\nmore code\n```\n"
    lines, chunks = render(text_stream(text), 80)
    check_output(chunks)
    assert "some code here" in lines and "more code" in lines
