"""Reading a stream from a file or stdin, chunk by chunk as it arrives (push, convert)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from warpd.errors import UserError

__all__ = ["READ_SIZE", "InputPump", "open_input", "read_chunks"]

READ_SIZE = 64 * 1024


def open_input(path: Path | None) -> BinaryIO:
    """``path`` opened for reading, or stdin (saying so when it is a terminal)."""
    if path is None:
        if sys.stdin.isatty():
            print("warpd: reading the stream from stdin (end it with Ctrl-D)", file=sys.stderr)
        return sys.stdin.buffer
    try:
        return path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


def read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Chunks as they arrive (a `curl -N` pipe shows up live), until EOF."""
    fd = stream.fileno()
    while chunk := os.read(fd, READ_SIZE):
        yield chunk


class InputPump:
    """Reads a file descriptor in a daemon thread and hands the chunks to the event loop.

    A daemon thread rather than the loop's executor: a read blocked on a
    silent pipe (a `curl -N` that waits) must not keep us from exiting once
    the daemon has answered. :meth:`read` returns b"" at the end of input.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        threading.Thread(target=self._run, daemon=True, name="warpd-input").start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, READ_SIZE)
            except OSError:
                chunk = b""
            try:
                self._loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)
            except RuntimeError:  # the loop is gone: we are exiting
                return
            if not chunk:
                return

    async def read(self) -> bytes:
        return await self._chunks.get()
