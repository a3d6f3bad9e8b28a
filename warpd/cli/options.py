"""Options several commands share, and option values checked as argparse types.

A value that does not parse is a usage error: argparse says so with the
command's usage and exit status 2, before the command runs (so ``warpd push
--no-fail`` does not hide it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from warpd.address import Address, parse_address
from warpd.errors import WarpdError

T = TypeVar("T")


def checked(convert: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` from ``convert``, whose WarpdError becomes a usage error."""

    def argument(text: str) -> T:
        try:
            return convert(text)
        except WarpdError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    # argparse names the type in its message when it fails some other way.
    argument.__name__ = convert.__name__
    return argument


def non_negative(text: str) -> int:
    """A count option's value: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, 0 or more")
    return value


def address(text: str) -> str:
    """An address option's value, checked (``parse_address``) and kept as given."""
    parsed: Address = parse_address(text)
    del parsed
    return text


def add_connect_argument(parser: argparse.ArgumentParser) -> None:
    """``--connect ADDR``: which daemon a client command talks to."""
    parser.add_argument(
        "--connect",
        type=checked(address),
        metavar="ADDR",
        help="daemon address (default: $WARPD_ADDR, else the user's Unix socket)",
    )
