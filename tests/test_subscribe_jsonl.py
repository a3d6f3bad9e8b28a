"""``warpd subscribe --output jsonl|sse`` on a terminal: nothing in the JSON acts on it.

A real daemon, a real ``warpd subscribe`` whose stdout is a pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import msgspec
import pytest

from tests.daemon import TIMEOUT_UNIT, Daemon, warpd_command
from warpd.controls import UNSAFE

# Bidi embeddings, overrides, isolates and marks, the separators, DEL, C1, ESC.
UNTRUSTED = (
    "plain \u202aemb\u202c \u202eevil\u202c \u2066iso\u2069 \u200emark\u200f \u061calm "
    "line\u2028sep\u2029 del\x7f c1\x85\x9b esc\x1b[2J"
)


def read_pty(fd: int, until: bytes, deadline: float) -> bytes:
    """Read the terminal side until ``until`` shows up or it closes."""
    data = b""
    while until not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{until!r} not seen in time: {data!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the subscriber exited and closed the terminal
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("output", ["jsonl", "sse"])
def test_untrusted_text_is_escaped_on_a_terminal(daemon: Daemon, output: str) -> None:
    master, slave = pty.openpty()
    process = subprocess.Popen(
        warpd_command("subscribe", "--output", output, "--once"),
        stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env=daemon.env,
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + 4 * TIMEOUT_UNIT
        shown = read_pty(master, b"hello", deadline)
        result = daemon.push(None, "--format", "text", data=UNTRUSTED.encode() + b"\n")
        assert result.returncode == 0, result.stderr
        shown += read_pty(master, b'"streaming":false', deadline)
        assert process.wait(timeout=2 * TIMEOUT_UNIT) == 0
        shown += read_pty(master, b"\x00never", time.monotonic() + 0.5 * TIMEOUT_UNIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        assert process.stderr is not None
        process.stderr.close()
    text = shown.decode("utf-8")
    assert UNSAFE.search(text.replace("\r\n", "").replace("\n", "")) is None, ascii(text)
    assert "\\u202e" in text and "\\u2028" in text and "\\u007f" in text and "\\u0085" in text
    # The JSON still says the same: the final's text is what was pushed.
    data_lines = [
        line.removeprefix("data: ") for line in text.replace("\r\n", "\n").split("\n")
        if line.startswith(("{", "data: {"))
    ]
    final = msgspec.json.decode(data_lines[-1])
    assert final["complete"] and not final["streaming"]
    assert UNTRUSTED in "".join(block.get("text", "") for block in final["blocks"])
