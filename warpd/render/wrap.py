"""Display cells and incremental word wrapping.

Widths come from wcwidth, one character at a time, as VT emulators (and
pyte) place them: wide CJK and emoji count 2, combining marks 0. Emoji
sequences joined by ZWJ count as the sum of their parts, and VS16 counts 1:
terminals that draw them narrower leave a row short, never overflowing it,
which is what keeps the live tail's cursor arithmetic right.
"""

from __future__ import annotations

from collections.abc import Callable

from wcwidth import wcwidth

from warpd.render.style import Row, Style

_widths: dict[str, int] = {}


def char_width(ch: str) -> int:
    """Cells the (already neutralised) character ``ch`` takes."""
    if " " <= ch <= "~":
        return 1
    width = _widths.get(ch)
    if width is None:
        width = 1 if ch == "\ufe0f" else max(0, wcwidth(ch))
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
    is O(1) amortised. Words longer than a row are split; with ``hard`` every
    character (spaces included) is kept and rows split anywhere (code).

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
        "_hard",
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
        hard: bool = False,
    ) -> None:
        self._layout = layout
        self._emit = emit
        self._first: Row = first_prefix or []
        self._rest: Row = rest_prefix if rest_prefix is not None else []
        self._first_w = sum(text_width(t) for t, _ in self._first)
        self._rest_w = sum(text_width(t) for t, _ in self._rest)
        self._hard = hard
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
        if ch == " " and not self._hard:
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
        self._word.append((ch, style, width))
        self._word_w += width
        self._fit()

    def _fit(self) -> None:
        while True:
            avail = self._avail()
            if self._row and self._row_w + self._gap_w + self._word_w > avail:
                self._flush_row()
                continue
            if not self._row and self._word_w > avail:
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
        cells, width = self._row, self._row_w
        self._row, self._row_w = [], 0
        self._gap, self._gap_w = [], 0
        avail = self._avail()
        if width > avail:
            cells = self._split_wide(cells, avail)
        self._emit_cells(cells)

    def _split_wide(self, cells: list[Cell], avail: int) -> list[Cell]:
        """Emit all but the last row of ``cells``; return the last."""
        # After a resize to a narrower terminal the row may be too wide.
        while sum(w for _, _, w in cells) > avail and len(cells) > 1:
            taken = 0
            split = 0
            for _, _, w in cells:
                if taken + w > avail and split:
                    break
                taken += w
                split += 1
            self._emit_cells(cells[:split])
            cells = cells[split:]
            avail = self._avail()
        return cells

    def _emit_cells(self, cells: list[Cell]) -> None:
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

    def preview(self, extra: list[tuple[str, Style]] | None = None) -> list[Row]:
        """The rows the unfinished row (plus ``extra`` characters) would make now."""
        rows: list[Row] = []
        clone = Wrapper.__new__(Wrapper)
        clone._layout = self._layout
        clone._emit = rows.append
        clone._first, clone._first_w = self._first, self._first_w
        clone._rest, clone._rest_w = self._rest, self._rest_w
        clone._hard = self._hard
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


def wrap_row(row: Row, layout: Layout, *, rest_prefix: Row | None = None) -> list[Row]:
    """``row`` word-wrapped at the layout's width (continuation rows get ``rest_prefix``)."""
    rows: list[Row] = []
    wrapper = Wrapper(layout, rows.append, rest_prefix=rest_prefix)
    for text, style in row:
        for ch in text:
            wrapper.push(ch, style)
    wrapper.end()
    return rows
