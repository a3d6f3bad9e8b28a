"""``warpd reload``: ask the running daemon to re-read its configuration.

It asks over the daemon's own socket (``/reload``), so it works from any
terminal, for a daemon in the foreground or under systemd alike, and never
signals the wrong process.
"""

from __future__ import annotations

import argparse
import asyncio

import msgspec
from websockets.exceptions import ConnectionClosed

from warpd.address import Address, client_address
from warpd.cli.options import add_connect_argument
from warpd.client.connection import connect
from warpd.errors import ClientError
from warpd.protocol import ReloadMessage, decode_server_message


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Ask the running daemon to re-read its config file: limits, history bounds, the "
        "log level and the TCP token, origins and hosts change at once; listen addresses "
        "need a restart. A bad file is reported and the old configuration kept."
    )
    add_connect_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    address = client_address(args.connect)
    reply = asyncio.run(ask_reload(address))
    if not reply.ok:
        raise ClientError(reply.message)
    print(f"warpd (pid {reply.pid}): {reply.message}")
    return 0


async def ask_reload(address: Address) -> ReloadMessage:
    """The daemon's answer to ``/reload``; ClientError when there is none."""
    ws = await connect(address, "/reload")
    try:
        message = decode_server_message(await ws.recv())
    except (ConnectionClosed, msgspec.DecodeError) as exc:
        raise ClientError(f"no answer from the daemon at {address}: {exc}") from None
    finally:
        await ws.close()
    if not isinstance(message, ReloadMessage):
        raise ClientError(f"unexpected reply from the daemon at {address}: {message!r}"[:200])
    return message
