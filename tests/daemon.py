"""A real ``warpd serve`` process on a temporary Unix socket, and real client processes.

Tests get one through the ``daemon`` fixture of conftest.py. Nothing here
mocks warpd: every command runs as the user would run it (``python -m warpd``).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import msgspec

# Every timeout in the tests is a multiple of this unit; WARPD_TEST_TIMEOUT_SCALE
# stretches it on slow machines.
TIMEOUT_UNIT = float(os.environ.get("WARPD_TEST_TIMEOUT_SCALE", "1")) * 5.0


def warpd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "warpd", *args]


class Daemon:
    """A running daemon; :meth:`stop` sends SIGTERM and returns its exit status."""

    def __init__(self, workdir: Path, *extra: str, config: str | None = None) -> None:
        self.workdir = workdir
        self.socket = workdir / "warpd.sock"
        self.address = f"unix:{self.socket}"
        self.log_path = workdir / "daemon.log"
        self.env = {**os.environ, "WARPD_ADDR": self.address, "NO_COLOR": "1"}
        args = ["serve", "--listen", self.address]
        if config is not None:
            config_path = workdir / "config.toml"
            config_path.write_text(config)
            args += ["--config", str(config_path)]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            warpd_command(*args, *extra), stdout=self._log, stderr=self._log, env=self.env
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 2 * TIMEOUT_UNIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"warpd serve exited early:\n{self.log()}")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.socket))
                return
            except OSError:
                time.sleep(0.02)
            finally:
                probe.close()
        raise AssertionError(f"warpd serve did not listen in time:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run(self, *args: str, input: bytes | None = None, timeout: float | None = None,
            check: bool = False) -> subprocess.CompletedProcess[bytes]:
        """Run ``warpd ARGS`` against this daemon and wait for it."""
        result = subprocess.run(
            warpd_command(*args), input=input, capture_output=True, env=self.env,
            timeout=timeout or 4 * TIMEOUT_UNIT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"warpd {' '.join(args)} failed: {result.stderr.decode()}")
        return result

    def push(self, path: Path | None = None, *args: str, data: bytes | None = None,
             session: str = "default") -> subprocess.CompletedProcess[bytes]:
        extra = [str(path)] if path is not None else []
        return self.run("push", "--session", session, *args, *extra, input=data)

    def subscriber(self, *args: str) -> Subscriber:
        return Subscriber(self, *args)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the daemon; it must exit 0 without a traceback in its log."""
        status = self.stop()
        log = self.log()
        assert "Traceback" not in log, log
        assert status == 0, f"warpd serve exited with {status}:\n{log}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=4 * TIMEOUT_UNIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class Subscriber:
    """A ``warpd subscribe`` process whose stdout lines are read as they come."""

    def __init__(self, daemon: Daemon, *args: str) -> None:
        self.process = subprocess.Popen(
            warpd_command("subscribe", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=daemon.env,
        )
        assert self.process.stdout is not None
        self.stdout: IO[bytes] = self.process.stdout
        self.lines: list[bytes] = []
        self._buffer = b""
        hello = self.read_message()
        assert hello["type"] == "hello", hello

    def read_message(self, timeout: float | None = None) -> dict[str, Any]:
        """The next JSON line, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + (timeout or 2 * TIMEOUT_UNIT)
        fd = self.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError("no message from warpd subscribe in time")
            data = os.read(fd, 65536)
            if not data:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise AssertionError(f"warpd subscribe ended: {err}")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        self.lines.append(line)
        message: dict[str, Any] = msgspec.json.decode(line)
        return message

    def messages_until_final(self, count: int = 1, timeout: float | None = None
                             ) -> list[dict[str, Any]]:
        """Read until ``count`` final stream messages arrived; return everything read."""
        out = []
        finals = 0
        while finals < count:
            message = self.read_message(timeout)
            out.append(message)
            if message["type"] == "blocks" and message["complete"] and not message["streaming"]:
                finals += 1
        return out

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout=timeout or 4 * TIMEOUT_UNIT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=4 * TIMEOUT_UNIT)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
