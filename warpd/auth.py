"""Who may talk to the daemon: socket-directory safety, the TCP token, Origin and Host checks.

The Unix socket is protected by the filesystem: :func:`prepare_socket_dir`
makes sure its directory is ours and private before the server binds in it.

A TCP port is reachable by every local user and by every web page the user's
browser opens (cross-site WebSocket hijacking, DNS rebinding). So a TCP
handshake must pass :func:`check_tcp_handshake`, which the server calls from
its ``process_request`` hook:

- Host must be a loopback name or address with our port, or listed in the
  config (a DNS-rebinding page sends its own domain name as Host);
- a handshake carrying Origin (every browser sends one) is refused unless that
  origin is listed in the config;
- ``Authorization: Bearer <token>`` must carry the token, compared in
  constant time. The token lives in a 0600 file (:func:`load_or_create_token`)
  that local clients read by themselves (:func:`read_token`).

Everything here is a pure function of its arguments and the filesystem; the
caller does the logging and sends the refusal (a 401 must carry
``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Collection
from http import HTTPStatus
from pathlib import Path
from typing import NamedTuple, Protocol

from warpd.errors import ConfigError

__all__ = [
    "TOKEN_BYTES",
    "HeaderLookup",
    "Refusal",
    "bearer_token_matches",
    "check_authorization",
    "check_host",
    "check_origin",
    "check_tcp_handshake",
    "generate_token",
    "is_loopback_host",
    "load_or_create_token",
    "prepare_socket_dir",
    "read_token",
    "validate_token",
]

# 32 random bytes = 256 bits, written as 43 URL-safe base64 characters.
TOKEN_BYTES = 32
# 22 base64 characters carry 132 bits: the shortest token we accept from a user.
MIN_TOKEN_CHARS = 22
# A token file is one short line; anything bigger is not ours.
_MAX_TOKEN_FILE = 4096


class Refusal(NamedTuple):
    """Why a handshake is refused: the HTTP status to answer and a reason to log and send."""

    status: HTTPStatus
    reason: str


class HeaderLookup(Protocol):
    """What the checks need from request headers (``websockets.datastructures.Headers``)."""

    def get_all(self, key: str) -> list[str]: ...


# --- the Unix socket's directory -------------------------------------------------


def prepare_socket_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if absent, and make sure it is safe to bind in.

    The directory must be a real directory (not a symlink), owned by the
    effective user, with no group or other permissions. Raises
    :class:`ConfigError` naming the problem and the fix otherwise: a directory
    someone else owns could hold a socket of theirs that our clients would
    trust. Only the last component is created; its parent (normally
    ``$XDG_RUNTIME_DIR``) must exist.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise ConfigError(
            f"cannot create {path}: {path.parent} does not exist "
            "(is XDG_RUNTIME_DIR set to your runtime directory?)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    info = os.lstat(path)
    _check_private(path, info, kind="directory", expect=stat.S_ISDIR, fix="chmod 700")
    return path


def _check_private(
    path: Path, info: os.stat_result, *, kind: str, expect: Callable[[int], bool], fix: str
) -> None:
    """Raise ConfigError unless ``info`` is a ``kind`` owned by us with no group/other bits."""
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"{path} is a symbolic link; warpd needs a real {kind} there")
    if not expect(info.st_mode):
        raise ConfigError(f"{path} is not a {kind}")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise ConfigError(
            f"{path} is owned by uid {info.st_uid}, not by you (uid {uid}); "
            f"refusing to use a {kind} someone else controls"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} has mode {mode:04o}; it must be private to you ({fix} {path})")


# --- the token --------------------------------------------------------------------


def generate_token() -> str:
    """A new random token: 256 bits from ``secrets``, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def validate_token(token: str, *, where: str) -> str:
    """Return ``token`` if it is usable in a header and long enough; ConfigError otherwise.

    ``where`` names its origin for the message (e.g. ``"config.toml [tcp] token"``).
    """
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(f"{where}: the token must be printable ASCII without spaces")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{where}: the token is {len(token)} characters; at least {MIN_TOKEN_CHARS} "
            "(128 bits) are required, e.g. from "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def read_token(path: Path) -> str:
    """Read the token from ``path``, which must be a regular 0600 file of ours.

    Raises :class:`ConfigError` when it is missing, someone else's, readable by
    others, or not a valid token.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"no token file at {path}: is warpd serving on TCP on this machine?"
        ) from None
    except OSError as exc:
        if os.path.islink(path):
            raise ConfigError(f"{path} is a symbolic link; warpd needs a real file there") from None
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    try:
        _check_private(path, os.fstat(fd), kind="file", expect=stat.S_ISREG, fix="chmod 600")
        data = os.read(fd, _MAX_TOKEN_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_TOKEN_FILE:
        raise ConfigError(f"{path} is too large to be a warpd token file")
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} does not contain a warpd token (not ASCII)") from None
    return validate_token(token, where=str(path))


def load_or_create_token(path: Path) -> str:
    """The daemon's token: read from ``path``, or generated and written there (0600).

    The file appears atomically, complete, and is never replaced: when two
    daemons race, both end up with the same token. The directory must exist
    (:func:`prepare_socket_dir` it first when it is the runtime directory).
    """
    try:
        return read_token(path)
    except ConfigError:
        if os.path.lexists(path):
            raise
    token = generate_token()
    try:
        # mkstemp creates the file 0600; linking it into place fails if a
        # file appeared meanwhile, so a reader never sees a half-written token.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".token-")
    except OSError as exc:
        raise ConfigError(f"cannot write the token file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            return read_token(path)
    finally:
        os.unlink(temporary)
    return token


def bearer_token_matches(authorization: str | None, token: str) -> bool:
    """True if an Authorization header value is ``Bearer <token>`` (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest on bytes: its time does not depend on where the values differ.
    return hmac.compare_digest(credentials.strip().encode("utf-8"), token.encode("utf-8"))


# --- handshake checks -------------------------------------------------------------


def _split_host(value: str) -> tuple[str, int | None] | None:
    """Split a Host header into (lower-cased host, port or None); None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if not rest:
            return host.lower(), None
        if rest.startswith(":") and _is_port(rest[1:]):
            return host.lower(), int(rest[1:])
        return None
    if value.count(":") > 1:
        # An IPv6 address in Host must be bracketed.
        return None
    host, colon, port = value.partition(":")
    if not host:
        return None
    if colon:
        if not _is_port(port):
            return None
        return host.lower(), int(port)
    return host.lower(), None


def _is_port(text: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return text.isascii() and text.isdigit()


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1), without brackets."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(
    values: list[str], *, port: int, allowed: Collection[str] = (), default_port: int = 80
) -> Refusal | None:
    """Refuse unless Host is a loopback name/address with our ``port``, or listed in ``allowed``.

    ``allowed`` entries are ``name`` (any port) or ``name:port``. A Host without
    a port means ``default_port`` (80 for ws://, 443 for wss://). A page doing
    DNS rebinding sends its own name, which is neither loopback nor listed.
    """
    if len(values) != 1:
        return Refusal(HTTPStatus.BAD_REQUEST, f"expected one Host header, got {len(values)}")
    parsed = _split_host(values[0])
    if parsed is None:
        return Refusal(HTTPStatus.BAD_REQUEST, f"malformed Host header {values[0]!r}")
    host, host_port = parsed
    effective_port = default_port if host_port is None else host_port
    for entry in allowed:
        listed = _split_host(entry)
        if listed is None:
            continue
        listed_host, listed_port = listed
        if listed_host == host and listed_port in (None, effective_port):
            return None
    if is_loopback_host(host) and effective_port == port:
        return None
    return Refusal(
        HTTPStatus.FORBIDDEN,
        f"Host {values[0]!r} is not this daemon's loopback address and not in allowed_hosts",
    )


def check_origin(values: list[str], *, allowed: Collection[str] = ()) -> Refusal | None:
    """Refuse a handshake carrying Origin unless that origin is listed in ``allowed``.

    Browsers send Origin with every WebSocket handshake and let any page open
    one to localhost; warpd's own clients send none. Origins compare
    case-insensitively, without a trailing slash.
    """
    if not values:
        return None
    if len(values) > 1:
        return Refusal(HTTPStatus.FORBIDDEN, "more than one Origin header")
    origin = values[0].strip().rstrip("/").lower()
    if origin in {entry.strip().rstrip("/").lower() for entry in allowed}:
        return None
    return Refusal(
        HTTPStatus.FORBIDDEN, f"Origin {values[0]!r} is not in allowed_origins (a browser page?)"
    )


def check_authorization(values: list[str], *, token: str) -> Refusal | None:
    """Refuse unless exactly one ``Authorization: Bearer <token>`` header carries ``token``."""
    if not values:
        return Refusal(HTTPStatus.UNAUTHORIZED, "missing Authorization: Bearer token")
    if len(values) > 1 or not bearer_token_matches(values[0], token):
        return Refusal(HTTPStatus.UNAUTHORIZED, "wrong bearer token")
    return None


def check_tcp_handshake(
    headers: HeaderLookup,
    *,
    token: str,
    port: int,
    allowed_origins: Collection[str] = (),
    allowed_hosts: Collection[str] = (),
    default_port: int = 80,
) -> Refusal | None:
    """All the checks a TCP handshake must pass, Host first, then Origin, then the token.

    Returns None to accept, or the :class:`Refusal` to send (400, 401 or 403).
    """
    return (
        check_host(
            headers.get_all("Host"), port=port, allowed=allowed_hosts, default_port=default_port
        )
        or check_origin(headers.get_all("Origin"), allowed=allowed_origins)
        or check_authorization(headers.get_all("Authorization"), token=token)
    )
