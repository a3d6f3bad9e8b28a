"""Options several commands share."""

from __future__ import annotations

import argparse


def add_connect_argument(parser: argparse.ArgumentParser) -> None:
    """``--connect ADDR``: which daemon a client command talks to."""
    parser.add_argument(
        "--connect",
        metavar="ADDR",
        help="daemon address (default: $WARPD_ADDR, else the user's Unix socket)",
    )
