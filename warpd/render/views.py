"""What the renderer knows of each stream and each block it is showing.

A view turns the block messages of one block (or one stream) into encoded
rows ready to commit, plus a preview of what is unfinished for the live tail.
Views never write anything: the renderer drains their rows when it is their
turn on screen, so a block or stream that is not on screen yet simply keeps
its rows until it is.

Block values follow the wire protocol: while a block streams, each message
carries the fragment since the previous one; the message that completes it
(and every snapshot) carries the whole value, of which only the part not yet
seen is rendered.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import msgspec

from warpd.protocol import Block, SnapshotMessage, StreamMessage, StreamRequest
from warpd.render.markdown import MarkdownWriter
from warpd.render.style import (
    BLUE,
    BOLD,
    CYAN,
    DIM,
    GREEN,
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
    encode_row,
)
from warpd.render.untrusted import neutralise, visible_form
from warpd.render.wrap import Layout, Wrapper, text_width, wrap_row

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_RULE_MAX = 100
_LABEL = Style(DIM | ITALIC, GREY)
_NOTE = Style(DIM, YELLOW)


def rule_rows(parts: Row, layout: Layout, style: Style) -> list[Row]:
    """``── parts ───…``, the rule filling the width (up to a maximum, so scrollback
    stays tidy); parts too long for one row wrap under the first."""
    rows = wrap_row([("── ", style), *parts], layout, rest_prefix=[("   ", style)])
    last = rows[-1]
    used = sum(text_width(t) for t, _ in last) + 1
    width = min(layout.width, _RULE_MAX)
    if width > used:
        last.append((" " + "─" * (width - used), style))
    return rows


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
    """One block on screen: committed rows waiting to be written, and its preview."""

    def __init__(self, layout: Layout, mode: Mode) -> None:
        self.layout = layout
        self.mode = mode
        # Encoded rows ready to be committed, drained by the stream view.
        self.rows: list[str] = []
        self.complete = False
        # Whether the stream view has started writing this block's rows.
        self.shown = False
        self.fragments = 0
        self._seen = 0
        self._blank = False
        self._wrote = False

    def emit(self, row: Row) -> None:
        """Queue a finished row; blank rows are collapsed and never lead or trail."""
        if not row:
            self._blank = self._wrote
            return
        if self._blank:
            self.rows.append("")
            self._blank = False
        self._wrote = True
        self.rows.append(encode_row(row, self.mode))

    def _new_part(self, value: str, whole: bool) -> str:
        if not whole:
            self._seen += len(value)
            return value
        # A whole value repeats what was seen: render only the rest.
        new = value[self._seen :] if self._seen else value
        self._seen = len(value)
        return new

    def update(self, block: Block, *, whole: bool) -> None:
        """Apply this block's entry of a message (``whole``: it carries the whole value)."""
        raise NotImplementedError

    def preview(self, limit: int) -> list[Row]:
        """Up to ``limit`` rows showing the unfinished rest of the block."""
        return []

    def abandon(self) -> list[str]:
        """Commit whatever is shown of an unfinished block (the subscriber is leaving)."""
        for row in self.preview(self.layout.width):
            self.emit(row)
        self.complete = True
        return self.rows


class TextView(BlockView):
    """A text or reasoning block: light markdown, reasoning dimmed and labelled."""

    def __init__(self, layout: Layout, mode: Mode, block: Block) -> None:
        super().__init__(layout, mode)
        labels = []
        if block.choice:
            labels.append(f"choice {block.choice}")
        if block.type == "reasoning":
            labels.append("thinking")
        if block.refusal:
            labels.append("refusal")
        if block.upstream_type:
            labels.append(neutralise(block.upstream_type))
        if labels:
            style = Style(BOLD, YELLOW) if block.refusal else _LABEL
            self.emit([(" · ".join(labels), style)])
        base = Style(DIM) if block.type == "reasoning" else PLAIN
        self._writer = MarkdownWriter(layout, self.emit, base=base)

    def update(self, block: Block, *, whole: bool) -> None:
        new = self._new_part(block.text or "", whole)
        if new:
            self.fragments += 1
            self._writer.feed(new)
        if block.complete:
            self._writer.finish()
            if block.truncated:
                self.emit([("(cut off before its end)", _NOTE)])
            self.complete = True

    def preview(self, limit: int) -> list[Row]:
        return self._writer.preview(limit)


