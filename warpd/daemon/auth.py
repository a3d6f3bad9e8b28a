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
  constant time. The token lives in a 0600 file that the daemon creates and
  local clients read by themselves (:mod:`warpd.tokens`).

Everything here is a pure function of its arguments and the filesystem; the
caller does the logging and sends the refusal (a 401 must carry
``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Collection
from http import HTTPStatus
from pathlib import Path
from typing import NamedTuple, Protocol

from warpd.address import is_loopback_host, split_host
from warpd.errors import ConfigError
from warpd.tokens import check_private

__all__ = [
    "HeaderLookup",
    "Refusal",
    "bearer_token_matches",
    "check_authorization",
    "check_host",
    "check_origin",
    "check_tcp_handshake",
    "prepare_socket_dir",
]


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
    check_private(path, info, kind="directory", expect=stat.S_ISDIR, fix="chmod 700")
    return path


# --- the bearer token ---------------------------------------------------------------


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
    parsed = split_host(values[0])
    if parsed is None:
        return Refusal(HTTPStatus.BAD_REQUEST, f"malformed Host header {values[0]!r}")
    host, host_port = parsed
    effective_port = default_port if host_port is None else host_port
    for entry in allowed:
        listed = split_host(entry)
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
