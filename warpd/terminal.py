"""The I/O around the terminal renderer for ``warpd subscribe --output pretty``.

:class:`PrettyOutput` owns a :class:`~warpd.render.TerminalRenderer` and the
file it writes to: it reads the terminal's size (again on SIGWINCH), animates
the status line a few times a second, and honours NO_COLOR. When the output
is not a terminal it renders plain text (no escape sequence at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from warpd.render import TerminalRenderer

TICK_SECONDS = 0.1
# Used when the size cannot be read (not a terminal): wide enough for JSON.
FALLBACK_SIZE = os.terminal_size((100, 40))


def no_color_requested(flag: bool) -> bool:
    """``--no-color`` given, or NO_COLOR set to anything non-empty (no-color.org)."""
    return flag or bool(os.environ.get("NO_COLOR"))


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
    :meth:`write` for each message. Leaving the context removes the live
    tail and restores the SIGWINCH handler. ``clock`` (Unix time) is the
    renderer's: ``warpd play`` gives the recording's.
    """

    def __init__(
        self, out: BinaryIO, *, no_color: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self._out = out
        self._fd = out.fileno()
        self.is_terminal = os.isatty(self._fd)
        size = terminal_size(self._fd)
        self.renderer = TerminalRenderer(
            size.columns, size.lines, color=not no_color, plain=not self.is_terminal,
            clock=clock,
        )
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> PrettyOutput:
        if self.is_terminal:
            self._loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, AttributeError, ValueError):
                self._loop.add_signal_handler(signal.SIGWINCH, self._resized)
            self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._loop is not None:
            with contextlib.suppress(NotImplementedError, AttributeError, ValueError):
                self._loop.remove_signal_handler(signal.SIGWINCH)
        self._emit(self.renderer.close())

    def write(self, message: Any, data: bytes = b"") -> None:
        """Render one message from the daemon (``data``, its raw bytes, is not needed)."""
        self._emit(self.renderer.feed(message))

    def note(self, text: str) -> None:
        """Show a line of the subscriber's own (reconnected, resume failed) in the output."""
        self._emit(self.renderer.note(text))

    def waiting(self, text: str | None) -> None:
        """Show ``text`` as the status line until the first stream (None: remove it)."""
        self._emit(self.renderer.waiting(text))

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._out.flush()

    def _resized(self) -> None:
        size = terminal_size(self._fd)
        self._emit(self.renderer.resize(size.columns, size.lines))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self._emit(self.renderer.tick())
