"""sd_notify: datagrams a real socket of the test's receives, as systemd would."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warpd.daemon.sdnotify import SystemdNotifier, monotonic_usec


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket (short path: AF_UNIX paths are limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="wd-") as directory:
        path = str(Path(directory) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(path)
            receiver.settimeout(5)
            yield path, receiver


def fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


def test_ready_status_stopping_arrive_as_datagrams(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, receiver = notify_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("serving 0 sessions")
    assert fields(receiver.recv(4096)) == {"READY": "1", "STATUS": "serving 0 sessions"}
    assert notifier.status("2 sessions\n3 streams")
    # A newline would start a new field: it becomes a space.
    assert fields(receiver.recv(4096)) == {"STATUS": "2 sessions 3 streams"}
    assert notifier.stopping()
    assert receiver.recv(4096) == b"STOPPING=1"
    assert notifier.notify(EXTEND_TIMEOUT_USEC=5_000_000)
    assert receiver.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000"


def test_reloading_carries_monotonic_usec(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    notifier = SystemdNotifier(path)
    # time.monotonic is CLOCK_MONOTONIC on Linux, the clock systemd compares with.
    before = time.monotonic_ns() // 1000
    assert notifier.reloading("reloading config")
    after = time.monotonic_ns() // 1000
    message = fields(receiver.recv(4096))
    assert message["RELOADING"] == "1"
    assert message["STATUS"] == "reloading config"
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    assert before <= monotonic_usec()


def test_abstract_socket_address() -> None:
    name = f"warpd-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert receiver.recv(4096) == b"READY=1"


def test_environment_is_removed_so_children_cannot_notify() -> None:
    environ = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1", "A": "b"}
    SystemdNotifier.from_environment(environ)
    assert environ == {"A": "b"}
    kept = {"NOTIFY_SOCKET": "/run/x"}
    SystemdNotifier.from_environment(kept, unset=False)
    assert kept == {"NOTIFY_SOCKET": "/run/x"}


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert not notifier.ready()
    assert not notifier.reloading()
    assert not notifier.watchdog()
    # Unsupported address kinds (vsock:) are treated as absent.
    assert not SystemdNotifier("vsock:2:1234").enabled


def test_undeliverable_notification_returns_false() -> None:
    with tempfile.TemporaryDirectory(prefix="wd-") as directory:
        notifier = SystemdNotifier(str(Path(directory) / "gone"))
        assert notifier.enabled
        assert notifier.ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, receiver = notify_socket
    notifier = SystemdNotifier.from_environment(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.watchdog_interval == 1.5
    assert notifier.watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    "environ",
    [
        {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"},  # meant for another process
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "soon"},
        {},
    ],
)
def test_watchdog_disabled(environ: dict[str, str]) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "/run/x", **environ})
    assert notifier.watchdog_interval is None
    assert not notifier.watchdog()
