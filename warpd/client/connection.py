"""Opening a client connection to the daemon, with errors a user can act on.

Every client (the CLI, :mod:`warpd.client`) connects through :func:`connect`.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from warpd.address import Address
from warpd.config import default_token_path, load_config
from warpd.errors import ClientError, ConfigError, DaemonUnavailable
from warpd.protocol import decode_server_message
from warpd.tokens import read_token, validate_token


def client_token() -> str:
    """The TCP bearer token: ``$WARPD_TOKEN``, else the config's, else the daemon's token file.

    A daemon on this machine writes its token file (0600) when it starts a TCP
    listener, so local clients need no setup; for a daemon elsewhere, set
    WARPD_TOKEN.
    """
    token = os.environ.get("WARPD_TOKEN")
    if token:
        return validate_token(token.strip(), where="WARPD_TOKEN")
    config = load_config()
    if config.tcp.token:
        return validate_token(config.tcp.token, where="config.toml [tcp] token")
    path = Path(config.tcp.token_file).expanduser() if config.tcp.token_file else None
    path = path or default_token_path()
    if not os.path.lexists(path):
        # No daemon serving TCP here has ever written it: nothing to reach (status 3).
        raise DaemonUnavailable(
            f"no token file at {path}: is warpd serving on TCP on this machine? "
            "(for a daemon on another machine, set WARPD_TOKEN)"
        )
    try:
        return read_token(path)
    except ConfigError as exc:
        raise ClientError(f"{exc} (for a daemon on another machine, set WARPD_TOKEN)") from None


def tls_client_context() -> ssl.SSLContext:
    """Verify a wss:// daemon against the system CAs, plus ``$WARPD_TLS_CA`` or the config's cert.

    Trusting the daemon's own certificate (``[tcp] tls_cert``) lets local
    clients reach a daemon with a self-signed certificate.
    """
    cafile = os.environ.get("WARPD_TLS_CA") or load_config().tcp.tls_cert or None
    context = ssl.create_default_context()
    if cafile:
        try:
            context.load_verify_locations(os.path.expanduser(cafile))
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot load the CA certificate {cafile}: {exc}") from None
    return context


def auth_headers(address: Address) -> dict[str, str]:
    """Headers that authenticate us to ``address`` (none for a Unix socket)."""
    if address.kind == "unix":
        return {}
    return {"Authorization": f"Bearer {client_token()}"}


async def connect(address: Address, target: str, **options: Any) -> ClientConnection:
    """Open a WebSocket to ``target`` (path and query) on the daemon at ``address``.

    Raises :class:`DaemonUnavailable` when nothing answers there, and
    :class:`ClientError` with the daemon's reason when it refuses the request.
    Messages from the daemon are not size-limited (finals can be large).
    """
    options.setdefault("max_size", None)
    options.setdefault("compression", None)
    options.setdefault("open_timeout", 10)
    try:
        if address.kind == "unix":
            return await unix_connect(address.path, uri=address.uri(target), **options)
        if address.tls:
            options.setdefault("ssl", tls_client_context())
        return await ws_connect(
            address.uri(target), proxy=None, additional_headers=auth_headers(address), **options
        )
    except InvalidStatus as exc:
        body = exc.response.body.decode("utf-8", "replace").strip()
        raise ClientError(
            f"the daemon at {address} refused the request: "
            f"{exc.response.status_code} {body or exc.response.reason_phrase}"
        ) from None
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonUnavailable(
            f"no warpd daemon at {address} ({exc.strerror or exc}); start one with "
            "`warpd serve` (or `systemctl --user start warpd.socket`)"
        ) from None
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise DaemonUnavailable(f"cannot connect to warpd at {address}: {exc}") from None


Reply = TypeVar("Reply", bound=msgspec.Struct)


async def ask(address: Address, target: str, reply: type[Reply]) -> Reply:
    """The daemon's one answer on ``target`` (``/status``, ``/reload``), of type ``reply``.

    Raises what :func:`connect` raises, and :class:`ClientError` when the
    daemon closes without an answer or answers something else.
    """
    ws = await connect(address, target)
    try:
        message = decode_server_message(await ws.recv())
    except (ConnectionClosed, msgspec.DecodeError) as exc:
        raise ClientError(f"no answer on {target} from the daemon at {address}: {exc}") from None
    finally:
        await ws.close()
    if not isinstance(message, reply):
        raise ClientError(f"unexpected reply from the daemon at {address}: {message!r}"[:200])
    return message
