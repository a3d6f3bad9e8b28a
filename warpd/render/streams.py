"""What the renderer knows of each stream it is showing: header, blocks, footer.

A stream view holds the block views of one stream, hands out their finished
rows in block order when the stream is the one on screen, and says what the
live tail shows of it (every unfinished block, not only the first) and what
its status line and footer say.
"""

from __future__ import annotations

import time
from typing import Any

from warpd.protocol import SnapshotMessage, StreamMessage, StreamRequest
from warpd.render.code import DEFAULT_THEME
from warpd.render.outcome import finish_words
from warpd.render.style import BLUE, BOLD, CYAN, DIM, GREEN, GREY, RED, Mode, Row, Style, encode_row
from warpd.render.untrusted import neutralise
from warpd.render.views import LABEL, BlockView, Section, clip_row, make_view
from warpd.render.wrap import Layout, text_width, wrap_row

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_RULE_MAX = 100
# A duration under this is not worth a footer's room (a replay, a convert).
_MEANINGFUL_SECONDS = 0.1

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


def duration(seconds: float) -> str:
    """``4.2s`` or ``3m07s``."""
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class StreamView:
    """One stream on screen: a header, its blocks in order, a footer.

    Call :meth:`apply` with each of its messages and :meth:`drain` when it is
    the stream on screen; ``done`` turns true once the footer was drained.
    Blocks are committed in index order, each whole: a block that grows while
    an earlier one is still streaming (the next tool call, another choice)
    keeps its rows until the earlier one completes, and shows in the live
    tail meanwhile (:meth:`sections`).
    """

    def __init__(
        self,
        message: StreamMessage,
        layout: Layout,
        mode: Mode,
        now: float,
        theme: str = DEFAULT_THEME,
    ) -> None:
        self.stream = message.stream
        self.session = message.session
        self.layout = layout
        self.mode = mode
        self.theme = theme
        self.model: str | None = None
        # What was asked for (warpd run / warpd proxy say it on the first message).
        self.request: StreamRequest | None = message.request
        self.created = message.created if message.created is not None else now
        # Whether this view saw the stream before its end (else its duration is unknown).
        self.seen_live = not (message.complete and not message.streaming)
        self.final: StreamMessage | None = None
        self.ended = now
        self.done = False
        self.fragments = 0
        self.first_fragment: float | None = None
        self.choices: set[int] = set()
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
        # Every choice of the message is known before any of its blocks is rendered.
        self.choices.update(block.choice for block in message.blocks)
        for block in message.blocks:
            view = self._blocks.get(block.index)
            if view is None:
                view = make_view(self.layout, self.mode, block, self.choices, self.theme)
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

    def _encode(self, rows: list[Row]) -> list[str]:
        return [encode_row(row, self.mode) if row else "" for row in rows]

    def drain(self) -> list[str]:
        """The rows that can be committed now, encoded, in order (only when on screen)."""
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
                out.extend(self._encode(view.rows))
                view.rows = []
            if not view.complete:
                break
            self._cursor += 1
        return out

    def lead(self) -> list[Row]:
        """The stream's header while it is not written yet (the tail shows it if there is room)."""
        return [] if self._header_done else self._header_rows()

    def sections(self) -> list[Section]:
        """What the tail shows of each unfinished block, from the one on screen on
        (a head row to keep in view, then rows)."""
        out: list[Section] = []
        for index, view in self._blocks.items():
            if index < self._cursor:
                continue
            head, rows = view.section(waiting=index != self._cursor)
            if head is not None or rows:
                out.append((head, rows))
        return out

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
                out.extend(self._encode(rows))
                view.rows = []
        if out:
            out.append(encode_row([(note, LABEL)], self.mode))
        self.done = True
        return out

    def status(self, now: float, frame: int, *, on_screen: bool) -> Row:
        """The status line: spinner, elapsed time, fragments (≈ tokens) per second.

        It is repainted with every frame, so it is kept short and in one
        style: the stream on screen has its model in its header already.
        """
        grey = Style(DIM, GREY)
        if self.final is not None:
            return [("  " + neutralise(self.stream) + " done", grey)]
        parts = [neutralise(self.stream)]
        if not on_screen:
            if self.shown_model:
                parts.append(neutralise(self.shown_model))
            parts.append("waiting")
        parts.append(duration(now - self.created))
        if self.first_fragment is not None and now - self.first_fragment > 0.5:
            rate = self.fragments / (now - self.first_fragment)
            parts.append(f"≈{rate:.0f} tok/s")
        spin = SPINNER[frame % len(SPINNER)] if on_screen else "·"
        return [(spin, Style(0, CYAN)), (" " + " · ".join(parts), grey)]

    @property
    def shown_model(self) -> str | None:
        """The model the answer names, else the one the request named (warpd run, proxy):
        an answer that fails before it says (a 401) still shows what was asked for."""
        if self.model:
            return self.model
        return self.request.model if self.request is not None else None

    def _header_rows(self) -> list[Row]:
        grey = Style(DIM, GREY)
        parts: Row = [(neutralise(self.stream), Style(BOLD, BLUE))]
        model = self.shown_model
        if model:
            parts += [(" · ", grey), (neutralise(model), Style(0, CYAN))]
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
            out.extend(self._encode(self._header_rows()))

    def _footer(self) -> list[str]:
        final = self.final
        assert final is not None
        grey = Style(DIM, GREY)
        parts: Row = []
        if final.aborted:
            reason = final.abort_reason or "no reason given"
            # An error block already says what the error was: say it once.
            for block in final.blocks:
                said = block.error.message if block.error is not None else ""
                if said and said in reason:
                    reason = reason.replace(said, "").rstrip(" :") or "error"
            parts.append((f"aborted: {neutralise(reason)}", Style(BOLD, RED)))
        reasons = final.finish_reasons
        if reasons and len(set(reasons)) > 1:
            words = ", ".join(f"choice {n}: {finish_words(r)}" for n, r in enumerate(reasons))
            parts.append((words, Style(0, GREEN)))
        elif reasons or final.finish_reason:
            parts.append((finish_words(reasons[0] if reasons else final.finish_reason),
                          Style(0, GREEN)))
        elif not final.aborted:
            # Complete, without a reason from the provider (plain text): done.
            parts.append(("done", Style(0, GREEN)))
        usage = usage_summary(final.usage)
        if usage:
            parts.append((usage, grey))
        seconds = self.ended - self.created
        if self.seen_live and seconds >= _MEANINGFUL_SECONDS:
            parts.append((duration(seconds), grey))
        row: Row = []
        for i, part in enumerate(parts):
            if i:
                row.append((" · ", grey))
            row.append(part)
        # A blank row after the footer keeps consecutive streams apart.
        return [*self._encode(rule_rows(row, self.layout, grey)), ""]
