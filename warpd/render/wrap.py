"""Display cells and incremental word wrapping.

Widths come from wcwidth, one character at a time, as VT emulators (and
pyte) place them: wide CJK and emoji count 2, combining marks 0. Emoji
sequences joined by ZWJ count as the sum of their parts, and VS16 counts 1:
terminals that draw them narrower leave a row short, never overflowing it,
which is what keeps the live tail's cursor arithmetic right. For the same
reason a character wcwidth calls zero-width but that is neither a
non-spacing mark nor a format character counts as it would take a cell of
its own: the spacing vowel signs of Devanagari, Bengali, Tamil and the other
Indic scripts (``ि``, ``ा``: category Mc), which glibc, tmux, xterm and VTE
draw one cell wide, and the Hangul filler U+3164, which they draw two.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from wcwidth import wcwidth

from warpd.render.style import PLAIN, Row, Segment, Style

_widths: dict[str, int] = {}
# What every terminal draws with no width of its own: non-spacing and enclosing
# marks, format characters (ZWJ, ZWSP, the BOM), a lone surrogate's category aside.
_ZERO_WIDTH_CATEGORIES = ("Mn", "Me", "Cf")


def char_width(ch: str) -> int:
    """Cells the (already neutralised) character ``ch`` takes."""
    if " " <= ch <= "~":
        return 1
    width = _widths.get(ch)
    if width is None:
        width = 1 if ch == "\ufe0f" else max(0, wcwidth(ch))
        if width == 0 and unicodedata.category(ch) not in _ZERO_WIDTH_CATEGORIES:
            # Counted generously: a terminal that draws it narrower leaves a row short.
            width = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        _widths[ch] = width
    return width


def text_width(text: str) -> int:
    """Cells ``text`` takes."""
    if text.isascii():
        # Neutralised text has no control characters: one cell each.
        return len(text)
    width = _text_widths.get(text)
    if width is None:
        width = sum(map(char_width, text))
        if len(_text_widths) > 4096:
            _text_widths.clear()
        _text_widths[text] = width
    return width


# Rows repeat the same short non-ASCII pieces (rules, separators, spinners).
_text_widths: dict[str, int] = {}
# What every terminal draws with no width of its own: non-spacing and enclosing
# marks, format characters (ZWJ, ZWSP, the BOM), a lone surrogate's category aside.
_ZERO_WIDTH_CATEGORIES = ("Mn", "Me", "Cf")


class Layout:
    """The terminal's width, shared by everything that wraps (changes on resize)."""

    __slots__ = ("width",)

    def __init__(self, width: int) -> None:
        self.width = width


Cell = tuple[str, Style, int]


def cells_to_row(cells: list[Cell]) -> Row:
    """Merge consecutive cells of one style into segments."""
    row: Row = []
    text: list[str] = []
    current: Style | None = None
    for ch, style, _ in cells:
        if style != current:
            if text and current is not None:
                row.append(("".join(text), current))
            text = []
            current = style
        text.append(ch)
    if text and current is not None:
        row.append(("".join(text), current))
    return row


