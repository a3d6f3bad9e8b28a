"""Opening a client connection to the daemon, with errors a user can act on.

Every client (the CLI, :mod:`warpd.client`) connects through :func:`connect`.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from warpd.address import Address
from warpd.errors import ClientError, DaemonUnavailable


def auth_headers(address: Address) -> dict[str, str]:
    """Headers that authenticate us to ``address`` (none for a Unix socket)."""
    return {}


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
