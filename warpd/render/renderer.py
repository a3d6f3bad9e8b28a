"""TerminalRenderer: block messages in, terminal bytes out.

The screen is split in two. Above is committed output: rows written once,
each followed by a newline, never touched again, so the terminal's scrollback
is always right. Below is the live tail: the unfinished row(s) of every block
still growing and a status line per live stream, at most a few rows and
never more than the screen. Each repaint erases the tail (row by row, going
up), writes any newly committed rows, and paints the tail again, all inside
one synchronized update (DEC mode 2026) so terminals that support it never
show the intermediate state.

Repaints are capped at ``fps`` a second: messages arriving faster update the
renderer's state, and the next frame draws the last state (the caller asks
for it at :attr:`TerminalRenderer.due`). A fast stream thus costs a frame's
bytes per frame, not per delta.

Several streams (of one or several sessions) are shown one at a time, each
whole: the stream that started first owns the committed area until it ends;
streams that started later keep their rows (and show a "waiting" status line)
until their turn. Within a stream, blocks are committed in order the same
way, and the tail shows every block that grows meanwhile.

Work per message is proportional to the message (plus the tail, a constant
per frame): nothing committed is ever rendered again. The renderer reads no
clock: every call that needs the time is given it (Unix seconds).
"""

from __future__ import annotations

from collections import OrderedDict

from warpd.protocol import ErrorMessage, HelloMessage, StreamMessage
from warpd.render.code import DEFAULT_THEME
from warpd.render.streams import StreamView
from warpd.render.style import BOLD, GREY, ITALIC, RED, Mode, Row, Style, encode_row
from warpd.render.untrusted import neutralise
from warpd.render.views import LABEL, Section, clip_row
from warpd.render.wrap import Layout, cut_left, row_width, split_row

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
    line), :meth:`flush` when :attr:`due` says a frame is waiting, and
    :meth:`close` last. Methods return ``b""`` when there is nothing to write
    yet. ``now`` is Unix time in seconds (message ``created`` stamps are Unix
    times).

    ``color=False`` is NO_COLOR: attributes and the live tail, no colours;
    ``truecolor`` sends code colours as 24-bit RGB rather than the nearest
    of 256. ``plain=True`` is for output that is not a terminal: no escape
    sequence at all and no live tail, only committed rows, written at once.
    ``sync=False`` leaves out the synchronized-update brackets. ``fps`` caps
    repaints a second (``0``: every change is drawn at once); ``max_tail``
    bounds the tail's rows; ``theme`` is the Pygments style of code. Rows
    fit terminals of 8 columns and more; narrower ones may see rows wrap.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        color: bool = True,
        truecolor: bool = False,
        plain: bool = False,
        sync: bool = True,
        fps: float = 30.0,
        max_tail: int = 8,
        theme: str = DEFAULT_THEME,
        now: float = 0.0,
    ) -> None:
        if plain:
            self.mode = Mode.PLAIN
        elif not color:
            self.mode = Mode.MONO
        else:
            self.mode = Mode.TRUECOLOR if truecolor else Mode.COLOR
        self._layout = Layout(max(1, width))
        self._height = max(1, height)
        self._sync = sync and not plain
        # Plain output has no tail to repaint: its rows are written at once.
        self._interval = 1.0 / fps if fps > 0 and not plain else 0.0
        self._max_tail = max(1, max_tail)
        self._theme = theme
        self._streams: dict[str, StreamView] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._pending: list[str] = []
        self._dirty = False
        self._next_frame = float("-inf")
        self._painted: list[str] = []
        self._painted_widths: list[int] = []
        self._painted_height = 0
        self._now = now
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

    @property
    def due(self) -> float | None:
        """When (Unix time) to call :meth:`flush` to draw what changed; ``None``: nothing waits."""
        return self._next_frame if self._dirty and not self._closed else None

    def feed(self, message: object, now: float) -> bytes:
        """Render one message from the daemon; other message types are ignored."""
        if self._closed:
            return b""
        self._now = now
        if isinstance(message, StreamMessage):
            self._waiting = None
            stream = message.stream
            if stream in self._finished:
                return b""
            view = self._streams.get(stream)
            if view is None:
                view = StreamView(message, self._layout, self.mode, now, self._theme)
                self._streams[stream] = view
            view.apply(message, now)
        elif isinstance(message, ErrorMessage):
            text = "warpd: " + neutralise(message.message)
            self._commit([encode_row([(text, Style(BOLD, RED))], self.mode)])
        elif isinstance(message, HelloMessage):
            if self._epoch is not None and (
                message.epoch != self._epoch or message.resume_failed
            ):
                # What was live before the reconnection will never complete
                # here, and a restarted daemon numbers its streams afresh.
                self._commit(self._abandon("(interrupted: the connection to warpd was lost)"))
                self._finished.clear()
            self._epoch = message.epoch
            if message.resume_failed:
                text = "warpd: cannot resume: " + neutralise(message.resume_failed)
                self._commit([encode_row([(text, Style(ITALIC, GREY))], self.mode)])
        else:
            return b""
        self._commit([])
        return self.flush(now)

    def note(self, text: str) -> bytes:
        """Commit a line of the subscriber's own (e.g. "reconnected"), between streams' rows.

        Print such lines through here rather than straight to the terminal:
        a line written under the live tail would be erased or overwritten.
        It is drawn at once, with whatever waited for the next frame.
        """
        if self._closed:
            return b""
        self._commit([encode_row([(neutralise(text), Style(ITALIC, GREY))], self.mode)])
        return self._paint()

    def waiting(self, text: str | None) -> bytes:
        """Show ``text`` as the status line until a stream arrives (None: remove it).

        For the subscriber's "waiting for streams" line: it is part of the live
        tail, never committed, and the first stream message replaces it.
        """
        if self._closed:
            return b""
        self._waiting = text
        self._dirty = True
        return self._paint()

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
        return self._paint()

    def tick(self, now: float) -> bytes:
        """Advance the status line's spinner and times (drawn when a frame is due)."""
        if self._closed or self.mode is Mode.PLAIN or not self._streams:
            return b""
        self._now = now
        self._frame += 1
        self._dirty = True
        return self.flush(now)

    def flush(self, now: float, *, force: bool = False) -> bytes:
        """Draw what changed if a frame is due at ``now`` (or ``force``); else ``b""``."""
        if self._closed or not self._dirty:
            return b""
        if not force and self._interval and now < self._next_frame:
            return b""
        self._now = max(self._now, now)
        self._next_frame = now + self._interval
        return self._paint()

    def close(self, note: str = "(still streaming when the subscriber stopped)") -> bytes:
        """Finish: commit what unfinished streams have shown, with ``note``; remove the tail."""
        if self._closed:
            return b""
        self._commit(self._abandon(note))
        out = self._paint(tail=False)
        self._closed = True
        return out

    def _abandon(self, note: str) -> list[str]:
        committed: list[str] = []
        for view in self._streams.values():
            committed.extend(view.abandon(note))
        self._streams.clear()
        return committed

    # -- painting -----------------------------------------------------------

    def _commit(self, rows: list[str]) -> None:
        """Queue ``rows``, then what the stream on screen (and those after it) can commit."""
        pending = self._pending
        pending.extend(rows)
        streams = self._streams
        while streams:
            stream, view = next(iter(streams.items()))
            pending.extend(view.drain())
            if not view.done:
                break
            del streams[stream]
            self._finished[stream] = None
            if len(self._finished) > _FINISHED_MEMORY:
                self._finished.popitem(last=False)
        self._dirty = True

    def _tail(self) -> list[Row]:
        if self.mode is Mode.PLAIN:
            return []
        width = self._layout.width
        if not self._streams:
            if self._waiting is None:
                return []
            return [clip_row([(neutralise(self._waiting), Style(ITALIC, GREY))], width)]
        limit = max(1, min(self._max_tail, self._height - 1))
        views = list(self._streams.values())
        status: list[Row] = [
            clip_row(view.status(self._now, self._frame, on_screen=i == 0), width)
            for i, view in enumerate(views[:_STATUS_ROWS])
        ]
        if len(views) > _STATUS_ROWS:
            more = f"  … {len(views) - _STATUS_ROWS} more streams waiting"
            status.append(clip_row([(more, Style(ITALIC, GREY))], width))
        status = status[:limit]
        on_screen = views[0]
        content = fit_sections(
            on_screen.sections(), limit - len(status), width, lead=on_screen.lead()
        )
        return content + status

    def _paint(self, *, tail: bool = True) -> bytes:
        committed, self._pending = self._pending, []
        self._dirty = False
        if self.mode is Mode.PLAIN:
            return "".join(row + "\n" for row in committed).encode("utf-8", "replace")
        rows = self._tail() if tail else []
        encoded = [encode_row(row, self.mode) for row in rows]
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
        self._painted_widths = [row_width(row) for row in rows]
        self._painted_height = len(encoded)
        return "".join(out).encode("utf-8", "replace")


