"""Access control: socket directory safety, the token file, and the TCP handshake checks."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.datastructures import Headers

from warpd.daemon.auth import (
    bearer_token_matches,
    check_host,
    check_origin,
    check_tcp_handshake,
    prepare_socket_dir,
)
from warpd.errors import ConfigError
from warpd.tokens import (
    MIN_TOKEN_CHARS,
    generate_token,
    load_or_create_token,
    read_token,
    validate_token,
)

IS_ROOT = os.geteuid() == 0
SOMEONE_ELSE = 65534  # nobody


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """Umask 0: the modes we get must come from warpd, not from the user's umask."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- socket directory -------------------------------------------------------------


@pytest.mark.usefixtures("loose_umask")
def test_socket_dir_is_created_private(tmp_path: Path) -> None:
    directory = prepare_socket_dir(tmp_path / "warpd")
    assert directory.is_dir()
    assert mode(directory) == 0o700
    # Preparing it again (a restart) is fine.
    assert prepare_socket_dir(directory) == directory


def test_socket_dir_with_loose_mode_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "warpd"
    directory.mkdir()
    directory.chmod(0o755)
    with pytest.raises(ConfigError, match=r"mode 0755.*chmod 700"):
        prepare_socket_dir(directory)


def test_socket_dir_that_is_a_symlink_or_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        prepare_socket_dir(tmp_path / "link")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_socket_dir(tmp_path / "file")


def test_socket_dir_without_parent_names_xdg_runtime_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="XDG_RUNTIME_DIR"):
        prepare_socket_dir(tmp_path / "missing" / "warpd")


def test_socket_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if IS_ROOT:
        directory = tmp_path / "warpd"
        directory.mkdir(mode=0o700)
        os.chown(directory, SOMEONE_ELSE, SOMEONE_ELSE)
    else:
        # Not root: we cannot give a directory away, but / is root's.
        directory = Path("/")
    with pytest.raises(ConfigError, match=r"owned by uid \d+, not by you"):
        prepare_socket_dir(directory)


# --- the token --------------------------------------------------------------------


def test_generated_tokens_are_long_and_distinct() -> None:
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    # 32 bytes of entropy in URL-safe base64.
    assert all(len(token) == 43 for token in tokens)
    assert all(validate_token(token, where="t") == token for token in tokens)


@pytest.mark.usefixtures("loose_umask")
def test_token_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = load_or_create_token(path)
    assert mode(path) == 0o600
    assert path.read_text() == token + "\n"
    assert load_or_create_token(path) == token
    assert read_token(path) == token
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary left over


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(generate_token())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mode 0644.*chmod 600"):
        read_token(path)
    # The daemon does not silently replace it either.
    with pytest.raises(ConfigError, match="mode 0644"):
        load_or_create_token(path)


def test_token_file_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text(generate_token())
    real.chmod(0o600)
    (tmp_path / "token").symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        read_token(tmp_path / "token")


@pytest.mark.skipif(not IS_ROOT, reason="giving a file to another user needs root")
def test_token_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(generate_token())
    path.chmod(0o600)
    os.chown(path, SOMEONE_ELSE, SOMEONE_ELSE)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        read_token(path)


def test_missing_or_bad_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no token file at .*serving on TCP"):
        read_token(tmp_path / "token")
    short = tmp_path / "short"
    short.write_text("abc\n")
    short.chmod(0o600)
    with pytest.raises(ConfigError, match=f"at least {MIN_TOKEN_CHARS}"):
        read_token(short)


def test_validate_token_rejects_unusable_values() -> None:
    with pytest.raises(ConfigError, match="config.toml: the token is 5 characters"):
        validate_token("short", where="config.toml")
    with pytest.raises(ConfigError, match="printable ASCII"):
        validate_token("a" * 30 + " b", where="config.toml")
    with pytest.raises(ConfigError, match="printable ASCII"):
        validate_token("é" * 30, where="config.toml")


def test_bearer_token_comparison() -> None:
    token = generate_token()
    assert bearer_token_matches(f"Bearer {token}", token)
    assert bearer_token_matches(f"bearer  {token} ", token)
    assert not bearer_token_matches(f"Bearer {token[:-1]}", token)
    assert not bearer_token_matches(f"Basic {token}", token)
    assert not bearer_token_matches(token, token)
    assert not bearer_token_matches(None, token)
    assert not bearer_token_matches("Bearer é", token)


