"""GFM tables, laid out once their last row has arrived.

Cells are wrapped within their columns when the table is wider than the
terminal, at spaces only: a column is never narrower than its longest word,
so a URL or an identifier in a cell is never cut. A table that cannot fit
that way (too many columns, too long words) is shown as its source lines.
``<br>`` in a cell is a line break within the cell.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from warpd.render.inline import InlineMarkdown
from warpd.render.style import BOLD, DIM, GREY, Row, Style
from warpd.render.wrap import Layout, Wrapper, char_width, row_width

_DELIMITER_CELL = re.compile(r":?-+:?")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_MIN_COLUMN = 3

Cell = list[tuple[str, Style]]


def split_cells(line: str) -> list[str]:
    """The cells of a table row's source line (``|`` separated, outer pipes optional)."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)]


def is_table(lines: list[str]) -> bool:
    """Whether ``lines`` are a table: a header row, then a delimiter row (``---``, ``:-:``)."""
    return len(lines) >= 2 and all(
        _DELIMITER_CELL.fullmatch(cell) for cell in split_cells(lines[1])
    )


def _alignment(delimiter: str) -> str:
    """``l``, ``c`` or ``r`` from a delimiter row cell (``---``, ``:-:``, ``--:``)."""
    if delimiter.endswith(":"):
        return "c" if delimiter.startswith(":") else "r"
    return "l"


def _appender(chars: Cell) -> Callable[[str, Style], None]:
    return lambda ch, style: chars.append((ch, style))


def _cell_lines(text: str, base: Style, *, bold: bool, marks: bool) -> list[Cell]:
    """A cell's styled characters, one list per line (``<br>`` breaks lines)."""
    lines: list[Cell] = []
    style = base.plus(BOLD) if bold else base
    for part in _BREAK.split(text.replace("\\|", "|")):
        chars: Cell = []
        inline = InlineMarkdown(_appender(chars), style, marks=marks)
        for ch in part.strip():
            inline.feed_untrusted(ch)
        inline.end()
        lines.append(chars)
    return lines


def _width(chars: Cell) -> int:
    return sum(char_width(ch) for ch, _ in chars)


def _longest_word(lines: list[Cell]) -> int:
    longest = 0
    for chars in lines:
        word = 0
        for ch, _ in chars:
            word = 0 if ch == " " else word + char_width(ch)
            longest = max(longest, word)
    return longest


def _wrap_cell(lines: list[Cell], width: int) -> list[Row]:
    rows: list[Row] = []
    for chars in lines:
        wrapper = Wrapper(Layout(width), rows.append)
        for ch, style in chars:
            wrapper.push(ch, style)
        wrapper.end()
    return rows


def table_rows(lines: list[str], width: int, base: Style, *, marks: bool) -> list[Row] | None:
    """The rows showing the table ``lines`` (see :func:`is_table`) in ``width`` cells,
    or ``None`` if it cannot fit."""
    rows = [split_cells(line) for line in lines]
    aligns = [_alignment(cell) for cell in rows[1]]
    body = [rows[0], *rows[2:]]
    ncols = max(len(r) for r in body)
    aligns += ["l"] * (ncols - len(aligns))
    cells = [
        [
            _cell_lines(r[i] if i < len(r) else "", base, bold=n == 0, marks=marks)
            for i in range(ncols)
        ]
        for n, r in enumerate(body)
    ]
    widths = [
        max(_MIN_COLUMN, *(_width(line) for row in cells for line in row[i]))
        for i in range(ncols)
    ]
    floors = [max(_MIN_COLUMN, *(_longest_word(row[i]) for row in cells)) for i in range(ncols)]
    budget = width - 3 * (ncols - 1)
    if sum(floors) > budget:
        return None
    while sum(widths) > budget:
        # Take a cell from the widest column that can still give one.
        widest = max(
            (i for i in range(ncols) if widths[i] > floors[i]), key=widths.__getitem__
        )
        widths[widest] -= 1
    sep = base.plus(DIM, GREY)
    out: list[Row] = []
    for n, row in enumerate(cells):
        wrapped = [_wrap_cell(lines_, widths[i]) for i, lines_ in enumerate(row)]
        height = max(len(c) for c in wrapped)
        for k in range(height):
            line: Row = []
            for i, cell in enumerate(wrapped):
                if i:
                    line.append((" │ ", sep))
                part = cell[k] if k < len(cell) else []
                pad = widths[i] - row_width(part)
                left = pad if aligns[i] == "r" else pad // 2 if aligns[i] == "c" else 0
                if left:
                    line.append((" " * left, base))
                line.extend(part)
                if pad - left and i < ncols - 1:
                    line.append((" " * (pad - left), base))
            out.append(line)
        if n == 0:
            out.append([("─┼─".join("─" * w for w in widths), sep)])
    return out
