"""``warpd convert``: decode a recorded stream offline and print its block messages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from warpd.cli.input import open_input, read_chunks
from warpd.cli.output import terminal_safe_json
from warpd.errors import InputError, UserError
from warpd.ingest import FORMATS
from warpd.ingest.convert import convert
from warpd.protocol import encode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="input file (default: stdin)")
    parser.add_argument("--format", default="auto", choices=FORMATS)
    parser.add_argument("--session", default="default")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    with open_input(args.file) as stream:
        try:
            for message in convert(read_chunks(stream), format=args.format, session=args.session):
                out.write(terminal_safe_json(encode(message)) + b"\n")
        except InputError as exc:
            out.flush()
            raise UserError(str(exc)) from None
    out.flush()
    return 0
