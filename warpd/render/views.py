"""What the renderer knows of each block it is showing.

A view turns the block messages of one block into rows ready to commit, plus
what the live tail shows of it while it is unfinished. Views never write
anything: the stream view drains their rows when it is their turn on screen,
so a block that is not on screen yet simply keeps its rows until it is (and
the tail shows its last rows meanwhile).

Block values follow the wire protocol: while a block streams, each message
carries the fragment since the previous one; the message that completes it
(and every snapshot) carries the whole value, of which only the part not yet
seen is rendered (:class:`~warpd.render.increment.Increment`).
"""

from __future__ import annotations

from collections import deque

import msgspec

from warpd.protocol import Block
from warpd.render.code import DEFAULT_THEME
from warpd.render.increment import Increment
from warpd.render.markdown import MarkdownWriter
from warpd.render.style import (
    BOLD,
    CYAN,
    DIM,
    GREY,
    ITALIC,
    MAGENTA,
    PLAIN,
    RED,
    REVERSE,
    YELLOW,
    Mode,
    Row,
    Style,
)
from warpd.render.untrusted import neutralise, visible_form
from warpd.render.wrap import Layout, Wrapper, text_width, wrap_row

LABEL = Style(DIM | ITALIC, GREY)
NOTE = Style(DIM, YELLOW)
# A block waiting for its turn shows at most this many of its last rows.
_SECTION_ROWS = 8

Section = tuple[Row | None, list[Row]]


def clip_row(row: Row, width: int) -> Row:
    """``row`` cut to ``width`` cells (an ellipsis marks the cut)."""
    if sum(text_width(text) for text, _ in row) <= width:
        return row
    out: Row = []
    total = 0
    for text, style in row:
        kept: list[str] = []
        for ch in text:
            cw = text_width(ch)
            if total + cw > width - 1:
                out.append(("".join(kept) + "…", style))
                return out
            kept.append(ch)
            total += cw
        out.append((text, style))
    return out


class BlockView:
    """One block on screen: rows waiting to be committed, and what the tail shows.

    ``choices`` is the stream's set of choice indexes seen so far (shared):
    when it holds more than one, every block says which choice it is.
    """

    def __init__(self, layout: Layout, mode: Mode, block: Block, choices: set[int]) -> None:
        self.layout = layout
        self.mode = mode
        self.choice = block.choice
        self._choices = choices
        # Finished rows ready to be committed, drained by the stream view.
        self.rows: list[Row] = []
        self.complete = False
        # Whether the stream view has started writing this block's rows.
        self.shown = False
        self.fragments = 0
        self.label: Row | None = None
        self._increment = Increment()
        self._blank = False
        self._wrote = False

    def choice_label(self) -> str:
        """``choice N`` when the stream has several choices, else ``""``."""
        return f"choice {self.choice}" if len(self._choices) > 1 else ""

    def labels(self) -> list[str]:
        """What the block's label row says (decided when its first row is)."""
        label = self.choice_label()
        return [label] if label else []

    def emit(self, row: Row) -> None:
        """Queue a finished row; blank rows are collapsed and never lead or trail."""
        if not row:
            self._blank = self._wrote
            return
        if not self._wrote:
            # Decided now, not when the block began: by its first row, the
            # other choices of an n>1 response have usually begun too.
            labels = self.labels()
            if labels:
                self.label = [(" · ".join(labels), self.label_style())]
                self.rows.append(self.label)
        if self._blank:
            self.rows.append([])
            self._blank = False
        self._wrote = True
        self.rows.append(row)

    def label_style(self) -> Style:
        return LABEL

    def new_part(self, value: str, *, whole: bool) -> str:
        return self._increment.new(value, whole=whole)

    def update(self, block: Block, *, whole: bool) -> None:
        """Apply this block's entry of a message (``whole``: it carries the whole value)."""
        raise NotImplementedError

    def preview(self, limit: int) -> list[Row]:
        """Up to ``limit`` rows showing the unfinished rest of the block."""
        return []

    def section(self, *, waiting: bool) -> Section:
        """What the live tail shows of this block: a row kept in view, then the last rows.

        ``waiting``: an earlier block is still on screen, so this one's
        finished rows are not committed yet and show here.
        """
        if not waiting:
            return None, self.preview(_SECTION_ROWS)
        rows = self.rows[-_SECTION_ROWS:]
        if rows and rows[0] is self.label:
            rows = rows[1:]
        return self.label, rows + self.preview(_SECTION_ROWS)

    def abandon(self) -> list[Row]:
        """Commit whatever is shown of an unfinished block (the subscriber is leaving)."""
        for row in self.preview(self.layout.width):
            self.emit(row)
        self.complete = True
        return self.rows


