"""Addresses the daemon listens on and clients connect to.

``unix:PATH`` or a bare path is a Unix socket; ``ws://HOST:PORT`` (or
``wss://``) is TCP. Clients take ``--connect``, else ``WARPD_ADDR``, else the
default Unix socket.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from warpd.config import default_socket_path
from warpd.errors import ConfigError


class Address(msgspec.Struct, frozen=True):
    """A parsed address: a Unix socket ``path``, or a TCP ``host``/``port``."""

    kind: Literal["unix", "tcp"]
    path: str = ""
    host: str = ""
    port: int = 0
    tls: bool = False

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}"

    def uri(self, path_and_query: str) -> str:
        """The WebSocket URI for a request to ``path_and_query`` (e.g. ``/push?session=x``)."""
        if self.kind == "unix":
            return f"ws://localhost{path_and_query}"
        return f"{self}{path_and_query}"


def parse_address(text: str) -> Address:
    """Parse an address; raises ConfigError saying what forms are accepted."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ConfigError("address 'unix:' needs a path, e.g. unix:/run/user/1000/warpd.sock")
        return Address("unix", path=os.path.expanduser(path))
    if text.startswith(("ws://", "wss://")):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ConfigError(f"address {text!r}: expected ws://HOST:PORT, e.g. ws://127.0.0.1:8765")
        return Address("tcp", host=parts.hostname, port=port, tls=parts.scheme == "wss")
    scheme, sep, rest = text.partition("://")
    if sep and scheme.isalnum():
        # http://, tcp://…: the user means TCP, but warpd speaks WebSocket.
        tls = scheme.lower() in ("https", "tls", "ssl")
        host_port = rest.split("/", 1)[0] or "HOST:PORT"
        raise ConfigError(
            f"address {text!r}: warpd listens and connects over WebSocket: "
            f"use {'wss' if tls else 'ws'}://{host_port} (TCP), or unix:PATH"
        )
    if "/" in text or text.endswith(".sock"):
        return Address("unix", path=os.path.expanduser(text))
    hint = f" (for TCP: ws://{text})" if ":" in text else ""
    raise ConfigError(
        f"cannot understand address {text!r}: use unix:PATH, a socket path, "
        f"or ws://HOST:PORT{hint}"
    )


def client_address(explicit: str | None = None) -> Address:
    """The address a client should connect to: ``explicit``, ``$WARPD_ADDR``, or the default."""
    text = explicit or os.environ.get("WARPD_ADDR")
    if text:
        return parse_address(text)
    return Address("unix", path=str(default_socket_path()))


def split_host(value: str) -> tuple[str, int | None] | None:
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