class ToolCallView(BlockView):
    """A tool call: its name, the raw arguments while they grow, pretty JSON once complete."""

    _KEEP = 8

    def __init__(self, layout: Layout, mode: Mode, block: Block) -> None:
        super().__init__(layout, mode)
        self._name = ""
        self._call_id = ""
        self._choice = block.choice
        self._upstream = block.upstream_type or ""
        self._raw_rows: deque[Row] = deque(maxlen=self._KEEP)
        self._raw = Wrapper(layout, self._raw_rows.append, hard=True)

    def _header(self) -> Row:
        row: Row = [("⚙ ", Style(BOLD, MAGENTA))]
        if self._choice:
            row.append((f"choice {self._choice} · ", _LABEL))
        row.append((neutralise(self._name) or "tool call", Style(BOLD, MAGENTA)))
        if self._upstream:
            row.append((f" ({neutralise(self._upstream)})", _LABEL))
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
        new = self._new_part(arguments, whole)
        if new:
            self.fragments += 1
            style = Style(DIM)
            for ch in new:
                form = visible_form(ch) if ch != "\t" else " "
                for f in form or ch:
                    self._raw.push(f, style if not form or ch == "\t" else style.plus(REVERSE))

    def _finish(self, block: Block, arguments: str) -> None:
        for row in wrap_row(self._header(), self.layout, rest_prefix=[("  ", PLAIN)]):
            self.emit(row)
        pretty = None
        if arguments.strip() and not block.invalid_arguments:
            try:
                pretty = msgspec.json.format(arguments.encode(), indent=2).decode()
            except (msgspec.DecodeError, UnicodeError):
                pretty = None
        text = pretty if pretty is not None else arguments
        for line in text.split("\n") if text else ():
            self._json_line(line, colour_keys=pretty is not None)
        if block.invalid_arguments or (arguments.strip() and pretty is None):
            self.emit([("(arguments are not valid JSON)", _NOTE)])
        if block.truncated:
            self.emit([("(cut off before the call was complete)", _NOTE)])

    def _json_line(self, line: str, *, colour_keys: bool) -> None:
        wrapper = Wrapper(self.layout, self.emit, hard=True)
        key_end = 0
        if colour_keys:
            stripped = line.lstrip(" ")
            if stripped.startswith('"'):
                end = _string_end(stripped)
                if end and stripped[end : end + 1] == ":":
                    key_end = len(line) - len(stripped) + end
        key, value = Style(0, CYAN), PLAIN
        for i, ch in enumerate(line):
            form = visible_form(ch)
            if form is None:
                wrapper.push(ch, key if i < key_end else value)
            else:
                for f in form:
                    wrapper.push(f, Style(REVERSE))
        wrapper.end()

    def preview(self, limit: int) -> list[Row]:
        rows = [clip_row(self._header(), self.layout.width)]
        rows.extend(self._raw_rows)
        if self._raw.started:
            rows.extend(self._raw.preview())
        if len(rows) > limit:
            # Keep the header: it says what the growing text is.
            rows = rows[:1] + rows[len(rows) - limit + 1 :] if limit > 1 else rows[-limit:]
        return rows if limit > 0 else []


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


def make_view(layout: Layout, mode: Mode, block: Block) -> BlockView:
    """The view for a block of ``block.type``."""
    if block.type == "tool_call":
        return ToolCallView(layout, mode, block)
    if block.type == "error":
        return ErrorView(layout, mode)
    return TextView(layout, mode, block)


