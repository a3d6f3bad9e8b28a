"""Socket activation: real sockets handed to a real child process on fd 3, as systemd does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, TIMEOUT_UNIT
from warpd.daemon.activation import systemd_listen_sockets

# Puts the passed descriptors on fd 3, 4, … and sets LISTEN_PID to its own pid
# before exec'ing the child (exec keeps the pid), as systemd does between fork and exec.
LAUNCHER = """
import os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
# Move them out of the way first so dup2 onto 3, 4, ... cannot clobber one.
high = [os.dup(fd) for fd in fds]
for offset, fd in enumerate(high):
    os.dup2(fd, 3 + offset)
    os.set_inheritable(3 + offset, True)  # dup2(3, 3) would leave it close-on-exec
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = sys.argv[2] if sys.argv[2] != "self" else str(os.getpid())
os.execv(sys.executable, [sys.executable, "-c", sys.argv[3]])
"""

# Takes the sockets, reports them, then serves one connection on the first one.
CHILD = """
import json, os, socket, sys
from warpd.daemon.activation import systemd_listen_sockets
from warpd.errors import ConfigError
try:
    found = systemd_listen_sockets()
except ConfigError as exc:
    print(json.dumps({"error": str(exc)}), flush=True)
    sys.exit(0)
print(json.dumps({
    "sockets": [
        [s.name, s.socket.family.name, s.socket.fileno(), os.get_inheritable(s.socket.fileno())]
        for s in found
    ],
    "env_left": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}), flush=True)
if found:
    connection, _ = found[0].socket.accept()
    connection.sendall(b"accepted by the child")
    connection.close()
"""


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wd-") as directory:
        yield Path(directory)


def launch(
    sockets: list[socket.socket], *, pid: str = "self", names: str | None = None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env["PYTHONPATH"] = str(ROOT)
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    fds = [s.fileno() for s in sockets]
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, ",".join(map(str, fds)), pid, CHILD],
        pass_fds=fds,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> None:
    """Wait for the child and close our end of its stdout."""
    child.wait(timeout=TIMEOUT_UNIT)
    assert child.stdout is not None
    child.stdout.close()


def report(child: subprocess.Popen[str]) -> dict[str, object]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the child printed nothing"
    result: dict[str, object] = json.loads(line)
    return result


def test_unix_and_tcp_sockets_are_taken_from_fd_3(short_dir: Path) -> None:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(short_dir / "warpd.sock"))
    unix.listen()
    tcp = socket.create_server(("127.0.0.1", 0))
    with unix, tcp:
        child = launch([unix, tcp], names="warpd.socket:tcp")
        try:
            found = report(child)
            assert found["sockets"] == [
                ["warpd.socket", "AF_UNIX", 3, False],
                ["tcp", "AF_INET", 4, False],
            ]
            # Unset, so the daemon's own children do not think the sockets are theirs.
            assert found["env_left"] == []
            # The child really listens on the socket we created: connect through it.
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(TIMEOUT_UNIT)
                client.connect(str(short_dir / "warpd.sock"))
                assert client.recv(100) == b"accepted by the child"
        finally:
            finish(child)
    assert child.returncode == 0


def test_names_default_to_unknown_when_fdnames_disagree(short_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as tcp:
        child = launch([tcp], names="a:b")
        found = report(child)
        with socket.create_connection(tcp.getsockname(), timeout=TIMEOUT_UNIT) as client:
            assert client.recv(100) == b"accepted by the child"
        finish(child)
    assert found["sockets"] == [["unknown", "AF_INET", 3, False]]


def test_sockets_meant_for_another_process_are_left_alone(short_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as tcp:
        child = launch([tcp], pid="1")
        found = report(child)
        finish(child)
    assert found == {"sockets": [], "env_left": []}


def test_a_non_listening_socket_is_a_clear_error(short_dir: Path) -> None:
    # What a socket unit with ListenDatagram= (or Accept=yes) would pass.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as datagram:
        datagram.bind(str(short_dir / "dgram"))
        child = launch([datagram])
        found = report(child)
        finish(child)
    assert "not a listening stream socket" in str(found["error"])
    assert "Accept=no" in str(found["error"])


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"LISTEN_FDS": "1"},  # no LISTEN_PID: not for us
        {"LISTEN_FDS": "1", "LISTEN_PID": "1"},
        {"LISTEN_PID": str(os.getpid())},
    ],
)
def test_no_sockets_without_matching_variables(environ: dict[str, str]) -> None:
    assert systemd_listen_sockets(dict(environ)) == []


def test_malformed_listen_fds_is_an_error() -> None:
    from warpd.errors import ConfigError

    with pytest.raises(ConfigError, match="LISTEN_FDS='x'"):
        systemd_listen_sockets({"LISTEN_FDS": "x", "LISTEN_PID": str(os.getpid())})


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate not installed (Debian: apt-get install systemd)",
)
def test_under_systemd_socket_activate(short_dir: Path) -> None:
    path = short_dir / "warpd.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env["PYTHONPATH"] = str(ROOT)
    child = subprocess.Popen(
        [
            "systemd-socket-activate",
            "-l",
            str(path),
            "--fdname=warpd",
            "-E",
            "PYTHONPATH",
            sys.executable,
            "-c",
            CHILD,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # systemd-socket-activate starts the child on the first connection.
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(TIMEOUT_UNIT)
            for _ in range(100):
                try:
                    client.connect(str(path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.05)
            found = report(child)
            assert client.recv(100) == b"accepted by the child"
        assert found["sockets"] == [["warpd", "AF_UNIX", 3, False]]
    finally:
        finish(child)