# --- handshake checks -------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost:8765", "LOCALHOST:8765", "127.0.0.1:8765", "127.1.2.3:8765", "[::1]:8765"],
)
def test_loopback_hosts_with_our_port_pass(host: str) -> None:
    assert check_host([host], port=8765) is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:8765",  # DNS rebinding: the attacker's name, resolving to 127.0.0.1
        "evil.example",
        "localhost:9999",  # another port: another service's origin
        "localhost",  # no port means 80
        "192.168.1.5:8765",
        "0.0.0.0:8765",
        "localhost.evil.example:8765",
        "[::ffff:7f00:1]:8765",
    ],
)
def test_other_hosts_are_forbidden(host: str) -> None:
    refusal = check_host([host], port=8765)
    assert refusal is not None and refusal.status == HTTPStatus.FORBIDDEN
    assert host in refusal.reason


@pytest.mark.parametrize(
    "host",
    ["::1:8765", "[::1", "[::1]x", "localhost:", "localhost:80a", "", "localhost:²", "[::1]:²"],
)
def test_malformed_host_is_a_bad_request(host: str) -> None:
    refusal = check_host([host], port=8765)
    assert refusal is not None and refusal.status == HTTPStatus.BAD_REQUEST


def test_host_count_must_be_one() -> None:
    assert check_host([], port=1) is not None
    refusal = check_host(["localhost:1", "evil.example:1"], port=1)
    assert refusal is not None and refusal.status == HTTPStatus.BAD_REQUEST


def test_listed_hosts_pass() -> None:
    allowed = ["warpd.lan", "box.example:8443"]
    assert check_host(["warpd.lan:1234"], port=8765, allowed=allowed) is None
    assert check_host(["WARPD.LAN"], port=8765, allowed=allowed) is None
    assert check_host(["box.example:8443"], port=8765, allowed=allowed) is None
    assert check_host(["box.example:8444"], port=8765, allowed=allowed) is not None
    assert check_host(["box.example"], port=8765, allowed=allowed, default_port=443) is not None
    assert check_host(["localhost"], port=443, default_port=443) is None


def test_origin_check() -> None:
    assert check_origin([]) is None
    refusal = check_origin(["http://evil.example"])
    assert refusal is not None and refusal.status == HTTPStatus.FORBIDDEN
    assert "http://evil.example" in refusal.reason
    # Even localhost pages are refused: any local web server's page could be hostile.
    assert check_origin(["http://localhost:8765"]) is not None
    assert check_origin(["null"]) is not None
    allowed = ["https://Dashboard.example/"]
    assert check_origin(["https://dashboard.example"], allowed=allowed) is None
    assert check_origin(["https://dashboard.example:444"], allowed=allowed) is not None
    assert check_origin(["https://dashboard.example", "x"], allowed=allowed) is not None


def handshake(**headers: str) -> Headers:
    return Headers([(name.replace("_", "-"), value) for name, value in headers.items()])


def test_tcp_handshake_checks_in_order() -> None:
    token = generate_token()

    def check(headers: Headers) -> tuple[int, str] | None:
        refusal = check_tcp_handshake(headers, token=token, port=8765)
        return None if refusal is None else (refusal.status, refusal.reason)

    good = {"Host": "127.0.0.1:8765", "Authorization": f"Bearer {token}"}
    assert check(handshake(**good)) is None
    missing = check(handshake(Host="127.0.0.1:8765"))
    assert missing is not None and missing[0] == 401 and "missing" in missing[1]
    wrong = check(handshake(Host="127.0.0.1:8765", Authorization="Bearer " + "x" * 43))
    assert wrong is not None and wrong[0] == 401 and "wrong" in wrong[1]
    # A browser page has the token only if it stole it; Origin still refuses it.
    evil_origin = check(handshake(**good, Origin="http://evil.example"))
    assert evil_origin is not None and evil_origin[0] == 403
    evil_host = check(handshake(**{**good, "Host": "evil.example:8765"}))
    assert evil_host is not None and evil_host[0] == 403
    # Host is checked first: a rebinding page learns nothing about the token.
    both = check(handshake(Host="evil.example:8765"))
    assert both is not None and both[0] == 403
    two_tokens = Headers(
        [
            ("Host", "localhost:8765"),
            ("Authorization", f"Bearer {token}"),
            ("Authorization", f"Bearer {token}"),
        ]
    )
    assert check(two_tokens) is not None