def fit_sections(
    sections: list[Section], budget: int, width: int, *, lead: list[Row] | None = None
) -> list[Row]:
    """The tail rows showing ``sections`` in at most ``budget`` rows of ``width`` cells.

    Each section keeps its head row (a tool call's name) and as many of its
    last rows as its share allows; shares go round the sections from the
    newest, so every growing block stays in view. ``lead`` rows (a stream's
    header) come first, in the rows left over. Rows wider than the terminal
    are cut into screen rows here (the tail is erased by counting rows, so
    it never leaves wrapping to the terminal) and, when one does not fit,
    only its end is shown.
    """
    if budget <= 0:
        return []
    if not sections:
        return [clip_row(row, width) for row in (lead or [])[:budget]]
    out: list[Row] = []
    if len(sections) > budget:
        hidden = len(sections) - budget + 1
        out.append(clip_row([(f"… {hidden} more growing above", LABEL)], width))
        sections = sections[hidden:]
        budget -= 1
    # A row taller than the whole tail could only show its end: cut it first.
    sections = [
        (head, [row if row_width(row) <= budget * width else cut_left(row, budget * width)
                for row in rows])
        for head, rows in sections
    ]
    screens: list[list[list[Row]]] = [
        [split_row(row, width) for row in rows] for _, rows in sections
    ]
    needs = [
        (1 if head is not None else 0) + sum(len(s) for s in screen)
        for (head, _), screen in zip(sections, screens, strict=True)
    ]
    shares = [0] * len(sections)
    left = budget
    while left:
        given = False
        for i in reversed(range(len(sections))):
            if left and shares[i] < needs[i]:
                shares[i] += 1
                left -= 1
                given = True
        if not given:
            break
    if lead and left:
        out.extend(clip_row(row, width) for row in lead[:left])
    for (head, rows), screen, share in zip(sections, screens, shares, strict=True):
        if head is not None and share:
            out.append(clip_row(head, width))
            share -= 1
        shown: list[Row] = []
        for row, pieces in zip(reversed(rows), reversed(screen), strict=True):
            room = share - len(shown)
            if room <= 0:
                break
            if len(pieces) > room:
                pieces = split_row(cut_left(row, room * width), width)[-room:]
            shown[:0] = pieces
        out.extend(shown)
    return out
