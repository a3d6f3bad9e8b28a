"""A ``warpd serve`` process with an environment of the test's choosing (systemd, TCP tests).

Unlike :class:`tests.daemon.Daemon`, it starts from a clean environment (its
own XDG_RUNTIME_DIR and XDG_CONFIG_HOME, so no real user's token or config is
touched) and waits for the daemon's "listening on" log lines, which carry the
real port of a ``ws://127.0.0.1:0`` listener.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon import TIMEOUT_UNIT

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (\S+)")


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
        PYTHONPATH=str(ROOT),
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def warpd(*args: str) -> list[str]:
    return [sys.executable, "-m", "warpd", *args]


class ServeProcess:
    """``warpd serve ARGS`` (or any command running it) logging to ``home/serve.log``."""

    def __init__(
        self, home: Path, *args: str, env: dict[str, str], command: list[str] | None = None
    ) -> None:
        self.home = home
        self.env = env
        self.log_path = home / "serve.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command or warpd("serve", *args), stdout=self._log, stderr=self._log, env=env
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
        self, *args: str, data: bytes | None = None, **env: str
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``warpd ARGS`` as a client in the same environment (plus ``env``)."""
        return subprocess.run(
            warpd(*args),
            input=data,
            capture_output=True,
            env={**self.env, **env},
            timeout=4 * TIMEOUT_UNIT,
        )

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

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        status = self.stop()
        log = self.log()
        assert "Traceback" not in log, log
        assert status == 0, f"warpd serve exited with {status}:\n{log}"
