"""Helpers for the delivery tests and the soak script: big synthetic streams,
subscribers that write to files, raw WebSocket subscribers, daemon figures.

Everything runs real processes or real sockets; nothing here mocks warpd.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed

from tests.daemon import TIMEOUT_UNIT, Daemon, warpd_command, wire_line

_HEAD = {"id": "chatcmpl-big", "object": "chat.completion.chunk", "model": "gpt-big"}


def chat_event(**delta: Any) -> bytes:
    """One OpenAI chat-completions SSE event carrying ``delta``."""
    choice = {"index": 0, "delta": delta, "finish_reason": delta.pop("finish", None)}
    return f"data: {json.dumps({**_HEAD, 'choices': [choice]})}\n\n".encode()


def chat_pieces(count: int, size: int = 4000, start: int = 0) -> Iterator[bytes]:
    """``count`` content events of ``size`` characters each (some non-ASCII), numbered."""
    filler = "lorem ipsum é ✓ " * (size // 16 + 1)
    for i in range(start, start + count):
        yield chat_event(content=(f"[{i:06d}] " + filler)[:size])


CHAT_START = chat_event(role="assistant", content="")
CHAT_END = chat_event(finish="stop") + b"data: [DONE]\n\n"


def big_chat_stream(total_chars: int, size: int = 4000) -> bytes:
    """A synthetic OpenAI chat stream whose text is ``total_chars`` long."""
    return CHAT_START + b"".join(chat_pieces(total_chars // size, size)) + CHAT_END


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in KiB."""
    return _status_field(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    return _status_field(pid, "VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def status(daemon: Daemon) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(daemon.run("status", "--json", check=True).stdout)
    return raw


def subscriber_rows(daemon: Daemon) -> list[dict[str, Any]]:
    """Every subscriber row of ``warpd status``, once per subscriber."""
    rows = {s["id"]: s for row in status(daemon)["sessions"] for s in row["subscribers"]}
    return list(rows.values())


def wait_for(predicate: Any, what: str, timeout: float = 2 * TIMEOUT_UNIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_subscribers(daemon: Daemon, count: int) -> None:
    wait_for(lambda: len(subscriber_rows(daemon)) == count, f"{count} subscribers")


def is_final(message: dict[str, Any]) -> bool:
    return message["type"] == "blocks" and message["complete"] and not message["streaming"]


class FileSubscriber:
    """A ``warpd subscribe`` process writing its JSON lines to a file (it never blocks on us)."""

    def __init__(self, daemon: Daemon, path: Path, *args: str) -> None:
        self.path = path
        self._out = path.open("wb")
        self._err_path = path.with_suffix(".err")
        self._err = self._err_path.open("wb")
        self.process = subprocess.Popen(
            warpd_command("subscribe", *args), stdout=self._out, stderr=self._err, env=daemon.env
        )

    def last_line(self) -> bytes:
        """The last complete line written so far, as the daemon sent it (b"" if none)."""
        with self.path.open("rb") as f:
            data = f.read()
        if not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
        return wire_line(data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]) if data else b""

    def has_final(self, count: int = 1) -> bool:
        if count == 1:
            return _looks_final(self.last_line())
        return sum(1 for m in self.messages() if is_final(m)) >= count

    def wait_final(self, count: int = 1, timeout: float = 4 * TIMEOUT_UNIT) -> None:
        wait_for(lambda: self.has_final(count), f"a final message in {self.path.name}", timeout)

    def wire_lines(self) -> list[bytes]:
        """Every complete line, as the daemon sent it (without "received")."""
        return [wire_line(line) for line in self.path.read_bytes().split(b"\n")[:-1]]

    def messages(self) -> list[dict[str, Any]]:
        data = self.path.read_bytes()
        return [msgspec.json.decode(wire_line(line)) for line in data.split(b"\n")[:-1]]

    def stderr(self) -> str:
        return self._err_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=2 * TIMEOUT_UNIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        self._err.close()


def _looks_final(line: bytes) -> bool:
    head = line[:300]
    return b'"type":"blocks"' in head and b'"streaming":false,"complete":true' in head


class PipedPush:
    """A ``warpd push`` reading from a pipe the test writes to, a piece at a time."""

    def __init__(self, daemon: Daemon, *args: str) -> None:
        self.process = subprocess.Popen(
            warpd_command("push", *args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=daemon.env,
        )

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def finish(self, timeout: float = 4 * TIMEOUT_UNIT) -> tuple[int, str]:
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err.decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


async def raw_subscribe(daemon: Daemon, query: str = "session=default") -> ClientConnection:
    """A WebSocket subscription opened directly, to see close codes and exact frames."""
    return await unix_connect(
        str(daemon.socket), uri=f"ws://localhost/subscribe?{query}", max_size=None
    )


async def read_until(
    ws: ClientConnection, stop: Any, timeout: float = 2 * TIMEOUT_UNIT
) -> list[dict[str, Any]]:
    """Messages until ``stop(message)`` is true (that one included) or the connection closes."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                message: dict[str, Any] = msgspec.json.decode(await ws.recv(decode=False))
                out.append(message)
                if stop(message):
                    return out
        except ConnectionClosed:
            return out
