"""A process whose stdout and stderr are a pseudo-terminal of a given size, read as it writes.

For what only shows on a terminal (``warpd subscribe``'s and ``warpd play``'s
rendering): feed :attr:`PtyProcess.output` to tests/vt.py's Terminal to read
the screen back.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading

from tests.daemon import TIMEOUT_UNIT


class PtyProcess:
    """``command`` on a ``width`` x ``height`` pseudo-terminal; a thread collects its output."""

    def __init__(self, command: list[str], env: dict[str, str], width: int, height: int) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            self._chunks.append(data)

    @property
    def output(self) -> bytes:
        """Everything written to the terminal so far."""
        return b"".join(self._chunks)

    def wait(self, timeout: float = 4 * TIMEOUT_UNIT) -> int:
        """Wait for the process to exit and its output to be read; its exit status."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            tail = self.output[-500:]
            raise AssertionError(f"still running after {timeout}s: {tail!r}") from None
        self._reader.join(timeout=timeout)
        os.close(self._master)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
