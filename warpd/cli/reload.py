"""``warpd reload``: ask the running daemon to re-read its configuration.

It asks over the daemon's own socket (``/reload``), so it works from any
terminal, for a daemon in the foreground or under systemd alike, and never
signals the wrong process.
"""

from __future__ import annotations

import argparse
import asyncio

from warpd.address import client_address
from warpd.cli.options import add_connect_argument
from warpd.client.connection import ask
from warpd.errors import ClientError
from warpd.protocol import ReloadMessage


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
    reply = asyncio.run(ask(address, "/reload", ReloadMessage))
    if not reply.ok:
        raise ClientError(reply.message)
    print(f"warpd (pid {reply.pid}): {reply.message}")
    return 0
