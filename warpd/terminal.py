"""The I/O around the terminal renderer for ``warpd subscribe``.

:class:`PrettyOutput` owns a :class:`~warpd.render.TerminalRenderer` and the
file it writes to: it reads the terminal's size (again on SIGWINCH), gives
the renderer the time, draws the frames it holds back (repaints are capped
at ``FPS`` a second, the last state always drawn), animates the status line,
keeps the window title saying whether a stream is live, and honours NO_COLOR
and COLORTERM. When the output is not a terminal it renders plain text (no
escape sequence at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from warpd.render import TerminalRenderer
from warpd.render.code import DEFAULT_THEME
from warpd.render.notify import RESTORE_TITLE, SAVE_TITLE, title_sequence, window_title

TICK_SECONDS = 0.1
FPS = 30.0
# Used when the size cannot be read (not a terminal): wide enough for JSON.
FALLBACK_SIZE = os.terminal_size((100, 40))


def no_color_requested(flag: bool) -> bool:
    """``--no-color`` given, or NO_COLOR set to anything non-empty (no-color.org)."""
    return flag or bool(os.environ.get("NO_COLOR"))


def truecolor_supported(env: Mapping[str, str]) -> bool:
    """COLORTERM says the terminal takes 24-bit colours (``truecolor`` or ``24bit``)."""
    return env.get("COLORTERM", "").lower() in ("truecolor", "24bit")


def terminal_size(fd: int) -> os.terminal_size:
    """The size of the terminal on ``fd``, or a fallback when it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return FALLBACK_SIZE
    if size.columns <= 0 or size.lines <= 0:
        return FALLBACK_SIZE
    return size


class PrettyOutput:
    """Renders block messages to ``out`` (a terminal, or plain text for a pipe or file).

    Use as an async context manager around the subscription; call
    :meth:`write` for each message. Leaving the context draws the last
    state, removes the live tail, gives the window its title back and
    restores the SIGWINCH handler. ``sessions``: the names followed, for the
    window title; ``theme``: the Pygments style of code; ``clock`` (Unix
    time) is the renderer's: ``warpd play`` gives the recording's;
    ``end_note`` is said under a stream still live at the end.
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        no_color: bool = False,
        sessions: list[str] | None = None,
        theme: str = DEFAULT_THEME,
        clock: Callable[[], float] = time.time,
        end_note: str | None = None,
    ) -> None:
        self._out = out
        # Under a stream still live at the end (None: the subscriber's wording).
        self._end_note = end_note
        self._clock = clock
        self._fd = out.fileno()
        self.is_terminal = os.isatty(self._fd)
        size = terminal_size(self._fd)
        self.renderer = TerminalRenderer(
            size.columns,
            size.lines,
            color=not no_color,
            truecolor=truecolor_supported(os.environ),
            plain=not self.is_terminal,
            fps=FPS,
            theme=theme,
            now=self._clock(),
        )
        self._sessions = sessions or ["default"]
        self._title_live: bool | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._frame: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> PrettyOutput:
        if self.is_terminal:
            self._loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, AttributeError, ValueError):
                self._loop.add_signal_handler(signal.SIGWINCH, self._resized)
            self._ticker = asyncio.create_task(self._tick())
            self._emit(SAVE_TITLE.encode())
            self._update_title()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._frame is not None:
            self._frame.cancel()
        if self._loop is not None:
            with contextlib.suppress(NotImplementedError, AttributeError, ValueError):
                self._loop.remove_signal_handler(signal.SIGWINCH)
        self._emit(self.renderer.flush(self._clock(), force=True))
        self._emit(self.renderer.close() if self._end_note is None
                   else self.renderer.close(self._end_note))
        if self.is_terminal:
            self._emit(RESTORE_TITLE.encode())

    def write(self, message: Any, data: bytes = b"") -> None:
        """Render one message from the daemon (``data``, its raw bytes, is not needed)."""
        self._emit(self.renderer.feed(message, self._clock()))
        self._after()

    def note(self, text: str) -> None:
        """Show a line of the subscriber's own (reconnected, resume failed) in the output."""
        self._emit(self.renderer.note(text))

    def waiting(self, text: str | None) -> None:
        """Show ``text`` as the status line until the first stream (None: remove it)."""
        self._emit(self.renderer.waiting(text))

    def emit_raw(self, data: bytes) -> None:
        """Write sequences of our own (a notification) between the renderer's updates."""
        self._emit(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._out.flush()

    def _after(self) -> None:
        """Ask for the frame the renderer holds back; keep the title in step."""
        due = self.renderer.due
        if due is not None and self._frame is None and self._loop is not None:
            self._frame = self._loop.call_later(max(0.0, due - self._clock()), self._draw_frame)
        self._update_title()

    def _draw_frame(self) -> None:
        self._frame = None
        self._emit(self.renderer.flush(self._clock()))
        self._after()

    def _update_title(self) -> None:
        live = self.renderer.live
        if not self.is_terminal or live == self._title_live:
            return
        self._title_live = live
        self._emit(title_sequence(window_title(self._sessions, live=live)).encode())

    def _resized(self) -> None:
        size = terminal_size(self._fd)
        self._emit(self.renderer.resize(size.columns, size.lines))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self._emit(self.renderer.tick(self._clock()))
            self._after()
