"""``warpd serve`` as systemd runs it: socket activation, sd_notify, SIGHUP reload, watchdog.

The service manager's side is played by real tools and sockets:
systemd-socket-activate passes the listening socket, and NOTIFY_SOCKET points
at a datagram socket of the test's.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon import TIMEOUT_UNIT, ServeProcess, clean_env, warpd_command


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate not installed (Debian: apt-get install systemd)",
)
def test_socket_activated_daemon_serves_push_and_subscribe(short_tmp: Path) -> None:
    path = short_tmp / "activated.sock"
    env = clean_env(short_tmp)
    command = [
        "systemd-socket-activate",
        "-l",
        str(path),
        "--fdname=warpd.socket",
        *(f"-E{name}" for name in ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "PYTHONPATH")),
        *warpd_command("serve"),
    ]
    daemon = ServeProcess(short_tmp, env=env, command=command)
    address = f"unix:{path}"
    try:
        # The socket exists before warpd runs; the first connection starts it.
        deadline = time.monotonic() + 2 * TIMEOUT_UNIT
        while not path.exists():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.02)
        subscriber = subprocess.Popen(
            warpd_command("subscribe", "--connect", address, "--once"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert subscriber.stdout is not None
        assert json.loads(subscriber.stdout.readline())["type"] == "hello"
        pushed = daemon.run("push", "--connect", address, "--format", "text", data=b"activated\n")
        assert pushed.returncode == 0, pushed.stderr
        out, err = subscriber.communicate(timeout=4 * TIMEOUT_UNIT)
        final = json.loads(out.splitlines()[-1])
        assert final["complete"] and final["blocks"][0]["text"] == "activated\n", err
        # The daemon took systemd's socket instead of binding the default one.
        assert f"listening on {address} (socket activation: warpd.socket)" in daemon.log()
        assert not (short_tmp / "runtime" / "warpd" / "warpd.sock").exists()
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log()
    assert "Traceback" not in daemon.log()
    # The socket belongs to systemd: warpd leaves it in place for the next activation.
    assert path.exists()


class NotifyReceiver:
    """The service manager's end of NOTIFY_SOCKET: a datagram socket collecting messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.received: list[tuple[float, dict[str, str]]] = []

    def next(self, timeout: float = 2 * TIMEOUT_UNIT) -> dict[str, str]:
        self.socket.settimeout(timeout)
        data = self.socket.recv(4096)
        message = dict(line.split("=", 1) for line in data.decode().split("\n"))
        self.received.append((time.monotonic(), message))
        return message

    def wait_for(
        self, matches: Callable[[dict[str, str]], bool], timeout: float = 2 * TIMEOUT_UNIT
    ) -> dict[str, str]:
        """The next message that ``matches``, skipping others (STATUS updates, pings)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching notification; got {self.received}"
            message = self.next(remaining)
            if matches(message):
                return message

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def notify(short_tmp: Path) -> Iterator[NotifyReceiver]:
    receiver = NotifyReceiver(short_tmp / "notify")
    yield receiver
    receiver.close()


def test_notify_ready_status_reload_stopping(short_tmp: Path, notify: NotifyReceiver) -> None:
    config = short_tmp / "config.toml"
    config.write_text("[limits]\nmax_sessions = 10\n")
    env = clean_env(short_tmp, NOTIFY_SOCKET=str(notify.path))
    address = f"unix:{short_tmp}/w.sock"
    daemon = ServeProcess(short_tmp, "--config", str(config), "--listen", address, env=env)
    try:
        ready = notify.wait_for(lambda m: "READY" in m)
        assert ready == {
            "READY": "1",
            "STATUS": "0 sessions, 0 live streams, 0 producers, 0 subscribers",
        }
        # STATUS follows what the daemon is doing.
        subscriber = subprocess.Popen(
            warpd_command("subscribe", "--connect", address),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            status = notify.wait_for(lambda m: "STATUS" in m)
            assert status == {"STATUS": "1 session, 0 live streams, 0 producers, 1 subscriber"}
        finally:
            subscriber.terminate()
            subscriber.communicate(timeout=4 * TIMEOUT_UNIT)

        # SIGHUP: RELOADING=1 with the monotonic time, then READY=1 with the new config.
        config.write_text("[limits]\nmax_sessions = 20\n")
        before = time.monotonic_ns() // 1000
        daemon.process.send_signal(signal.SIGHUP)
        reloading = notify.wait_for(lambda m: "RELOADING" in m)
        assert reloading["RELOADING"] == "1"
        assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
        assert "READY" in notify.wait_for(lambda m: "READY" in m)
        daemon.wait_for_log("reloaded the configuration from")

        # A bad config is reported, the old one kept, and the daemon stays ready.
        config.write_text("[limits]\nmax_sesions = 30\n")
        daemon.process.send_signal(signal.SIGHUP)
        assert notify.wait_for(lambda m: "RELOADING" in m)["RELOADING"] == "1"
        after_bad = notify.wait_for(lambda m: "READY" in m)
        assert after_bad["STATUS"].startswith("reload failed, old configuration kept:")
        assert "max_sesions" in after_bad["STATUS"]
        daemon.wait_for_log("reload failed, keeping the current configuration")
        assert daemon.run("status", "--connect", address).returncode == 0

        daemon.process.send_signal(signal.SIGTERM)
        assert notify.wait_for(lambda m: "STOPPING" in m)["STOPPING"] == "1"
        # Already stopping: a second SIGTERM would mean "exit now".
        status_code = daemon.finish()
    finally:
        if daemon.process.poll() is None:
            daemon.stop()
    assert status_code == 0, daemon.log()
    assert "Traceback" not in daemon.log()


def test_watchdog_pings_at_half_the_interval(short_tmp: Path, notify: NotifyReceiver) -> None:
    watchdog_usec = 1_000_000
    env = clean_env(short_tmp, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC=str(watchdog_usec))
    daemon = ServeProcess(short_tmp, "--listen", f"unix:{short_tmp}/w.sock", env=env)
    try:
        notify.wait_for(lambda m: "READY" in m)
        pings = []
        while len(pings) < 5:
            notify.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=watchdog_usec / 1e6)
            pings.append(notify.received[-1][0])
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log()
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:], strict=False)]
    # Every ping within the timeout systemd would enforce, at about half of it.
    assert max(gaps) < watchdog_usec / 1e6, gaps
    assert sum(gaps) / len(gaps) == pytest.approx(watchdog_usec / 2e6, rel=0.3)


def test_no_watchdog_for_another_process(short_tmp: Path, notify: NotifyReceiver) -> None:
    env = clean_env(
        short_tmp, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="200000", WATCHDOG_PID="1"
    )
    daemon = ServeProcess(short_tmp, "--listen", f"unix:{short_tmp}/w.sock", env=env)
    try:
        notify.wait_for(lambda m: "READY" in m)
        time.sleep(0.5)
    finally:
        daemon.stop()
    notify.socket.setblocking(False)
    while True:
        try:
            notify.received.append((0.0, {"raw": notify.socket.recv(4096).decode()}))
        except BlockingIOError:
            break
    assert not any("WATCHDOG" in str(message) for _, message in notify.received)
