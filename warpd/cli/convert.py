"""``warpd convert``: decode a recorded stream offline and print its block messages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from warpd.cli.input import open_input, read_chunks
from warpd.cli.output import terminal_safe_json
from warpd.config import load_config
from warpd.controls import backslash_escaped
from warpd.errors import InputError, UserError
from warpd.ingest import FORMATS
from warpd.ingest.convert import convert
from warpd.protocol import BlocksMessage, WarningMessage, encode, only_input_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Decode a recorded provider stream with no daemon and print the block messages "
        "a daemon would publish for it, one JSON object per line."
    )
    parser.add_argument(
        "file", nargs="?", type=Path,
        help="the recording: SSE, JSON lines or plain text (default: stdin)",
    )
    parser.add_argument(
        "--format", default="auto", choices=FORMATS,
        help="the provider format (default: auto, detected from the first event)",
    )
    parser.add_argument(
        "--session", default="default",
        help="session name for the messages and their stream ids (default: default)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first irregular event (default: [ingest] strict in config.toml)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the block messages on stdout; warnings on stderr, one line each, as they come."""
    config = load_config()
    out = sys.stdout.buffer
    finals: list[BlocksMessage] = []

    def warn(warning: WarningMessage, line: int) -> None:
        out.flush()
        where = f"line {line}: " if line else f"frame {warning.frame}: "
        text = backslash_escaped(warning.message)
        print(f"warpd convert: warning: {where}{text}", file=sys.stderr)

    with open_input(args.file) as stream:
        try:
            for message in convert(
                read_chunks(stream),
                format=args.format,
                session=args.session,
                strict=args.strict or config.ingest.strict,
                max_frame_bytes=config.limits.max_frame_bytes,
                max_warnings=config.ingest.max_warnings,
                on_warning=warn,
            ):
                out.write(terminal_safe_json(encode(message)) + b"\n")
                if message.complete and not message.streaming:
                    finals.append(message)
        except InputError as exc:
            out.flush()
            # Named by its input line when known, as `warpd push` names it
            # (the frame number would say the same thing twice).
            where = exc.message.startswith("line ")
            raise UserError(exc.message if where else str(exc)) from None
    out.flush()
    if not finals:
        raise UserError("no stream in the input")
    if all(only_input_errors(final) for final in finals):
        raise UserError("no stream in the input: every event in it was irregular (see above)")
    return 0