def usage_summary(usage: dict[str, Any] | None) -> str:
    """Token counts from any provider's usage object, e.g. ``12 in · 54 out tokens``."""
    if not usage:
        return ""

    def first(*keys: str) -> int | None:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    tokens_in = first("prompt_tokens", "input_tokens", "prompt_eval_count")
    tokens_out = first("completion_tokens", "output_tokens", "eval_count")
    parts = []
    if tokens_in is not None:
        parts.append(f"{tokens_in} in")
    if tokens_out is not None:
        parts.append(f"{tokens_out} out")
    reasoning = None
    for key in ("completion_tokens_details", "output_tokens_details"):
        details = usage.get(key)
        if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
            reasoning = details["reasoning_tokens"]
    if reasoning:
        parts.append(f"{reasoning} reasoning")
    if not parts:
        total = first("total_tokens")
        return f"{total} tokens" if total is not None else ""
    return " · ".join(parts) + " tokens"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class StreamView:
    """One stream on screen: a header, its blocks in order, a footer.

    Call :meth:`apply` with each of its messages and :meth:`drain` when it is
    the stream on screen; ``done`` turns true once the footer was drained.
    Blocks are shown in index order, each whole: a block that grows while an
    earlier one is still streaming (choices of an n>1 response) keeps its
    rows until the earlier one completes.
    """

    def __init__(self, message: StreamMessage, layout: Layout, mode: Mode, now: float) -> None:
        self.stream = message.stream
        self.session = message.session
        self.layout = layout
        self.mode = mode
        self.model: str | None = None
        # What was asked for (warpd run / warpd proxy say it on the first message).
        self.request: StreamRequest | None = message.request
        self.created = message.created if message.created is not None else now
        self.final: StreamMessage | None = None
        self.ended = now
        self.done = False
        self.fragments = 0
        self.first_fragment: float | None = None
        self._blocks: dict[int, BlockView] = {}
        self._cursor = 0
        self._header_done = False
        self._blocks_shown = 0

    def apply(self, message: StreamMessage, now: float) -> None:
        """Take one message of this stream."""
        if self.final is not None:
            return
        if message.model:
            self.model = message.model
        if message.request is not None:
            self.request = message.request
        if message.created is not None:
            self.created = message.created
        whole = isinstance(message, SnapshotMessage)
        for block in message.blocks:
            view = self._blocks.get(block.index)
            if view is None:
                view = make_view(self.layout, self.mode, block)
                self._blocks[block.index] = view
            if view.complete:
                continue
            before = view.fragments
            view.update(block, whole=whole or block.complete)
            if view.fragments != before:
                self.fragments += 1
                if self.first_fragment is None:
                    self.first_fragment = now
        if message.complete and not message.streaming:
            self.final = message
            self.ended = now
            for view in self._blocks.values():
                if not view.complete:
                    view.abandon()

    def drain(self) -> list[str]:
        """The rows that can be committed now, in order (call only when on screen)."""
        out: list[str] = []
        while not self.done:
            view = self._blocks.get(self._cursor)
            if view is None:
                if self.final is None:
                    break
                if self._cursor < max(self._blocks, default=-1):
                    self._cursor += 1
                    continue
                self._header(out)
                out.extend(self._footer())
                self.done = True
                break
            if view.rows:
                self._header(out)
                if not view.shown:
                    if self._blocks_shown:
                        out.append("")
                    view.shown = True
                    self._blocks_shown += 1
                out.extend(view.rows)
                view.rows = []
            if not view.complete:
                break
            self._cursor += 1
        return out

    def preview(self, limit: int) -> list[Row]:
        """The unfinished part of the block on screen."""
        view = self._blocks.get(self._cursor)
        if view is None or limit <= 0:
            return []
        rows = view.preview(limit)
        if not self._header_done and rows:
            rows = [*self._header_rows(), *rows][-limit:]
        return rows

    def abandon(self, note: str) -> list[str]:
        """Every row this stream has, finished or not, then ``note`` (it will not end here)."""
        out = self.drain()
        for index in sorted(self._blocks):
            if index < self._cursor:
                continue
            view = self._blocks[index]
            rows = view.rows if view.complete else view.abandon()
            if rows:
                self._header(out)
                if self._blocks_shown and not view.shown:
                    out.append("")
                view.shown = True
                self._blocks_shown += 1
                out.extend(rows)
                view.rows = []
        if out:
            out.append(encode_row([(note, _LABEL)], self.mode))
        self.done = True
        return out

    def status(self, now: float, frame: int, *, on_screen: bool) -> Row:
        """The status line: spinner, elapsed time, fragments (≈ tokens) per second."""
        grey = Style(DIM, GREY)
        if self.final is not None:
            return [("  ", grey), (neutralise(self.stream), Style(DIM, BLUE)), (" done", grey)]
        elapsed = now - self.created
        parts = [_duration(elapsed)]
        if self.first_fragment is not None and now - self.first_fragment > 0.5:
            rate = self.fragments / (now - self.first_fragment)
            parts.append(f"≈{rate:.0f} tok/s")
        if not on_screen:
            parts.insert(0, "waiting")
        spin = SPINNER[frame % len(SPINNER)] if on_screen else "·"
        row: Row = [(spin + " ", Style(0, CYAN)), (neutralise(self.stream), Style(DIM, BLUE))]
        if self.model:
            row.append((" · " + neutralise(self.model), grey))
        row.append((" · " + " · ".join(parts), grey))
        return row

    def _header_rows(self) -> list[Row]:
        grey = Style(DIM, GREY)
        parts: Row = [(neutralise(self.stream), Style(BOLD, BLUE))]
        if self.model:
            parts += [(" · ", grey), (neutralise(self.model), Style(0, CYAN))]
        stamp = time.strftime("%H:%M:%S", time.localtime(self.created))
        parts += [(" · ", grey), (stamp, grey)]
        rows = rule_rows(parts, self.layout, grey)
        prompt = self.request.prompt if self.request is not None else None
        if prompt:
            rows.append(clip_row([("› ", grey), (neutralise(prompt), grey)], self.layout.width))
        return rows

    def _header(self, out: list[str]) -> None:
        if not self._header_done:
            self._header_done = True
            out.extend(encode_row(row, self.mode) for row in self._header_rows())

    def _footer(self) -> list[str]:
        final = self.final
        assert final is not None
        grey = Style(DIM, GREY)
        parts: Row = []
        if final.aborted:
            reason = neutralise(final.abort_reason or "no reason given")
            parts.append((f"aborted: {reason}", Style(BOLD, RED)))
        reasons = final.finish_reasons
        if reasons:
            parts.append((", ".join(neutralise(r or "-") for r in reasons), Style(0, GREEN)))
        elif final.finish_reason:
            parts.append((neutralise(final.finish_reason), Style(0, GREEN)))
        usage = usage_summary(final.usage)
        if usage:
            parts.append((usage, grey))
        parts.append((_duration(self.ended - self.created), grey))
        row: Row = []
        for i, part in enumerate(parts):
            if i:
                row.append((" · ", grey))
            row.append(part)
        # A blank row after the footer keeps consecutive streams apart.
        return [*(encode_row(r, self.mode) for r in rule_rows(row, self.layout, grey)), ""]
