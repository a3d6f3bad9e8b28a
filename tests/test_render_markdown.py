"""Markdown the renderer shows: links you can see and follow, inline code in every
mode, quotes that hold markdown, line breaks in table cells."""

from __future__ import annotations

import re

import pytest

from tests.test_render import WIDTHS, check_output, one_shot, render, soft_wrapped, text_stream

OSC8 = re.compile(rb"\x1b\]8;;([^\x1b]*)\x1b\\")

LINKS = """\
See [the docs](https://docs.python.org/3/library/asyncio.html) for more.
A title: [asyncio](https://docs.python.org/3/ "Python docs") and [paren](https://en.wikipedia.org/wiki/Foo_(bar)).
An autolink <https://example.org/a?b=1> and a mail <someone@example.com>.
A bare URL https://example.net/path, then www.example.com.
Spoofed: [https://bank.example](https://evil.example/login) and [bank.example](https://evil.example).
Same: [https://example.org/](https://example.org) stays as it is.
Not web: [run](javascript:alert(1)) and [local](./README.md).
"""


def plain_text(text: str, width: int = 200) -> str:
    return "\n".join(render(text_stream(text), width, plain=True)[0])


def test_link_targets_are_shown_in_plain_output() -> None:
    shown = plain_text(LINKS)
    assert "See the docs (https://docs.python.org/3/library/asyncio.html) for more." in shown
    # Titles are dropped; parentheses in a target are kept.
    assert "A title: asyncio (https://docs.python.org/3/) and paren " in shown
    assert "(https://en.wikipedia.org/wiki/Foo_(bar))." in shown
    assert '"Python docs"' not in shown and "[asyncio]" not in shown
    # Autolinks and bare URLs are links whose text is their target: not repeated.
    assert "An autolink https://example.org/a?b=1 and a mail someone@example.com." in shown
    assert "A bare URL https://example.net/path, then www.example.com." in shown


def test_a_link_whose_text_looks_like_another_url_shows_its_real_target() -> None:
    shown = plain_text(LINKS)
    assert "https://bank.example (https://evil.example/login)" in shown
    assert "bank.example (https://evil.example)" in shown
    # A text that says where the link goes is not repeated.
    assert "Same: https://example.org/ stays" in shown


def test_links_are_hyperlinks_in_colour_and_keep_their_targets_visible() -> None:
    lines, chunks = render(text_stream(LINKS), 120)
    check_output(chunks)
    raw = b"".join(chunks)
    targets = set(OSC8.findall(raw)) - {b""}
    assert b"https://docs.python.org/3/library/asyncio.html" in targets
    assert b"https://en.wikipedia.org/wiki/Foo_(bar)" in targets
    assert b"mailto:someone@example.com" in targets
    assert b"http://www.example.com" in targets and b"https://example.net/path" in targets
    assert not any(t.startswith((b"javascript", b"./")) for t in targets)
    # The same words on screen, colour or not.
    mono = render(text_stream(LINKS), 120, color=False)[0]
    assert lines == mono
    assert "run (javascript:alert(1)) and local (./README.md)." in "\n".join(lines)
    # The link text is coloured (blue, underlined).
    assert b"\x1b[4;34mthe docs" in raw


def test_look_alike_letters_in_a_target_show_percent_encoded() -> None:
    shown = plain_text("[apple.com](https://\u0430pple.com/login)\n")
    assert "apple.com (https://%D0%B0pple.com/login)" in shown


