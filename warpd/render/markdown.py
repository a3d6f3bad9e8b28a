"""Light markdown for streamed text, rendered row by row as it arrives.

The text is processed one character at a time by a deterministic machine, so
the rows it emits do not depend on how the text was split into deltas: a
stream rendered from a thousand fragments commits exactly the rows a one-shot
render of its whole text does. To keep that true with O(1) work per
character, the rules are those a left-to-right reader can apply with a small
lookahead, a little simpler than CommonMark:

- block structure is decided per source line from its first few characters:
  ``>`` quote markers first (any depth; what follows them is decided like
  any line, so quotes hold lists, headings, code and quotes), then ATX
  headings, ``-``/``*``/``+`` and ``1.`` list items (indentation kept),
  thematic breaks, fenced code (its fence lines shown, dimmed), ``|`` table
  rows; anything else is a paragraph line. Soft line breaks are kept as
  line breaks.
- inline markup: :mod:`warpd.render.inline`; tables: :mod:`warpd.render.tables`;
  code: :mod:`warpd.render.code`, highlighted for the fence's language.
- prose is word-wrapped; a line of code is never broken: it is one row,
  which the terminal soft-wraps, so what is copied from the scrollback is
  the line as written.

Every character that a terminal would act on is shown in its visible form.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from warpd.render.code import DEFAULT_THEME, MAX_LEXED_LINE, CodeHighlighter
from warpd.render.inline import InlineMarkdown
from warpd.render.style import (
    BOLD,
    CYAN,
    DIM,
    GREY,
    ITALIC,
    MAGENTA,
    REVERSE,
    UNDERLINE,
    Row,
    Style,
)
from warpd.render.tables import is_table, table_rows
from warpd.render.untrusted import visible_form
from warpd.render.wrap import Layout, Wrapper, row_width, text_width

# A line whose kind is still unknown after this many characters is a paragraph.
_DECIDE_LIMIT = 200
_TAB = "    "
_QUOTE_MARKER = re.compile(r" {0,3}> ?")

RowSink = Callable[[Row], None]


class MarkdownWriter:
    """One block's text as rows of light markdown (see the module docstring).

    Call :meth:`feed` with each piece of text as it arrives and :meth:`finish`
    once when the block is complete; finished rows go to ``emit`` (an empty
    row is a blank line, which the caller may collapse). :meth:`preview`
    gives the rows of what is not finished yet (the current line, a held
    table), for the live tail.

    ``colored``: colours will be shown (code is highlighted; without them,
    code spans keep their backticks). ``theme``: the Pygments style of code.
    """

    def __init__(
        self,
        layout: Layout,
        emit: RowSink,
        *,
        base: Style,
        colored: bool = True,
        theme: str = DEFAULT_THEME,
    ) -> None:
        self._layout = layout
        self._emit = emit
        self._base = base
        self._colored = colored
        self._theme = theme
        self._escape = base.plus(REVERSE)
        self._bar = base.plus(DIM, GREY)
        self._line: list[str] = []
        self._kind: str | None = None
        self._wrapper: Wrapper | None = None
        self._inline: InlineMarkdown | None = None
        # The fenced block being read: its fence, quote depth, indent, highlighter.
        self._fence = ""
        self._fence_depth = 0
        self._fence_indent = 0
        self._code: CodeHighlighter | None = None
        self._code_line: list[str] = []
        self._prefix: Row = []
        self._table: list[str] = []
        self._table_line: list[str] = []
        self._table_depth = 0
        self._pending_cr = False

    # -- input ------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Add text (any fragment; newlines end lines)."""
        for ch in text:
            if self._pending_cr:
                self._pending_cr = False
                if ch == "\n":
                    self._newline()
                    continue
                self._char("\r")
            if ch == "\n":
                self._newline()
            elif ch == "\r":
                # CRLF is a newline; a lone CR is shown (it could fake a prompt).
                self._pending_cr = True
            else:
                self._char(ch)

    def finish(self) -> None:
        """The block is complete: finish the last line and any held table."""
        if self._pending_cr:
            self._pending_cr = False
            self._char("\r")
        if self._kind is not None or self._line:
            self._newline()
        self._flush_table()

    def _char(self, ch: str) -> None:
        if self._kind is None:
            self._line.append(ch)
            self._decide(final=False)
        else:
            self._dispatch(ch)

    def _dispatch(self, ch: str) -> None:
        kind = self._kind
        if kind == "code":
            self._code_line.append(ch)
        elif kind == "table":
            self._table_line.append(ch)
        elif kind == "inline":
            assert self._inline is not None
            self._inline.feed_untrusted(ch)
        # kind "done": the line was consumed whole when it was decided.

    def _newline(self) -> None:
        if self._kind is None:
            self._decide(final=True)
        if self._kind == "inline":
            assert self._inline is not None and self._wrapper is not None
            self._inline.end()
            self._wrapper.end()
        elif self._kind == "code":
            assert self._code is not None
            row = self._prefix + self._code.line("".join(self._code_line))
            # A blank line inside code is kept as it is, never collapsed.
            self._emit(row or [("", self._base)])
            self._code_line = []
        elif self._kind == "table":
            self._table.append("".join(self._table_line))
            self._table_line = []
        self._kind = None
        self._line = []
        self._wrapper = None
        self._inline = None

    # -- block structure --------------------------------------------------

    def _bars(self, depth: int) -> Row:
        return [("│ " * depth, self._bar)] if depth else []

    def _decide(self, *, final: bool) -> None:
        line = "".join(self._line)
        long = not final and len(line) > _DECIDE_LIMIT
        if self._fence and self._decide_in_fence(line, final=final or long):
            return
        # Quote markers, then the line they hold.
        depth, at = 0, 0
        while (marker := _QUOTE_MARKER.match(line, at)) is not None:
            depth, at = depth + 1, marker.end()
        inner = line[at:]
        bars = self._bars(depth)
        if long:
            # Too long to be anything but text: decide now.
            self._flush_table()
            self._start_inline(inner.lstrip(" \t"), bars, depth)
            return
        stripped = inner.lstrip(" \t")
        indent = len(inner[: len(inner) - len(stripped)].replace("\t", _TAB))
        if not stripped:
            if not final:
                return
            self._flush_table()
            self._kind = "done"
            # An empty line of a quote keeps its bars; any other is a blank line.
            self._emit([("│ " * (depth - 1) + "│", self._bar)] if depth else [])
            return
        c = stripped[0]
        if c == "|":
            if self._table and depth != self._table_depth:
                self._flush_table()
            self._kind = "table"
            self._table_depth = depth
            self._table_line = list(stripped)
            return
        if not final and len(stripped) < 3 and c in "`~" and set(stripped) == {c}:
            return
        self._flush_table()
        if stripped.startswith(("```", "~~~")):
            if not final:
                return
            fence = re.match(r"`+|~+", stripped)
            assert fence is not None
            info = stripped[fence.end() :]
            if c == "`" and "`" in info:
                self._start_inline(stripped, self._indented(bars, indent), depth)
                return
            self._fence = fence.group()
            self._fence_depth = depth
            self._fence_indent = indent
            self._prefix = bars
            language = info.split()[0].strip("{}.") if info.split() else ""
            self._code = CodeHighlighter(
                language, self._base, self._escape, colored=self._colored, theme=self._theme
            )
            self._fence_row(inner)
            return
        if c == "#":
            heading = re.match(r"(#{1,6})( |$)" if final else r"(#{1,6}) ", stripped)
            if heading is None and not final and len(stripped) <= 6 and set(stripped) == {"#"}:
                return
            if heading is not None:
                level = len(heading.group(1))
                fg = MAGENTA if level <= 2 else None
                attrs = BOLD | (UNDERLINE if level == 1 else 0)
                prefix = [*bars, (heading.group(1) + " ", self._base.plus(DIM, fg))]
                self._start_inline(
                    stripped[heading.end() :], prefix, depth,
                    base=self._base.plus(attrs, fg), rest=bars,
                )
                return
        elif c in "-*_+":
            if set(stripped) <= {c, " "}:
                if not final:
                    return
                if c != "+" and stripped.count(c) >= 3:
                    self._kind = "done"
                    width = min(self._layout.width, 80) - indent - row_width(bars)
                    rule = (" " * indent + "─" * max(1, width), self._bar)
                    self._emit([*bars, rule])
                    return
            if c in "-*+" and stripped[1:2] in (" ", ""):
                self._start_item("•", stripped[2:], indent, bars, depth)
                return
        elif c.isdigit():
            item = re.match(r"(\d{1,9}[.)])( |$)" if final else r"(\d{1,9}[.)]) ", stripped)
            if item is not None:
                self._start_item(item.group(1), stripped[item.end() :], indent, bars, depth)
                return
            if not final and re.fullmatch(r"\d{1,9}[.)]?", stripped):
                return
        self._start_inline(stripped, self._indented(bars, indent), depth)

    def _indented(self, bars: Row, indent: int) -> Row:
        indent = min(indent, self._layout.width // 3)
        return [*bars, (" " * indent, self._base)] if indent else bars

    def _decide_in_fence(self, line: str, *, final: bool) -> bool:
        """Decide a line inside a fenced block; ``False`` if the block ended before it."""
        at = 0
        for _ in range(self._fence_depth):
            marker = _QUOTE_MARKER.match(line, at)
            if marker is None:
                if not final and _QUOTE_MARKER.match(line + ">", at) is not None:
                    return True  # Maybe a marker still: wait for more.
                # Fewer quote markers than the fence had: the quote, and the
                # code in it, ended.
                self._fence = ""
                return False
            at = marker.end()
        code = line[at:]
        fence_char = self._fence[0]
        # A closing fence may be indented up to 3 spaces more than the opening
        # one: a fence under a list item ("1. Run:" then "    ```") closes at
        # the item's indent, as CommonMark has it.
        probe = code.replace("\t", _TAB)
        limit = self._fence_indent + 3
        candidate = re.fullmatch(f" {{0,{limit}}}" + re.escape(fence_char) + "* *", probe)
        if candidate is not None and not final:
            return True
        if candidate is not None and code.strip().startswith(self._fence):
            self._fence_row(code)
            self._fence = ""
            return True
        self._kind = "code"
        self._code_line = list(code)
        return True

    def _fence_row(self, line: str) -> None:
        self._kind = "done"
        wrapper = Wrapper(self._layout, self._emit, first_prefix=self._prefix, nowrap=True)
        style = self._base.plus(DIM, GREY)
        for ch in line:
            form = visible_form(ch) if ch != "\t" else " "
            for f in form or ch:
                wrapper.push(f, self._escape if form and ch != "\t" else style)
        wrapper.end()

    def _start_item(self, bullet: str, content: str, indent: int, bars: Row, depth: int) -> None:
        indent = min(indent, self._layout.width // 3)
        style = self._base.plus(BOLD, CYAN)
        first: Row = [*bars, (" " * indent, self._base), (bullet, style), (" ", self._base)]
        rest: Row = [*bars, (" " * (indent + text_width(bullet) + 1), self._base)]
        self._start_inline(content, first, depth, rest=rest)

    def _start_inline(
        self,
        content: str,
        prefix: Row,
        depth: int,
        *,
        base: Style | None = None,
        rest: Row | None = None,
    ) -> None:
        """Read the rest of the line as inline markdown (quoted text in italics)."""
        if base is None:
            base = self._base.plus(ITALIC) if depth else self._base
        self._kind = "inline"
        rest = prefix if rest is None else rest
        wrapper = Wrapper(self._layout, self._emit, first_prefix=prefix, rest_prefix=rest)
        self._wrapper = wrapper
        self._inline = InlineMarkdown(wrapper.push, base, marks=not self._colored)
        for ch in content:
            self._dispatch(ch)

    # -- tables -----------------------------------------------------------

    def _flush_table(self) -> None:
        if not self._table:
            return
        lines, self._table = self._table, []
        # This runs while the line after the table is being decided: it must
        # leave that line's state alone.
        depth = self._table_depth
        bars = self._bars(depth)
        marks = not self._colored
        base = self._base.plus(ITALIC) if depth else self._base
        if not is_table(lines):
            for line in lines:
                wrapper = Wrapper(self._layout, self._emit, first_prefix=bars, rest_prefix=bars)
                inline = InlineMarkdown(wrapper.push, base, marks=marks)
                for ch in line.strip():
                    inline.feed_untrusted(ch)
                inline.end()
                wrapper.end()
            return
        rows = table_rows(lines, self._layout.width - row_width(bars), base, marks=marks)
        if rows is None:
            # Too wide for this terminal: the rows as they came, unbroken.
            raw = CodeHighlighter("", self._base, self._escape, colored=False, theme="")
            rows = [raw.line(line.strip()) for line in lines]
        for row in rows:
            self._emit([*bars, *row])

    # -- preview ----------------------------------------------------------

    def preview(self, limit: int) -> list[Row]:
        """Up to ``limit`` rows showing what is not finished yet (changes nothing).

        A row may be wider than the terminal (code): the caller cuts it.
        """
        if limit <= 0:
            return []
        rows: list[Row] = []
        raw = self._base.plus(DIM)
        cells = limit * self._layout.width
        for line in self._table[-limit:]:
            rows.append(self._raw_row(line[:cells], raw))
        if self._kind is None and self._line:
            rows.append(self._raw_row("".join(self._line[-cells:]), self._base))
        elif self._kind == "table":
            rows.append(self._raw_row("".join(self._table_line[-cells:]), raw))
        elif self._kind == "code":
            assert self._code is not None
            code = self._code_line
            # Lexed whole while it is short enough; otherwise only what shows.
            text = "".join(code if len(code) <= MAX_LEXED_LINE else code[-cells:])
            rows.append(self._prefix + self._code.preview(text))
        elif self._wrapper is not None:
            held = self._inline.held() if self._inline is not None else []
            rows.extend(self._wrapper.preview(held))
        return rows[-limit:]

    def _raw_row(self, text: str, style: Style) -> Row:
        row: Row = []
        wrapper = Wrapper(self._layout, row.extend, nowrap=True)
        for ch in text:
            form = visible_form(ch)
            for f in form or ch:
                wrapper.push(f, self._escape if form else style)
        wrapper.end()
        return row
