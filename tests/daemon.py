"""A real ``warpd serve`` process on a temporary Unix socket, and real client processes.

Tests get one through the ``daemon`` fixture of conftest.py. Nothing here
mocks warpd: every command runs as the user would run it (``python -m warpd``).
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Self

import msgspec

# Every timeout in the tests is a multiple of this unit; WARPD_TEST_TIMEOUT_SCALE
# stretches it on slow machines.
TIMEOUT_UNIT = float(os.environ.get("WARPD_TEST_TIMEOUT_SCALE", "1")) * 5.0


ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (\S+)")
# The receive time `warpd subscribe --output jsonl` adds as the last field of each line.
RECEIVED = re.compile(rb',"received":([0-9.]+)}$')


def wire_line(line: bytes) -> bytes:
    """A `warpd subscribe --output jsonl` line without its "received" field: the wire bytes."""
    return RECEIVED.sub(b"}", line)


def warpd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "warpd", *args]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """os.environ without systemd's and warpd's variables, with XDG dirs under ``home``."""
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_", "WARPD_", "XDG_"))
        and k not in ("JOURNAL_STREAM", "INVOCATION_ID")
    }
    env.update(
        XDG_RUNTIME_DIR=str(runtime),
        XDG_CONFIG_HOME=str(home / "config"),
        # The history file too: no test writes to the real home.
        XDG_STATE_HOME=str(home / "state"),
        PYTHONPATH=str(ROOT),
        NO_COLOR="1",
    )
    env.update(extra)
    return env


class ServeProcess:
    """A ``warpd serve ARGS`` process (or any ``command`` running it) logging to ``home/LOG``.

    Used as a context manager, it is stopped at the end and must have exited
    0 with no traceback in its log.
    """

    def __init__(
        self,
        home: Path,
        *args: str,
        env: dict[str, str],
        command: list[str] | None = None,
        log_name: str = "serve.log",
        **popen: Any,
    ) -> None:
        self.home = home
        self.env = env
        self.log_path = home / log_name
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command or warpd_command("serve", *args), stdout=self._log, stderr=self._log,
            env=env, **popen,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, count: int = 1) -> list[str]:
        """The addresses of the first ``count`` "listening on" lines, once logged."""
        deadline = time.monotonic() + 2 * TIMEOUT_UNIT
        while time.monotonic() < deadline:
            found = _LISTENING.findall(self.log())
            if len(found) >= count:
                return found[:count]
            if self.process.poll() is not None:
                raise AssertionError(f"warpd serve exited early:\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"warpd serve did not listen in time:\n{self.log()}")

    def wait_for_log(self, text: str) -> None:
        deadline = time.monotonic() + 2 * TIMEOUT_UNIT
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged in time:\n{self.log()}")
            time.sleep(0.02)

    def run(
        self,
        *args: str,
        data: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        **env: str,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``warpd ARGS`` as a client in the daemon's environment (plus ``env``)."""
        result = subprocess.run(
            warpd_command(*args), input=data, capture_output=True, env={**self.env, **env},
            timeout=timeout or 4 * TIMEOUT_UNIT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"warpd {' '.join(args)} failed: {result.stderr.decode()}")
        return result

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the daemon, wait for it, return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=4 * TIMEOUT_UNIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def finish(self) -> int:
        """Wait for a daemon that is exiting by itself; its exit status."""
        self.process.wait(timeout=4 * TIMEOUT_UNIT)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the daemon; it must exit 0 without a traceback in its log."""
        status = self.stop()
        log = self.log()
        assert "Traceback" not in log, log
        assert status == 0, f"warpd serve exited with {status}:\n{log}"


class Daemon(ServeProcess):
    """A daemon on a Unix socket in ``workdir``, with the helpers most tests need."""

    def __init__(
        self, workdir: Path, *extra: str, config: str | None = None, log_name: str = "daemon.log"
    ) -> None:
        self.workdir = workdir
        self.socket = workdir / "warpd.sock"
        self.address = f"unix:{self.socket}"
        args = ["--listen", self.address]
        if config is not None:
            config_path = workdir / "config.toml"
            config_path.write_text(config)
            args += ["--config", str(config_path)]
        # Its history file in workdir (state/warpd/history.sqlite3), never the real home's.
        env = {**os.environ, "WARPD_ADDR": self.address, "NO_COLOR": "1",
               "XDG_STATE_HOME": str(workdir / "state")}
        super().__init__(workdir, *args, *extra, env=env, log_name=log_name)
        self._wait_accepting()

    def _wait_accepting(self) -> None:
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

    def push(self, path: Path | None = None, *args: str, data: bytes | None = None,
             session: str = "default") -> subprocess.CompletedProcess[bytes]:
        extra = [str(path)] if path is not None else []
        return self.run("push", "--session", session, *args, *extra, data=data)

    def subscriber(self, *args: str) -> Subscriber:
        return Subscriber(self, *args)


class Subscriber:
    """A ``warpd subscribe`` process whose stdout lines are read as they come."""

    def __init__(self, daemon: Daemon, *args: str) -> None:
        self.process = subprocess.Popen(
            warpd_command("subscribe", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=daemon.env,
        )
        assert self.process.stdout is not None
        self.stdout: IO[bytes] = self.process.stdout
        # Each line as the daemon sent it (without the "received" field), and
        # when the subscriber received it (Unix time, from that field).
        self.lines: list[bytes] = []
        self.received: list[float] = []
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
        stamp = RECEIVED.search(line)
        assert stamp is not None, f"no receive time at the end of {line[-80:]!r}"
        self.received.append(float(stamp.group(1)))
        line = line[: stamp.start()] + b"}"
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