class TextView(BlockView):
    """A text or reasoning block: light markdown, reasoning dimmed and labelled."""

    def __init__(
        self, layout: Layout, mode: Mode, block: Block, choices: set[int], theme: str
    ) -> None:
        super().__init__(layout, mode, block, choices)
        self._reasoning = block.type == "reasoning"
        self._refusal = block.refusal
        self._upstream = neutralise(block.upstream_type or "")
        base = Style(DIM) if self._reasoning else PLAIN
        self._writer = MarkdownWriter(
            layout, self.emit, base=base, colored=mode.colored, theme=theme
        )

    def labels(self) -> list[str]:
        labels = super().labels()
        if self._reasoning:
            labels.append("thinking")
        if self._refusal:
            labels.append("refusal")
        if self._upstream:
            labels.append(self._upstream)
        return labels

    def label_style(self) -> Style:
        return Style(BOLD, YELLOW) if self._refusal else LABEL

    def update(self, block: Block, *, whole: bool) -> None:
        new = self.new_part(block.text or "", whole=whole)
        if new:
            self.fragments += 1
            self._writer.feed(new)
        if block.complete:
            self._writer.finish()
            if block.truncated:
                self.emit([("(cut off before its end)", NOTE)])
            self.complete = True

    def preview(self, limit: int) -> list[Row]:
        return self._writer.preview(limit)


class ToolCallView(BlockView):
    """A tool call: its name, the raw arguments while they grow, pretty JSON once complete.

    The arguments are never broken across rows by the renderer: a JSON line
    wider than the terminal is one row, which the terminal soft-wraps.
    """

    _KEEP = 8

    def __init__(self, layout: Layout, mode: Mode, block: Block, choices: set[int]) -> None:
        super().__init__(layout, mode, block, choices)
        self._name = ""
        self._call_id = ""
        self._upstream = block.upstream_type or ""
        self._raw_rows: deque[Row] = deque(maxlen=self._KEEP)
        self._raw = Wrapper(layout, self._raw_rows.append, nowrap=True)

    def header(self) -> Row:
        """``⚙ name id``, with the choice and upstream type when they say something."""
        row: Row = [("⚙ ", Style(BOLD, MAGENTA))]
        choice = self.choice_label()
        if choice:
            row.append((f"{choice} · ", LABEL))
        row.append((neutralise(self._name) or "tool call", Style(BOLD, MAGENTA)))
        if self._upstream:
            row.append((f" ({neutralise(self._upstream)})", LABEL))
        if self._call_id:
            row.append((" " + neutralise(self._call_id), Style(DIM, GREY)))
        return row

    def update(self, block: Block, *, whole: bool) -> None:
        tool = block.tool
        if tool is not None:
            self._name = tool.function.name or self._name
            self._call_id = tool.id or self._call_id
        arguments = tool.function.arguments if tool is not None else ""
        if block.complete:
            self.complete = True
            self._finish(block, arguments)
            return
        new = self.new_part(arguments, whole=whole)
        if new:
            self.fragments += 1
            style = Style(DIM)
            for ch in new:
                if ch == "\n":
                    self._raw.end()
                    continue
                form = visible_form(ch) if ch != "\t" else " "
                for f in form or ch:
                    self._raw.push(f, style if not form or ch == "\t" else style.plus(REVERSE))

    def _finish(self, block: Block, arguments: str) -> None:
        for row in wrap_row(self.header(), self.layout, rest_prefix=[("  ", PLAIN)]):
            self.emit(row)
        pretty = None
        if arguments.strip() and not block.invalid_arguments:
            try:
                pretty = msgspec.json.format(arguments.encode(), indent=2).decode()
            except (msgspec.DecodeError, UnicodeError):
                pretty = None
        if pretty is not None:
            lines = compact_arrays(pretty.split("\n"), self.layout.width)
        else:
            lines = arguments.split("\n") if arguments else []
        for line in lines:
            self._json_line(line, colour_keys=pretty is not None)
        if block.invalid_arguments or (arguments.strip() and pretty is None):
            self.emit([("(arguments are not valid JSON)", NOTE)])
        if block.truncated:
            self.emit([("(cut off before the call was complete)", NOTE)])

    def _json_line(self, line: str, *, colour_keys: bool) -> None:
        wrapper = Wrapper(self.layout, self.emit, nowrap=True)
        key_end = 0
        if colour_keys:
            stripped = line.lstrip(" ")
            if stripped.startswith('"'):
                end = _string_end(stripped)
                if end and stripped[end : end + 1] == ":":
                    key_end = len(line) - len(stripped) + end
        key, value = Style(0, CYAN), PLAIN
        for i, ch in enumerate(line):
            form = visible_form(ch) if ch != "\t" else " "
            if form is None:
                wrapper.push(ch, key if i < key_end else value)
            else:
                for f in form:
                    wrapper.push(f, value if ch == "\t" else Style(REVERSE))
        wrapper.end()

    def _raw_preview(self, limit: int) -> list[Row]:
        if limit <= 0:
            return []
        rows = list(self._raw_rows)
        if self._raw.started:
            rows.extend(self._raw.preview(max_cells=limit * self.layout.width))
        return rows[-limit:]

    def preview(self, limit: int) -> list[Row]:
        if limit <= 0:
            return []
        return [self.header(), *self._raw_preview(limit - 1)]

    def section(self, *, waiting: bool) -> Section:
        if not self.complete:
            return self.header(), self._raw_preview(_SECTION_ROWS)
        if not waiting or not self.rows:
            return None, []
        # Complete, waiting for its turn: its header, then its last rows.
        return self.rows[0], self.rows[1:][-_SECTION_ROWS:]


