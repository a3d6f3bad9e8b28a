"""The daemon's listeners: who owns the socket file, and what a non-WebSocket request gets.

Real ``warpd serve`` processes on temporary Unix sockets.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.daemon import TIMEOUT_UNIT, Daemon
from tests.delivery import FileSubscriber, wait_for, wait_for_subscribers


def daemon_pid(daemon: Daemon) -> int:
    result = daemon.run("status", "--json", check=True)
    pid: int = json.loads(result.stdout)["pid"]
    return pid


def test_an_old_daemon_leaving_does_not_remove_the_new_daemons_socket(short_tmp: Path) -> None:
    # The old daemon's graceful shutdown is held by a stopped subscriber
    # (it waits shutdown_timeout for it) while a new daemon takes the path.
    config = f"[limits]\nshutdown_timeout = {TIMEOUT_UNIT}\n"
    old = Daemon(short_tmp, config=config, log_name="old.log")
    stuck = FileSubscriber(old, short_tmp / "stuck.jsonl")
    new: Daemon | None = None
    try:
        wait_for_subscribers(old, 1)
        stuck.signal(signal.SIGSTOP)
        old.process.send_signal(signal.SIGTERM)
        old.wait_for_log("shutting down")
        new = Daemon(short_tmp, log_name="new.log")
        assert daemon_pid(new) == new.process.pid
        assert old.process.poll() is None, "the old daemon should still be shutting down"
        assert old.finish() == 0
        assert "dropping them" in old.log()
        # The old one is gone; the path is still the new daemon's.
        assert new.socket.exists()
        assert daemon_pid(new) == new.process.pid
    finally:
        stuck.close()
        old.stop()
        if new is not None:
            new.stop()
    assert new is not None
    log = new.log()
    assert "Traceback" not in log and "Traceback" not in old.log(), log


def test_a_deleted_socket_file_is_created_again(short_tmp: Path) -> None:
    with Daemon(short_tmp) as daemon:
        first = daemon.socket.lstat().st_ino
        daemon.socket.unlink()
        wait_for(daemon.socket.exists, "the socket file to be created again", 2 * TIMEOUT_UNIT)
        assert daemon.socket.lstat().st_ino != first
        assert daemon_pid(daemon) == daemon.process.pid
        assert daemon.push(None, "--format", "text", data=b"still here\n").returncode == 0
        daemon.wait_for_log("was deleted: creating it again")
    # Stopping removes the file, which is ours again.
    assert not daemon.socket.exists()


def test_a_replaced_socket_file_is_left_to_its_owner(short_tmp: Path) -> None:
    with Daemon(short_tmp) as daemon:
        # Someone else's file takes the path in one step (as a new daemon's would).
        other = short_tmp / "other"
        other.write_text("not warpd's\n")
        os.replace(other, daemon.socket)
        daemon.wait_for_log("was replaced by another socket")
    # Neither re-created over nor removed at exit.
    assert daemon.socket.read_text() == "not warpd's\n"