def test_nothing_in_a_link_reaches_the_terminal_raw() -> None:
    text = (
        "[x](https://e.com/\x1b]8;;https://evil\x1b\\) [y\x1b[2J](https://e.com) "
        "<https://e.com/\x07> https://e.com/\u202eexe.txt [z](https://e.com/\u202e)\n"
    )
    for width in WIDTHS:
        lines, chunks = render(text_stream(text), width)
        check_output(chunks)
        raw = b"".join(chunks)
        assert all(b"evil" not in t and b"\xe2\x80\xae" not in t for t in OSC8.findall(raw))
        assert "<U+202E>" in "".join(lines) and "^[" in "".join(lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_links_streamed_equal_one_shot(width: int) -> None:
    for seed in range(3):
        messages = text_stream(LINKS, seed=seed)
        lines, chunks = render(messages, width)
        check_output(chunks)
        assert lines == one_shot(messages, width)


def test_inline_code_is_marked_in_every_mode() -> None:
    text = "Call `run()` then ``a`b`` and `unclosed\n"
    colour_lines, chunks = render(text_stream(text), 80)
    assert "Call run() then a`b and unclosed" in colour_lines
    assert b"\x1b[33mrun()" in b"".join(chunks)
    for options in ({"color": False}, {"plain": True}):
        lines = render(text_stream(text), 80, **options)[0]
        assert "Call `run()` then ``a`b`` and `unclosed" in lines, lines


QUOTE = """\
> A quote with a list:
> - first item
> - second **bold** item
>   1. nested number
> > a nested quote
> > > deeper still
>
> ## A heading in a quote
> ```python
> def quoted(): pass
> ```
> back to text
after the quote
"""


def test_blockquote_contents_are_markdown() -> None:
    lines = render(text_stream(QUOTE), 80, color=False)[0]
    body = lines[1:-1]
    assert body[:9] == [
        "│ A quote with a list:",
        "│ • first item",
        "│ • second bold item",
        "│   1. nested number",
        "│ │ a nested quote",
        "│ │ │ deeper still",
        "│",
        "│ ## A heading in a quote",
        "│ ```python",
    ]
    assert body[9:12] == ["│ def quoted(): pass", "│ ```", "│ back to text"]
    assert body[12] == "after the quote"
    assert not any("│ -" in line or "│ >" in line for line in body)


@pytest.mark.parametrize("width", WIDTHS)
def test_quotes_streamed_equal_one_shot(width: int) -> None:
    messages = text_stream(QUOTE * 2, seed=width)
    lines, chunks = render(messages, width)
    check_output(chunks)
    assert lines == one_shot(messages, width)
    plain = render(messages, width, plain=True)[0]
    assert soft_wrapped(plain, width) == render(messages, width, color=False)[0]


def test_a_quote_ends_its_code_block() -> None:
    lines = render(text_stream("> ```\n> code\nnot code any more\n"), 80, color=False)[0]
    assert "│ code" in lines and "not code any more" in lines


def test_br_in_a_table_cell_is_a_line_break() -> None:
    table = "| step | what |\n|---|---|\n| 1 | first line<br>second line<BR/>third |\n"
    lines = render(text_stream(table), 80, color=False)[0]
    rows = [line for line in lines if "│" in line]
    assert rows[1].startswith("1") and rows[1].endswith("first line")
    assert rows[2].endswith("second line") and rows[3].endswith("third")
    assert "<br>" not in "\n".join(lines).lower()


def test_a_table_never_cuts_a_long_word() -> None:
    url = "https://example.com/" + "x" * 30
    table = f"| name | link |\n|---|---|\n| docs | {url} |\n| other | short words here |\n"
    lines = render(text_stream(table), 60, color=False)[0]
    assert any(url in line for line in lines)
    # Too narrow for it: the source lines, unbroken.
    narrow = render(text_stream(table), 40, plain=True)[0]
    assert f"| docs | {url} |" in narrow


STEPS = """\
1. Install it:

    ```bash
    pip install watchdog
    ```

2. Run it:

    - with a nested list
        ```python
        import watchdog
        ```

Done, **that** is all.
"""


@pytest.mark.parametrize("width", WIDTHS)
def test_a_fence_under_a_list_item_closes_at_its_own_indent(width: int) -> None:
    """Fences indented under a list item (4 spaces and more) close where they were
    opened: what follows is markdown again, not code."""
    messages = text_stream(STEPS, seed=width)
    lines, chunks = render(messages, width, color=False)
    check_output(chunks)
    assert "2. Run it:" in lines and "Done, that is all." in lines
    assert "    pip install watchdog" in lines and "        import watchdog" in lines
    # A fence opened at the margin is not closed by one indented 4 spaces (CommonMark).
    margin = render(text_stream("```\ncode\n    ```\n**still code**\n```\n"), width, color=False)
    assert "**still code**" in margin[0]
    assert render(messages, width)[0] == one_shot(messages, width)