def compact_arrays(lines: list[str], width: int) -> list[str]:
    """Indented JSON lines with each array of scalars on one line when it fits ``width``."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.endswith("["):
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip(" "))
        items: list[str] = []
        j = i
        while j < len(lines):
            item = lines[j]
            if item.strip() in ("]", "],") and len(item) - len(item.lstrip(" ")) == indent:
                break
            if item.endswith(("[", "{")):
                j = len(lines)
                break
            items.append(item.strip())
            j += 1
        if j >= len(lines):
            out.append(line)
            continue
        # Every item but the last ends with its separating comma.
        values = [item[:-1] for item in items[:-1]] + items[-1:]
        joined = line + ", ".join(values) + lines[j].strip()
        if text_width(joined) <= width:
            out.append(joined)
            i = j + 1
        else:
            out.append(line)
    return out


def _string_end(text: str) -> int:
    """Index just past the JSON string starting ``text``, or 0."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return 0


class ErrorView(BlockView):
    """An error block: in red, with who reported it and the provider's reason."""

    def update(self, block: Block, *, whole: bool) -> None:
        if not block.complete:
            return
        self.complete = True
        error = block.error
        message = error.message if error is not None else (block.text or "")
        source = error.source if error is not None else "provider"
        label = f"✗ {source} error"
        if error is not None and error.code:
            label += f" ({neutralise(error.code)})"
        red = Style(0, RED)
        self.emit([(label, Style(BOLD, RED))])
        for line in message.split("\n"):
            wrapper = Wrapper(
                self.layout, self.emit, first_prefix=[("  ", red)], rest_prefix=[("  ", red)]
            )
            for ch in line:
                form = visible_form(ch) if ch != "\t" else " "
                for f in form or ch:
                    wrapper.push(f, red if not form or ch == "\t" else red.plus(REVERSE))
            wrapper.end()


def make_view(
    layout: Layout, mode: Mode, block: Block, choices: set[int], theme: str = DEFAULT_THEME
) -> BlockView:
    """The view for a block of ``block.type``."""
    if block.type == "tool_call":
        return ToolCallView(layout, mode, block, choices)
    if block.type == "error":
        return ErrorView(layout, mode, block, choices)
    return TextView(layout, mode, block, choices, theme)