class Wrapper:
    """Greedy wrapping of one source line into rows, fed a character at a time.

    Rows are final as soon as they are emitted: a row is emitted only once the
    text after it is known not to fit on it, so wrapping a prefix of a line
    emits the same rows as wrapping the whole line, and the work per character
    is O(1) amortised.

    A word wider than a row is never cut (a newline inside a URL or an
    identifier breaks it for whoever copies it): it gets a row of its own,
    which the terminal soft-wraps. ``split_long`` cuts such words instead
    (table cells, which must keep to their column). With ``nowrap`` the line
    is one row whatever its width, every character kept (code, JSON).

    Call :meth:`push` per character, :meth:`end` at the end of the line;
    emitted rows (prefixes included) go to ``emit``. :meth:`preview` shows the
    unfinished row without changing anything.
    """

    __slots__ = (
        "_layout",
        "_emit",
        "_first",
        "_first_w",
        "_rest",
        "_rest_w",
        "_nowrap",
        "_split_long",
        "_row",
        "_row_w",
        "_gap",
        "_gap_w",
        "_word",
        "_word_w",
        "_rows_out",
    )

    def __init__(
        self,
        layout: Layout,
        emit: Callable[[Row], None],
        *,
        first_prefix: Row | None = None,
        rest_prefix: Row | None = None,
        nowrap: bool = False,
        split_long: bool = False,
    ) -> None:
        self._layout = layout
        self._emit = emit
        self._first: Row = first_prefix or []
        self._rest: Row = rest_prefix if rest_prefix is not None else []
        self._first_w = sum(text_width(t) for t, _ in self._first)
        self._rest_w = sum(text_width(t) for t, _ in self._rest)
        self._nowrap = nowrap
        self._split_long = split_long
        self._row: list[Cell] = []
        self._row_w = 0
        self._gap: list[Cell] = []
        self._gap_w = 0
        self._word: list[Cell] = []
        self._word_w = 0
        self._rows_out = 0

    def _avail(self) -> int:
        prefix = self._first_w if self._rows_out == 0 else self._rest_w
        return max(2, self._layout.width - prefix)

    def push(self, ch: str, style: Style) -> None:
        """Add one character (neutralised, not a newline) to the line."""
        if self._nowrap:
            width = char_width(ch)
            self._word.append((ch, style, width))
            self._word_w += width
            return
        if ch == " ":
            if self._word:
                self._place_word()
            if not self._row:
                # Leading spaces of the line are kept; those a wrap leaves at
                # the start of a row are not.
                if self._rows_out == 0:
                    self._row.append((ch, style, 1))
                    self._row_w += 1
                    if self._row_w > self._avail():
                        self._flush_row()
                return
            self._gap.append((ch, style, 1))
            self._gap_w += 1
            if self._row_w + self._gap_w > self._avail():
                self._flush_row()
            return
        width = char_width(ch)
        if width == 2:
            # Wide characters (CJK, emoji) are words of their own: a line may
            # break before or after any of them, as CJK text is broken.
            if self._word:
                self._place_word()
            self._word.append((ch, style, width))
            self._word_w += width
            self._fit()
            self._place_word()
            return
        self._word.append((ch, style, width))
        self._word_w += width
        self._fit()

    def _fit(self) -> None:
        while True:
            avail = self._avail()
            if self._row and self._row_w + self._gap_w + self._word_w > avail:
                self._flush_row()
                continue
            if self._split_long and not self._row and self._word_w > avail:
                taken = 0
                split = 0
                for _, _, w in self._word:
                    if taken + w > avail and split:
                        break
                    taken += w
                    split += 1
                head, self._word = self._word[:split], self._word[split:]
                self._word_w -= taken
                self._row, self._row_w = head, taken
                self._flush_row()
                continue
            return

    def _place_word(self) -> None:
        if self._row:
            self._row.extend(self._gap)
            self._row_w += self._gap_w
        self._row.extend(self._word)
        self._row_w += self._word_w
        self._gap, self._gap_w = [], 0
        self._word, self._word_w = [], 0

    def _flush_row(self) -> None:
        cells = self._row
        self._row, self._row_w = [], 0
        self._gap, self._gap_w = [], 0
        prefix = self._first if self._rows_out == 0 else self._rest
        self._rows_out += 1
        self._emit(prefix + cells_to_row(cells))

    def end(self) -> None:
        """End the line: emit its last row (an empty line still makes one row)."""
        if self._word:
            self._place_word()
        if self._row or self._rows_out == 0:
            self._flush_row()
        self._rows_out = 0

    def preview(
        self, extra: list[tuple[str, Style]] | None = None, *, max_cells: int = 0
    ) -> list[Row]:
        """The rows the unfinished row (plus ``extra`` characters) would make now.

        With ``nowrap`` and ``max_cells``, only the last ``max_cells`` cells
        of the line are shown (after an ellipsis): the tail cannot show more,
        and a line of code can be long.
        """
        if self._nowrap:
            cells = self._word
            if max_cells and self._word_w > max_cells:
                cells = _last_cells(cells, max_cells - 1)
                cells.insert(0, ("…", cells[0][1] if cells else PLAIN, 1))
            row = cells_to_row(cells + [(ch, st, char_width(ch)) for ch, st in extra or ()])
            return [(self._first if self._rows_out == 0 else self._rest) + row]
        rows: list[Row] = []
        clone = Wrapper.__new__(Wrapper)
        clone._layout = self._layout
        clone._emit = rows.append
        clone._first, clone._first_w = self._first, self._first_w
        clone._rest, clone._rest_w = self._rest, self._rest_w
        clone._nowrap, clone._split_long = False, self._split_long
        clone._row, clone._row_w = list(self._row), self._row_w
        clone._gap, clone._gap_w = list(self._gap), self._gap_w
        clone._word, clone._word_w = list(self._word), self._word_w
        clone._rows_out = self._rows_out
        for ch, style in extra or ():
            clone.push(ch, style)
        if clone._word:
            clone._place_word()
        # A trailing space is shown: it is where the next word will go.
        clone._row.extend(clone._gap)
        clone._row_w += clone._gap_w
        if clone._row or clone._rows_out == 0:
            clone._flush_row()
        return rows

    @property
    def started(self) -> bool:
        """Whether the line has any content or emitted rows yet."""
        return bool(self._rows_out or self._row or self._word or self._gap)


