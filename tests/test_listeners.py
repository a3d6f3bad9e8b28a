"""The daemon's listeners: who owns the socket file, and what a non-WebSocket request gets.

Real ``warpd serve`` processes on temporary Unix sockets.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, TIMEOUT_UNIT, Daemon, ServeProcess, clean_env
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
        # Someone else's socket takes the path in one step (as a new daemon's would).
        other = short_tmp / "other"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as theirs:
            theirs.bind(str(other))
            inode = other.lstat().st_ino
            os.replace(other, daemon.socket)
            daemon.wait_for_log("was replaced by another socket")
    # Neither re-created over nor removed at exit.
    assert daemon.socket.lstat().st_ino == inode


def test_a_socket_whose_directory_is_gone_is_said_once_and_bound_when_it_is_back(
    short_tmp: Path,
) -> None:
    directory = short_tmp / "sockets"
    directory.mkdir()
    path = directory / "w.sock"
    with ServeProcess(short_tmp, "--listen", f"unix:{path}",
                      env=clean_env(short_tmp)) as daemon:
        daemon.wait_listening()
        path.unlink()
        (directory / "w.sock.pid").unlink()
        directory.rmdir()
        daemon.wait_for_log("cannot create")
        # Three more checks (one every 2 s) find it still gone: nothing more is said.
        time.sleep(3 * 2.0 + 0.5)
        assert daemon.log().count("cannot create") == 1, daemon.log()
        assert daemon.log().count("was deleted") == 1, daemon.log()
        directory.mkdir()
        wait_for(path.exists, "the socket file to be created again", 2 * TIMEOUT_UNIT)
        result = subprocess.run(
            [sys.executable, "-m", "warpd", "status", "--json", "--connect", f"unix:{path}"],
            capture_output=True, env=clean_env(short_tmp), cwd=ROOT, timeout=4 * TIMEOUT_UNIT,
        )
        assert json.loads(result.stdout)["pid"] == daemon.process.pid


def test_a_socket_replaced_by_a_file_is_said_to_be_so(short_tmp: Path) -> None:
    with Daemon(short_tmp) as daemon:
        other = short_tmp / "other"
        other.write_text("not a socket\n")
        os.replace(other, daemon.socket)
        daemon.wait_for_log("was replaced by something that is not a socket")
    assert daemon.socket.read_text() == "not a socket\n"


# What each racer runs: the daemon's modules imported first, then `warpd serve`
# at the instant given, so that the racers bind within a millisecond or two.
RACER = """
import sys, time
import warpd.cli.serve
from warpd.cli.main import main
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
sys.exit(main(sys.argv[2:]))
"""


def test_daemons_started_at_the_same_instant_one_serves_and_the_others_name_it(
    short_tmp: Path,
) -> None:
    path = short_tmp / "w.sock"
    for race in range(3):
        # The stale socket file a SIGKILLed daemon leaves: each racer may remove it.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()
        start = time.time() + 0.4 * TIMEOUT_UNIT
        racers = []
        for n in range(3):
            home = short_tmp / f"race{race}-{n}"  # its own history file
            home.mkdir()
            racers.append(subprocess.Popen(
                [sys.executable, "-c", RACER, str(start), "serve", "--listen", f"unix:{path}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                env=clean_env(home),
            ))
        deadline = time.monotonic() + 4 * TIMEOUT_UNIT
        while sum(r.poll() is None for r in racers) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        serving = [r for r in racers if r.poll() is None]
        try:
            assert len(serving) == 1, f"{len(serving)} daemons serve at once"
            winner = serving[0]
            for racer in racers:
                if racer is not winner:
                    assert racer.stderr is not None
                    err = racer.stderr.read().decode()
                    assert racer.returncode == 1, err
                    assert f"another warpd (pid {winner.pid}) is already serving" in err, err
            status = subprocess.run(
                [sys.executable, "-m", "warpd", "status", "--json", "--connect", f"unix:{path}"],
                capture_output=True, env=clean_env(short_tmp), cwd=ROOT, timeout=4 * TIMEOUT_UNIT,
            )
            assert json.loads(status.stdout)["pid"] == winner.pid
        finally:
            for racer in serving:
                racer.send_signal(signal.SIGTERM)
            for racer in racers:
                racer.wait(timeout=4 * TIMEOUT_UNIT)
                assert racer.stderr is not None
                racer.stderr.close()
        assert winner.returncode == 0
        assert not path.exists()


# -- requests that are not WebSocket handshakes ---------------------------------------

# Name -> (bytes sent, answer status). A peer that ends its side after the
# bytes gets an answer too when they are not HTTP ("garbage, then end").
NOT_WEBSOCKET = {
    "plain POST /push": (
        b"POST /push?session=x HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 11\r\n\r\nhello world",
        400,
    ),
    "chunked POST": (
        b"POST /push HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n", 400),
    "garbage, then end": (b"hello there", 400),
    "POST without a body": (b"POST /push HTTP/1.1\r\nHost: localhost\r\n\r\n", 405),
    "plain GET": (b"GET /subscribe HTTP/1.1\r\nHost: localhost\r\n\r\n", 426),
}


def raw_request(daemon: Daemon, data: bytes, end: bool) -> bytes:
    """Send ``data`` on a raw connection (then end our side if ``end``); the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2 * TIMEOUT_UNIT)
        sock.connect(str(daemon.socket))
        sock.sendall(data)
        if end:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("name", list(NOT_WEBSOCKET))
def test_a_request_that_is_not_a_websocket_handshake_gets_a_4xx(
    daemon: Daemon, name: str
) -> None:
    data, status = NOT_WEBSOCKET[name]
    answer = raw_request(daemon, data, end=name.endswith("then end"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer
    lines = body.decode().splitlines()
    assert lines and lines[0].strip(), answer
    if status == 400:
        assert body.decode() == (
            "not a WebSocket handshake: warpd accepts WebSocket connections only "
            "(GET /push, /subscribe or /status with Upgrade: websocket)\n"
        )
        daemon.wait_for_log("refused a request that is not a WebSocket handshake: 400")
    # The daemon goes on serving.
    assert daemon_pid(daemon) == daemon.process.pid


def test_a_connection_closed_without_a_byte_gets_no_answer(daemon: Daemon) -> None:
    assert raw_request(daemon, b"", end=True) == b""
    assert "not a WebSocket handshake" not in daemon.log()


def test_a_target_urlsplit_cannot_parse_gets_a_400_not_a_traceback(daemon: Daemon) -> None:
    # "//[" reads as an unfinished IPv6 host: urllib raises ValueError, not a RouteError.
    handshake = (
        b"GET //[/push HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = raw_request(daemon, handshake, end=False)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert len(body.decode().splitlines()) == 1, body
    daemon.wait_for_log("refused //[/push: 400")
    assert "Traceback" not in daemon.log()
