"""Light markdown for streamed text, rendered row by row as it arrives.

The text is processed one character at a time by a deterministic machine, so
the rows it emits do not depend on how the text was split into deltas: a
stream rendered from a thousand fragments commits exactly the rows a one-shot
render of its whole text does. To keep that true with O(1) work per
character, the rules are those a left-to-right reader can apply with a small
lookahead, a little simpler than CommonMark:

- block structure is decided per source line from its first few characters:
  ATX headings, ``-``/``*``/``+`` and ``1.`` list items (indentation kept),
  ``>`` quotes, thematic breaks, fenced code (its fence lines shown, dimmed),
  ``|`` table rows; anything else is a paragraph line. Soft line breaks are
  kept as line breaks.
- inline: ``*``/``_`` emphasis, ``**``/``__`` strong, ``~~`` strike and
  backtick code spans use CommonMark's flanking rules to decide whether a
  delimiter opens or closes, but an opener needs no closer (the style runs
  to the closer or the end of the line); ``[text](url)`` becomes an OSC 8
  hyperlink when the target is a plain http(s)/mailto URL; ``\\`` escapes.
- tables are held until their last row has arrived, then aligned (cells
  wrapped within their column when the table is wider than the terminal).

Every character that a terminal would act on is shown in its visible form.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from warpd.render.style import (
    BOLD,
    CYAN,
    DIM,
    GREY,
    ITALIC,
    MAGENTA,
    REVERSE,
    STRIKE,
    UNDERLINE,
    YELLOW,
    Row,
    Style,
)
from warpd.render.untrusted import safe_link_target, visible_form
from warpd.render.wrap import Layout, Wrapper, text_width

# A line whose kind is still unknown after this many characters is a paragraph.
_DECIDE_LIMIT = 200
# A ``[`` that has not become a link after this many characters is literal.
_LINK_LIMIT = 500
_TAB = "    "

_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _is_punct(ch: str) -> bool:
    if ch in _ASCII_PUNCT:
        return True
    return ch > "\x7f" and unicodedata.category(ch)[0] in "PS"


class InlineMarkdown:
    """Inline markup of one line: characters in, styled characters out to ``out``.

    Call :meth:`feed` per character (never a newline; pass a character that
    must be shown visibly to :meth:`feed_visible` with its visible form) and
    :meth:`end` at the end of the line. :meth:`held` gives the characters
    not yet decided (a delimiter run, a link in progress) for previews.
    """

    def __init__(self, out: Callable[[str, Style], None], base: Style) -> None:
        self._out = out
        self._base = base
        self._bold = False
        self._italic = False
        self._strike = False
        self._code = 0
        self._run_char = ""
        self._run_len = 0
        self._prev = " "
        self._escape = False
        self._link: list[str] | None = None
        self._link_close = -1

    def _style(self) -> Style:
        attrs = (
            (BOLD if self._bold else 0)
            | (ITALIC if self._italic else 0)
            | (STRIKE if self._strike else 0)
        )
        return self._base.plus(attrs, YELLOW if self._code else None)

    def _emit(self, ch: str) -> None:
        self._out(ch, self._style())
        self._prev = ch

    def feed(self, ch: str) -> None:
        """Add one (safe) character of the line."""
        if self._link is not None:
            self._link.append(ch)
            self._grow_link()
            return
        if self._escape:
            self._escape = False
            if ch in _ASCII_PUNCT:
                self._emit(ch)
                return
            self._emit("\\")
        if self._run_len:
            if ch == self._run_char:
                self._run_len += 1
                return
            self._resolve_run(ch)
        if self._code:
            if ch == "`":
                self._run_char, self._run_len = ch, 1
            else:
                self._emit(ch)
            return
        if ch in "*_~`":
            self._run_char, self._run_len = ch, 1
        elif ch == "\\":
            self._escape = True
        elif ch == "[":
            self._link = []
            self._link_close = -1
        else:
            self._emit(ch)

    def feed_visible(self, form: str) -> None:
        """Add a character that must be shown as ``form`` (a neutralised control)."""
        self._settle("x")
        style = self._style().plus(REVERSE)
        for ch in form:
            self._out(ch, style)
        self._prev = "x"

    def end(self) -> None:
        """End the line: undecided characters become literal, styles reset."""
        self._settle(None)
        self._bold = self._italic = self._strike = False
        self._code = 0
        self._prev = " "

    def held(self) -> list[tuple[str, Style]]:
        """The characters not yet decided, as they would show if the line ended now."""
        style = self._style()
        held: list[tuple[str, Style]] = []
        if self._escape:
            held.append(("\\", style))
        if self._run_len:
            held.extend((self._run_char, style) for _ in range(self._run_len))
        if self._link is not None:
            held.append(("[", style))
            held.extend((ch, style) for ch in self._link)
        return held

    def _settle(self, next_char: str | None) -> None:
        while True:
            if self._link is not None:
                self._fail_link()
            elif self._escape:
                self._escape = False
                self._emit("\\")
            elif self._run_len:
                self._resolve_run(next_char)
            else:
                return

    def _resolve_run(self, nxt: str | None) -> None:
        c, n = self._run_char, self._run_len
        self._run_len = 0
        if c == "`":
            if not self._code:
                self._code = n
            elif self._code == n:
                self._code = 0
            else:
                for _ in range(n):
                    self._emit(c)
                return
            self._prev = c
            return
        prev = self._prev
        ws_next = nxt is None or nxt.isspace()
        ws_prev = prev.isspace()
        p_next = nxt is not None and _is_punct(nxt)
        p_prev = _is_punct(prev)
        left = not ws_next and (not p_next or ws_prev or p_prev)
        right = not ws_prev and (not p_prev or ws_next or p_next)
        if c == "_":
            can_open = left and (not right or p_prev)
            can_close = right and (not left or p_next)
        else:
            can_open, can_close = left, right
        toggled = False
        if c == "~":
            if n == 2:
                if self._strike and can_close:
                    self._strike, toggled = False, True
                elif not self._strike and can_open:
                    self._strike, toggled = True, True
        elif n == 1:
            if self._italic and can_close:
                self._italic, toggled = False, True
            elif not self._italic and can_open:
                self._italic, toggled = True, True
        elif n == 2:
            if self._bold and can_close:
                self._bold, toggled = False, True
            elif not self._bold and can_open:
                self._bold, toggled = True, True
        elif n == 3:
            if self._bold and self._italic and can_close:
                self._bold = self._italic = False
                toggled = True
            elif not self._bold and not self._italic and can_open:
                self._bold = self._italic = True
                toggled = True
        if toggled:
            self._prev = c
            return
        for _ in range(n):
            self._emit(c)

    def _grow_link(self) -> None:
        buf = self._link
        assert buf is not None
        ch = buf[-1]
        if len(buf) > _LINK_LIMIT:
            self._fail_link()
        elif self._link_close < 0:
            if ch == "]":
                self._link_close = len(buf) - 1
            elif ch == "[":
                self._fail_link()
        elif len(buf) == self._link_close + 2:
            if ch != "(":
                self._fail_link()
        elif ch == ")":
            text = buf[: self._link_close]
            target = safe_link_target("".join(buf[self._link_close + 2 : -1]))
            if target is None or not text:
                self._fail_link()
                return
            self._link = None
            style = self._style().plus(UNDERLINE)._replace(link=target)
            for t in text:
                self._out(t, style)
            self._prev = ")"
        elif ch.isspace():
            self._fail_link()

    def _fail_link(self) -> None:
        buf = self._link or []
        self._link = None
        self._emit("[")
        for ch in buf:
            self.feed(ch)


def _split_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)]


_DELIMITER_CELL = re.compile(r":?-+:?")


def _alignment(delimiter: str) -> str:
    """``l``, ``c`` or ``r`` from a delimiter row cell (``---``, ``:-:``, ``--:``)."""
    if delimiter.endswith(":"):
        return "c" if delimiter.startswith(":") else "r"
    return "l"


RowSink = Callable[[Row], None]


class MarkdownWriter:
    """One block's text as rows of light markdown (see the module docstring).

    Call :meth:`feed` with each piece of text as it arrives and :meth:`finish`
    once when the block is complete; finished rows go to ``emit`` (an empty
    row is a blank line, which the caller may collapse). :meth:`preview`
    gives the rows of what is not finished yet (the current line, a held
    table), for the live tail.
    """

    def __init__(self, layout: Layout, emit: RowSink, *, base: Style) -> None:
        self._layout = layout
        self._emit = emit
        self._base = base
        self._escape = base.plus(REVERSE)
        self._line: list[str] = []
        self._kind: str | None = None
        self._wrapper: Wrapper | None = None
        self._inline: InlineMarkdown | None = None
        self._fence = ""
        self._table: list[str] = []
        self._table_line: list[str] = []
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
        if kind == "table":
            self._table_line.append(ch)
        elif kind == "code":
            wrapper = self._wrapper
            assert wrapper is not None
            style = self._base.plus(0, CYAN)
            if ch == "\t":
                for t in _TAB:
                    wrapper.push(t, style)
                return
            form = visible_form(ch)
            if form is None:
                wrapper.push(ch, style)
            else:
                for f in form:
                    wrapper.push(f, self._escape)
        elif kind == "inline":
            inline = self._inline
            assert inline is not None
            if ch == "\t":
                inline.feed(" ")
                return
            form = visible_form(ch)
            if form is None:
                inline.feed(ch)
            else:
                inline.feed_visible(form)
        # kind "done": the line was consumed whole when it was decided.

    def _newline(self) -> None:
        if self._kind is None:
            self._decide(final=True)
        if self._kind == "inline":
            assert self._inline is not None and self._wrapper is not None
            self._inline.end()
            self._wrapper.end()
        elif self._kind == "code":
            assert self._wrapper is not None
            self._wrapper.end()
        elif self._kind == "table":
            self._table.append("".join(self._table_line))
            self._table_line = []
        self._kind = None
        self._line = []
        self._wrapper = None
        self._inline = None

    # -- block structure --------------------------------------------------

    def _decide(self, *, final: bool) -> None:
        line = "".join(self._line)
        if not final and len(line) > _DECIDE_LIMIT:
            # Too long to be anything but text: decide now.
            if self._fence:
                self._start_code(line)
            else:
                self._flush_table()
                self._start_inline(line, 0, [], None)
            return
        if self._fence:
            self._decide_in_fence(line, final)
            return
        stripped = line.lstrip(" \t")
        indent = len(line[: len(line) - len(stripped)].replace("\t", _TAB))
        if not stripped:
            if final:
                self._flush_table()
                self._kind = "done"
                self._emit([])
            return
        c = stripped[0]
        if c == "|":
            self._kind = "table"
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
                self._start_inline(stripped, indent, [], None)
                return
            self._fence = fence.group()
            self._fence_row(line)
            return
        if c == "#":
            heading = re.match(r"(#{1,6})( |$)" if final else r"(#{1,6}) ", stripped)
            if heading is None and not final and len(stripped) <= 6 and set(stripped) == {"#"}:
                return
            if heading is not None:
                level = len(heading.group(1))
                fg = MAGENTA if level <= 2 else None
                attrs = BOLD | (UNDERLINE if level == 1 else 0)
                prefix = [(heading.group(1) + " ", self._base.plus(DIM, fg))]
                self._start_inline(
                    stripped[heading.end() :], 0, prefix, self._base.plus(attrs, fg), rest=[]
                )
                return
        elif c == ">":
            if not final and len(stripped) == 1:
                return
            content = stripped[1:]
            if content.startswith(" "):
                content = content[1:]
            bar = [("│ ", self._base.plus(DIM, GREY))]
            self._start_inline(content, indent, bar, self._base.plus(ITALIC), rest=bar)
            return
        elif c in "-*_+":
            if set(stripped) <= {c, " "}:
                if not final:
                    return
                if c != "+" and stripped.count(c) >= 3:
                    self._kind = "done"
                    rule = "─" * max(1, min(self._layout.width, 80) - indent)
                    self._emit([(" " * indent + rule, self._base.plus(DIM, GREY))])
                    return
            if c in "-*+" and stripped[1:2] in (" ", ""):
                self._start_item("•", stripped[2:], indent)
                return
        elif c.isdigit():
            item = re.match(r"(\d{1,9}[.)])( |$)" if final else r"(\d{1,9}[.)]) ", stripped)
            if item is not None:
                self._start_item(item.group(1), stripped[item.end() :], indent)
                return
            if not final and re.fullmatch(r"\d{1,9}[.)]?", stripped):
                return
        self._start_inline(stripped, indent, [], None)

    def _decide_in_fence(self, line: str, final: bool) -> None:
        fence_char = self._fence[0]
        candidate = re.fullmatch(" {0,3}" + re.escape(fence_char) + "* *", line)
        if candidate is not None and not final:
            return
        if candidate is not None and line.strip().startswith(self._fence):
            self._fence_row(line)
            self._fence = ""
            return
        self._start_code(line)

    def _fence_row(self, line: str) -> None:
        self._kind = "done"
        wrapper = Wrapper(self._layout, self._emit, hard=True)
        style = self._base.plus(DIM, GREY)
        for ch in line:
            form = visible_form(ch) if ch != "\t" else " "
            for f in form or ch:
                wrapper.push(f, self._escape if form and ch != "\t" else style)
        wrapper.end()

    def _start_code(self, line: str) -> None:
        self._kind = "code"
        self._wrapper = Wrapper(self._layout, self._code_row, hard=True)
        for ch in line:
            self._dispatch(ch)

    def _code_row(self, row: Row) -> None:
        # A blank line inside code is kept as it is, never collapsed.
        self._emit(row or [("", self._base)])

    def _start_item(self, bullet: str, content: str, indent: int) -> None:
        indent = min(indent, self._layout.width // 3)
        style = self._base.plus(BOLD, CYAN)
        first: Row = [(" " * indent, self._base), (bullet, style), (" ", self._base)]
        rest: Row = [(" " * (indent + text_width(bullet) + 1), self._base)]
        self._start_inline(content, 0, first, None, rest=rest)

    def _start_inline(
        self,
        content: str,
        indent: int,
        prefix: Row,
        base: Style | None,
        *,
        rest: Row | None = None,
    ) -> None:
        indent = min(indent, self._layout.width // 3)
        if indent:
            prefix = [(" " * indent, self._base), *prefix]
        if rest is None:
            rest = prefix
        elif indent:
            rest = [(" " * indent, self._base), *rest]
        self._kind = "inline"
        wrapper = Wrapper(self._layout, self._emit, first_prefix=prefix, rest_prefix=rest)
        self._wrapper = wrapper
        self._inline = InlineMarkdown(wrapper.push, base or self._base)
        for ch in content:
            self._dispatch(ch)

    # -- tables -----------------------------------------------------------

    def _flush_table(self) -> None:
        if not self._table:
            return
        lines, self._table = self._table, []
        rows = [_split_cells(line) for line in lines]
        if len(rows) < 2 or not all(_DELIMITER_CELL.fullmatch(c) for c in rows[1]):
            for line in lines:
                self._start_inline(line.strip(), 0, [], None)
                self._newline()
            return
        aligns = [_alignment(cell) for cell in rows[1]]
        body = [rows[0], *rows[2:]]
        ncols = max(len(r) for r in body)
        aligns += ["l"] * (ncols - len(aligns))
        styled = [
            [self._cell_chars(r[i] if i < len(r) else "", bold=n == 0) for i in range(ncols)]
            for n, r in enumerate(body)
        ]
        widths = [
            max(3, *(sum(_w(ch) for ch, _ in row[i]) for row in styled)) for i in range(ncols)
        ]
        budget = self._layout.width - 3 * (ncols - 1)
        if budget < 3 * ncols:
            # Too many columns for this terminal: show the rows as they came.
            for line in lines:
                self._start_code(line.strip())
                self._newline()
            return
        while sum(widths) > budget:
            widest = max(range(ncols), key=widths.__getitem__)
            widths[widest] -= 1
        sep_style = self._base.plus(DIM, GREY)
        for n, row in enumerate(styled):
            cells = [self._wrap_cell(chars, widths[i]) for i, chars in enumerate(row)]
            height = max(len(c) for c in cells)
            for k in range(height):
                out: Row = []
                for i, cell in enumerate(cells):
                    if i:
                        out.append((" │ ", sep_style))
                    part = cell[k] if k < len(cell) else []
                    pad = widths[i] - sum(text_width(t) for t, _ in part)
                    left = pad if aligns[i] == "r" else pad // 2 if aligns[i] == "c" else 0
                    if left:
                        out.append((" " * left, self._base))
                    out.extend(part)
                    if pad - left and i < ncols - 1:
                        out.append((" " * (pad - left), self._base))
                self._emit(out)
            if n == 0:
                self._emit([("─┼─".join("─" * w for w in widths), sep_style)])

    def _cell_chars(self, text: str, *, bold: bool) -> list[tuple[str, Style]]:
        chars: list[tuple[str, Style]] = []
        base = self._base.plus(BOLD) if bold else self._base
        inline = InlineMarkdown(lambda ch, st: chars.append((ch, st)), base)
        for ch in text.replace("\\|", "|"):
            form = visible_form(ch) if ch != "\t" else None
            if form is None:
                inline.feed(" " if ch == "\t" else ch)
            else:
                inline.feed_visible(form)
        inline.end()
        return chars

    @staticmethod
    def _wrap_cell(chars: list[tuple[str, Style]], width: int) -> list[Row]:
        rows: list[Row] = []
        wrapper = Wrapper(Layout(width), rows.append)
        for ch, style in chars:
            wrapper.push(ch, style)
        wrapper.end()
        return rows

    # -- preview ----------------------------------------------------------

    def preview(self, limit: int) -> list[Row]:
        """Up to ``limit`` rows showing what is not finished yet (changes nothing)."""
        rows: list[Row] = []
        raw = self._base.plus(DIM)
        for line in self._table[-limit:]:
            rows.extend(self._raw_rows(line[: self._layout.width], raw)[:1])
        if self._kind is None and self._line:
            rows.extend(self._raw_rows("".join(self._line), self._base))
        elif self._kind == "table":
            current = self._table_line[: self._layout.width]
            rows.extend(self._raw_rows("".join(current), raw)[:1])
        elif self._wrapper is not None:
            held = self._inline.held() if self._inline is not None else []
            rows.extend(self._wrapper.preview(held))
        return rows[-limit:] if limit > 0 else []

    def _raw_rows(self, text: str, style: Style) -> list[Row]:
        rows: list[Row] = []
        wrapper = Wrapper(self._layout, rows.append, hard=True)
        for ch in text:
            form = visible_form(ch)
            for f in form or ch:
                wrapper.push(f, self._escape if form else style)
        wrapper.end()
        return rows


def _w(ch: str) -> int:
    return text_width(ch)
