"""TerminalRenderer: block messages in, terminal bytes out.

The screen is split in two. Above is committed output: rows written once,
each followed by a newline, never touched again, so the terminal's scrollback
is always right. Below is the live tail: the unfinished row(s) of the block
being streamed and a status line per live stream, at most a few rows and
never more than the screen. Each update erases the tail (row by row, going
up), writes any newly committed rows, and paints the tail again, all inside
one synchronized update (DEC mode 2026) so terminals that support it never
show the intermediate state.

Several streams (of one or several sessions) are shown one at a time, each
whole: the stream that started first owns the committed area until it ends;
streams that started later keep their rows (and show a "waiting" status line)
until their turn. Within a stream, blocks are shown in order the same way.

Work per message is proportional to the message (plus the tail, a constant):
nothing committed is ever rendered again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from warpd.protocol import ErrorMessage, HelloMessage, StreamMessage
from warpd.render.style import BOLD, GREY, ITALIC, RED, Mode, Row, Style, encode_row
from warpd.render.untrusted import neutralise
from warpd.render.views import StreamView, clip_row
from warpd.render.wrap import Layout, text_width

SYNC_BEGIN = "\x1b[?2026h"
SYNC_END = "\x1b[?2026l"
_ERASE_ROW = "\r\x1b[2K"
_UP_ERASE_ROW = "\x1b[A\r\x1b[2K"
# Streams that ended are remembered (to ignore late repeats) up to this many.
_FINISHED_MEMORY = 1024
_STATUS_ROWS = 3


class TerminalRenderer:
    """Renders block messages for a terminal ``width`` cells wide and ``height`` rows tall.

    Write every bytes value a method returns to the terminal, in order:
    :meth:`feed` for each message received, :meth:`resize` when the terminal
    changes size, :meth:`tick` a few times a second (animates the status
    line; returns ``b""`` when nothing changed), and :meth:`close` last.

    ``color=False`` is NO_COLOR: attributes and the live tail, no colours.
    ``plain=True`` is for output that is not a terminal: no escape sequence
    at all and no live tail, only committed rows. ``sync=False`` leaves out
    the synchronized-update brackets. ``clock`` gives Unix time (message
    ``created`` stamps are Unix times); ``max_tail`` bounds the tail's rows.
    Rows fit terminals of 8 columns and more; narrower ones may see rows wrap.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        color: bool = True,
        plain: bool = False,
        sync: bool = True,
        clock: Callable[[], float] = time.time,
        max_tail: int = 8,
    ) -> None:
        self.mode = Mode.PLAIN if plain else Mode.COLOR if color else Mode.MONO
        self._layout = Layout(max(1, width))
        self._height = max(1, height)
        self._sync = sync and not plain
        self._clock = clock
        self._max_tail = max(1, max_tail)
        self._streams: dict[str, StreamView] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._painted: list[str] = []
        self._painted_widths: list[int] = []
        self._painted_height = 0
        self._now = clock()
        self._frame = 0
        self._closed = False
        self._epoch: str | None = None
        # A status line of the subscriber's own while no stream is live.
        self._waiting: str | None = None

    @property
    def width(self) -> int:
        """The width rows are wrapped at."""
        return self._layout.width

    @property
    def live(self) -> bool:
        """Whether any stream is still being shown (a status line is up)."""
        return bool(self._streams)

    def feed(self, message: object) -> bytes:
        """Render one message from the daemon; other message types are ignored."""
        if self._closed:
            return b""
        self._now = self._clock()
        extra: list[str] = []
        if isinstance(message, StreamMessage):
            self._waiting = None
            stream = message.stream
            if stream in self._finished:
                return b""
            view = self._streams.get(stream)
            if view is None:
                view = StreamView(message, self._layout, self.mode, self._now)
                self._streams[stream] = view
            view.apply(message, self._now)
        elif isinstance(message, ErrorMessage):
            text = "warpd: " + neutralise(message.message)
            extra.append(encode_row([(text, Style(BOLD, RED))], self.mode))
        elif isinstance(message, HelloMessage):
            if self._epoch is not None and (
                message.epoch != self._epoch or message.resume_failed
            ):
                # What was live before the reconnection will never complete
                # here, and a restarted daemon numbers its streams afresh.
                extra.extend(self._abandon("(interrupted: the connection to warpd was lost)"))
                self._finished.clear()
            self._epoch = message.epoch
            if message.resume_failed:
                text = "warpd: cannot resume: " + neutralise(message.resume_failed)
                extra.append(encode_row([(text, Style(ITALIC, GREY))], self.mode))
        return self._update(extra)

    def note(self, text: str) -> bytes:
        """Commit a line of the subscriber's own (e.g. "reconnected"), between streams' rows.

        Print such lines through here rather than straight to the terminal:
        a line written under the live tail would be erased or overwritten.
        """
        if self._closed:
            return b""
        self._now = self._clock()
        row = encode_row([(neutralise(text), Style(ITALIC, GREY))], self.mode)
        return self._paint([row], self._tail() if self.mode is not Mode.PLAIN else [])

    def waiting(self, text: str | None) -> bytes:
        """Show ``text`` as the status line until a stream arrives (None: remove it).

        For the subscriber's "waiting for streams" line: it is part of the live
        tail, never committed, and the first stream message replaces it.
        """
        if self._closed:
            return b""
        self._waiting = text
        return self._update([])

    def resize(self, width: int, height: int) -> bytes:
        """The terminal is now ``width`` x ``height``: repaint the tail at that size.

        Rows already committed stay as they are (the terminal reflows them or
        not); later rows are wrapped at the new width. The erase assumes the
        terminal reflowed the old tail rows (as tmux, Warp, kitty, VTE and
        iTerm2 do) when it got narrower.
        """
        width, height = max(1, width), max(1, height)
        if width < self._layout.width:
            self._painted_height = sum(max(1, -(-w // width)) for w in self._painted_widths)
        self._layout.width, self._height = width, height
        self._painted = ["\0"]  # Forces a repaint.
        return self._update([])

    def tick(self, now: float | None = None) -> bytes:
        """Advance the status line's spinner and times; ``b""`` if nothing shows it."""
        if self._closed or self.mode is Mode.PLAIN or not self._streams:
            return b""
        self._now = self._clock() if now is None else now
        self._frame += 1
        return self._update([])

    def close(self) -> bytes:
        """Finish: commit what unfinished streams have shown, remove the tail."""
        if self._closed:
            return b""
        out = self._paint(self._abandon("(still streaming when the subscriber stopped)"), [])
        self._closed = True
        return out

    def _abandon(self, note: str) -> list[str]:
        committed: list[str] = []
        for view in self._streams.values():
            committed.extend(view.abandon(note))
        self._streams.clear()
        return committed

    # -- painting -----------------------------------------------------------

    def _update(self, committed: list[str]) -> bytes:
        streams = self._streams
        while streams:
            stream, view = next(iter(streams.items()))
            committed.extend(view.drain())
            if not view.done:
                break
            del streams[stream]
            self._finished[stream] = None
            if len(self._finished) > _FINISHED_MEMORY:
                self._finished.popitem(last=False)
        tail = self._tail() if self.mode is not Mode.PLAIN else []
        return self._paint(committed, tail)

    def _tail(self) -> list[Row]:
        if not self._streams:
            if self._waiting is None:
                return []
            row: Row = [(neutralise(self._waiting), Style(ITALIC, GREY))]
            return [clip_row(row, self._layout.width)]
        limit = max(1, min(self._max_tail, self._height - 1))
        views = list(self._streams.values())
        status: list[Row] = [
            view.status(self._now, self._frame, on_screen=i == 0)
            for i, view in enumerate(views[:_STATUS_ROWS])
        ]
        if len(views) > _STATUS_ROWS:
            more = f"  … {len(views) - _STATUS_ROWS} more streams waiting"
            status.append([(more, Style(ITALIC, GREY))])
        status = status[:limit]
        content = views[0].preview(limit - len(status))
        width = self._layout.width
        return [clip_row(row, width) for row in content + status]

    def _paint(self, committed: list[str], tail: list[Row]) -> bytes:
        if self.mode is Mode.PLAIN:
            return "".join(row + "\n" for row in committed).encode("utf-8", "replace")
        encoded = [encode_row(row, self.mode) for row in tail]
        if not committed and encoded == self._painted:
            return b""
        out: list[str] = [SYNC_BEGIN] if self._sync else []
        if self._painted_height:
            # Row by row from the bottom, with erase-line: an erase-below
            # at the top-left corner is "clear screen", which tmux (and
            # others) answer by copying the screen into the scrollback.
            out.append(_ERASE_ROW)
            out.extend(_UP_ERASE_ROW for _ in range(self._painted_height - 1))
        for row in committed:
            out.append(row)
            out.append("\r\n")
        out.append("\r\n".join(encoded))
        if self._sync:
            out.append(SYNC_END)
        self._painted = encoded
        self._painted_widths = [sum(text_width(t) for t, _ in row) for row in tail]
        self._painted_height = len(encoded)
        return "".join(out).encode("utf-8", "replace")
