"""Security of a real daemon: private socket directory, TCP token, Origin and Host checks, TLS."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import TIMEOUT_UNIT, ServeProcess, clean_env, warpd_command

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def home(short_tmp: Path) -> Path:
    return short_tmp


@pytest.fixture
def tcp_daemon(home: Path) -> Iterator[tuple[ServeProcess, int]]:
    """A daemon on ws://127.0.0.1 (a free port) and a Unix socket; yields it and the port."""
    env = clean_env(home)
    with ServeProcess(
        home, "--listen", "ws://127.0.0.1:0", "--listen", f"unix:{home}/w.sock", env=env
    ) as daemon:
        tcp, _ = daemon.wait_listening(2)
        yield daemon, int(tcp.rsplit(":", 1)[1])


def token_of(home: Path) -> str:
    return (home / "runtime" / "warpd" / "token").read_text().strip()


def handshake(
    port: int, *, host: str | None = None, token: str | None = None, origin: str | None = None
) -> tuple[int, dict[str, str], str]:
    """A raw WebSocket handshake for /status: (status, headers, body)."""
    lines = [
        "GET /status HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_UNIT) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    # After a 101 the daemon's first WebSocket frame may arrive with the head: not text.
    return int(status_line.split()[1]), headers, body.decode(errors="replace")


# --- the Unix socket ---------------------------------------------------------------


def test_default_socket_directory_and_socket_are_private(home: Path) -> None:
    env = clean_env(home)
    runtime = Path(env["XDG_RUNTIME_DIR"])
    log = (home / "serve.log").open("wb")
    # umask 0: the modes must come from warpd itself, not from a careful umask.
    process = subprocess.Popen(warpd_command("serve"), env=env, stdout=log, stderr=log, umask=0)
    try:
        socket_path = runtime / "warpd" / "warpd.sock"
        daemon_log = home / "serve.log"
        for _ in range(int(40 * TIMEOUT_UNIT)):
            if "listening on" in daemon_log.read_text():
                break
            assert process.poll() is None, daemon_log.read_text()
            time.sleep(0.05)
        directory_mode = stat.S_IMODE(os.stat(runtime / "warpd").st_mode)
        socket_info = os.stat(socket_path)
        assert directory_mode == 0o700
        assert stat.S_ISSOCK(socket_info.st_mode)
        assert stat.S_IMODE(socket_info.st_mode) == 0o600
    finally:
        process.terminate()
        process.wait(timeout=4 * TIMEOUT_UNIT)
        log.close()
    assert process.returncode == 0


def test_runtime_directory_with_loose_mode_is_refused(home: Path) -> None:
    env = clean_env(home)
    directory = Path(env["XDG_RUNTIME_DIR"]) / "warpd"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    result = subprocess.run(
        warpd_command("serve"), env=env, capture_output=True, text=True, timeout=4 * TIMEOUT_UNIT
    )
    assert result.returncode == 1
    assert f"{directory} has mode 0755; it must be private to you" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not IS_ROOT, reason="giving a directory to another user needs root")
def test_runtime_directory_owned_by_someone_else_is_refused(home: Path) -> None:
    env = clean_env(home)
    directory = Path(env["XDG_RUNTIME_DIR"]) / "warpd"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    result = subprocess.run(
        warpd_command("serve"), env=env, capture_output=True, text=True, timeout=4 * TIMEOUT_UNIT
    )
    assert result.returncode == 1
    assert "owned by uid 65534, not by you" in result.stderr
    assert not (directory / "warpd.sock").exists()


# --- TCP ---------------------------------------------------------------------------


def test_token_file_is_private(tcp_daemon: tuple[ServeProcess, int], home: Path) -> None:
    path = home / "runtime" / "warpd" / "token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(token_of(home)) >= 22


