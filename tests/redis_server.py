"""A real ``redis-server`` on a free loopback port, for the Redis broker tests.

Nothing here mocks Redis: :class:`RedisServer` runs the Debian package's
binary (tools/install-test-deps installs it) with no persistence, in a
temporary directory, and stops it after the test. Tests that need it use the
``redis_server`` fixture of conftest.py, which skips with the reason when the
binary is absent. :meth:`RedisServer.stop` and :meth:`RedisServer.start` let a
test kill Redis and bring it back on the same port (with its data gone, as a
real restart without persistence does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.daemon import TIMEOUT_UNIT

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (redis-server has no ``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process bound to 127.0.0.1 on its own port; ``url`` reaches it."""

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        assert REDIS_SERVER is not None, "redis-server is not installed"
        self.workdir = workdir
        self.password = password
        self.port = free_loopback_port()
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start (or restart, on the same port) with an empty dataset."""
        args = [
            REDIS_SERVER or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 2 * TIMEOUT_UNIT
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    reply = probe.recv(64)
                # Without the password Redis answers NOAUTH: it is up all the same.
                if reply.startswith((b"+PONG", b"-NOAUTH")):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not answer in time:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop Redis (killed by default: clients see the connection drop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=4 * TIMEOUT_UNIT)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