def _last_cells(cells: list[Cell], width: int) -> list[Cell]:
    """The cells at the end of ``cells`` that fit in ``width``."""
    taken = 0
    start = len(cells)
    while start > 0 and taken + cells[start - 1][2] <= width:
        start -= 1
        taken += cells[start][2]
    return cells[start:]


def row_width(row: Row) -> int:
    """Cells ``row`` takes (more than the terminal's width when it soft-wraps)."""
    return sum(text_width(text) for text, _ in row)


def split_row(row: Row, width: int) -> list[Row]:
    """``row`` cut into screen rows of at most ``width`` cells (a wide character never straddles).

    For the live tail, which is erased and repainted and so must know exactly
    how many rows it takes: terminals differ on where they wrap a row that
    ends in half a wide character, so the tail never leaves it to them.
    """
    if row_width(row) <= width:
        return [row]
    rows: list[Row] = []
    cells: list[Cell] = []
    used = 0
    for text, style in row:
        for ch in text:
            cw = char_width(ch)
            if used + cw > width and cells:
                rows.append(cells_to_row(cells))
                cells, used = [], 0
            cells.append((ch, style, cw))
            used += cw
    rows.append(cells_to_row(cells))
    return rows


def cut_left(row: Row, width: int) -> Row:
    """The end of ``row`` in at most ``width`` cells, an ellipsis first if anything was cut."""
    if row_width(row) <= width:
        return row
    kept: list[Segment] = []
    used = 1
    for text, style in reversed(row):
        tw = text_width(text)
        if used + tw <= width:
            kept.append((text, style))
            used += tw
            continue
        part: list[str] = []
        for ch in reversed(text):
            cw = char_width(ch)
            if used + cw > width:
                break
            part.append(ch)
            used += cw
        if part:
            kept.append(("".join(reversed(part)), style))
        break
    style = kept[-1][1] if kept else PLAIN
    kept.append(("…", style))
    kept.reverse()
    return kept


def wrap_row(row: Row, layout: Layout, *, rest_prefix: Row | None = None) -> list[Row]:
    """``row`` word-wrapped at the layout's width (continuation rows get ``rest_prefix``)."""
    rows: list[Row] = []
    wrapper = Wrapper(layout, rows.append, rest_prefix=rest_prefix)
    for text, style in row:
        for ch in text:
            wrapper.push(ch, style)
    wrapper.end()
    return rows
