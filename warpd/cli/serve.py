"""``warpd serve``: run the daemon in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from warpd.cli.options import address, checked
from warpd.config import load_config
from warpd.daemon.logs import configure_logging
from warpd.daemon.server import Server
from warpd.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the daemon in the foreground: streams pushed to it are assembled into blocks "
        "and sent to every subscriber of their session. Listens on a private Unix socket "
        "in $XDG_RUNTIME_DIR/warpd/ unless told otherwise; keeps past streams in the "
        "history file. Ctrl-C, SIGTERM or closing the terminal stops it."
    )
    parser.add_argument("--config", type=Path, help="config file (default: the XDG one, if any)")
    parser.add_argument(
        "--listen",
        action="append",
        type=checked(address),
        metavar="ADDR",
        help="unix:PATH, a socket path, or ws://HOST:PORT (repeatable; overrides the config)",
    )
    parser.add_argument("--log-level", help="TRACE, DEBUG, INFO, WARNING or ERROR")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(args.log_level.upper() if args.log_level else config.log.level)
    try:
        return Server(config, listen=args.listen, config_path=args.config).run()
    except OSError as exc:
        raise UserError(f"cannot listen: {exc.strerror or exc}") from None