def test_tcp_handshakes_are_refused_without_the_right_credentials(
    tcp_daemon: tuple[ServeProcess, int], home: Path
) -> None:
    daemon, port = tcp_daemon
    token = token_of(home)

    status, headers, body = handshake(port)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert "missing Authorization" in body

    status, _, body = handshake(port, token="x" * 43)
    assert (status, body.strip()) == (401, "wrong bearer token")

    # A page in the user's browser: even with the token, its Origin gives it away.
    status, _, body = handshake(port, token=token, origin="http://evil.example")
    assert status == 403 and "evil.example" in body

    # DNS rebinding: evil.example resolved to 127.0.0.1, the Host header still says evil.example.
    status, _, body = handshake(port, token=token, host=f"evil.example:{port}")
    assert status == 403 and "evil.example" in body

    status, _, _ = handshake(port, token=token)
    assert status == 101
    status, _, _ = handshake(port, token=token, host=f"localhost:{port}")
    assert status == 101

    daemon.wait_for_log("refused a TCP handshake from 127.0.0.1")
    refusals = [line for line in daemon.log().splitlines() if "refused a TCP handshake" in line]
    assert len(refusals) == 4
    assert "401 missing Authorization" in refusals[0]
    assert "401 wrong bearer token" in refusals[1]
    assert "403 Origin 'http://evil.example'" in refusals[2]
    assert "403 Host 'evil.example:" in refusals[3]
    # The token itself never reaches the log.
    assert token not in daemon.log()


def test_cli_finds_its_token_and_works_over_tcp(tcp_daemon: tuple[ServeProcess, int]) -> None:
    daemon, port = tcp_daemon
    address = f"ws://127.0.0.1:{port}"
    subscriber = subprocess.Popen(
        warpd_command("subscribe", "--connect", address, "--once"),
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert subscriber.stdout is not None
        hello = json.loads(subscriber.stdout.readline())
        assert hello["type"] == "hello"
        pushed = daemon.run(
            "push", "--connect", address, "--format", "text", data=b"hello over tcp\n"
        )
        assert pushed.returncode == 0, pushed.stderr
        out, err = subscriber.communicate(timeout=4 * TIMEOUT_UNIT)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.communicate()
    final = json.loads(out.splitlines()[-1])
    assert final["complete"] and final["blocks"][0]["text"] == "hello over tcp\n"
    assert subscriber.returncode == 0, err

    status = daemon.run("status", "--connect", address)
    assert status.returncode == 0 and b"listening on ws://127.0.0.1:" in status.stdout
    wrong = daemon.run("status", "--connect", address, WARPD_TOKEN="y" * 43)
    assert wrong.returncode == 1
    assert b"refused the request: 401 wrong bearer token" in wrong.stderr


def test_client_without_a_token_file_says_what_to_do(home: Path) -> None:
    env = clean_env(home)
    result = subprocess.run(
        warpd_command("status", "--connect", "ws://127.0.0.1:9"),
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 3  # no daemon has served TCP here: none to reach
    assert "no token file at" in result.stderr and "WARPD_TOKEN" in result.stderr


def test_non_loopback_bind_needs_the_switch(home: Path) -> None:
    env = clean_env(home)
    result = subprocess.run(
        warpd_command("serve", "--listen", "ws://0.0.0.0:0"),
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 1
    assert "refusing to listen on ws://0.0.0.0:0: 0.0.0.0 is not a loopback address" in (
        result.stderr
    )
    assert "allow_non_loopback = true" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_loopback_without_tls_warns_loudly(home: Path) -> None:
    env = clean_env(home)
    config = home / "config.toml"
    config.write_text("[tcp]\nallow_non_loopback = true\n")
    with ServeProcess(
        home, "--config", str(config), "--listen", "ws://0.0.0.0:0", env=env
    ) as daemon:
        daemon.wait_listening()
        assert "WARNING" in daemon.log() and "INSECURE" in daemon.log()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_wss_with_certificate_from_config(home: Path) -> None:
    cert, key = home / "cert.pem", home / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=6 * TIMEOUT_UNIT,
    )
    env = clean_env(home)
    # The client reads the same config (XDG_CONFIG_HOME) and trusts tls_cert.
    config = home / "config" / "warpd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[tcp]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    with ServeProcess(home, "--listen", "wss://127.0.0.1:0", env=env) as daemon:
        (address,) = daemon.wait_listening()
        assert address.startswith("wss://127.0.0.1:")
        status = daemon.run("status", "--connect", address)
        assert status.returncode == 0, status.stderr
        assert "INSECURE" not in daemon.log()


def test_wss_without_certificate_is_a_clear_error(home: Path) -> None:
    result = subprocess.run(
        warpd_command("serve", "--listen", "wss://127.0.0.1:0"),
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 1
    assert "wss:// needs tls_cert and tls_key" in result.stderr
