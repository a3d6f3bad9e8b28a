"""``warpd play FILE``: render a recording in this terminal, at its pace, with no daemon.

A recording is an upstream stream (any format ``warpd convert`` reads), a
``warpd subscribe --output jsonl`` capture (warpd/recording.py), or a stream
kept in the history file, named by its id (``warpd log`` lists them). It is shown
exactly as ``warpd subscribe`` would show it live: the same renderer, the
same terminal handling (warpd/terminal.py).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from warpd.cli.input import open_input, read_chunks
from warpd.errors import InputError, UserError
from warpd.ingest import FORMATS
from warpd.protocol import StreamMessage, check_session_name, only_input_errors
from warpd.recording import (
    MAX_GAP_SECONDS,
    STEADY_SECONDS,
    PlaybackClock,
    Record,
    RecordingReader,
    pace,
    read_records,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render a recording as `warpd subscribe` would show it live, with no daemon: "
        "an upstream stream (any format `warpd convert` reads) or a capture made by "
        "`warpd subscribe --output jsonl`."
    )
    parser.epilog = (
        f"Pace: the recorded one where the recording has times (captures' `received`, "
        f"Ollama's `created_at`), else one event every {STEADY_SECONDS * 1000:.0f} ms; "
        f"pauses over {MAX_GAP_SECONDS:.0f} s are shortened. Output that is not a "
        "terminal is plain text, written at once."
    )
    parser.add_argument(
        "file", nargs="?", type=Path,
        help="the recording (default: stdin), or a stored stream's id from `warpd log`",
    )
    parser.add_argument(
        "--speed", type=speed_factor, default=1.0, metavar="X",
        help="play X times as fast (default 1; 0.5 is half speed)",
    )
    parser.add_argument(
        "--format", default="auto", choices=(*FORMATS, "capture"),
        help="what the recording is (default: auto-detected; capture = subscribe --output jsonl)",
    )
    parser.add_argument(
        "--session", default="default",
        help="session name shown for an upstream stream (default: default)",
    )
    parser.add_argument(
        "--no-color", action="store_true", help="render without colours (also NO_COLOR)"
    )
    parser.add_argument("--config", type=Path,
                        help="config file naming the history file, for a stream id")
    parser.set_defaults(run=run)


def speed_factor(text: str) -> float:
    """``--speed``'s value: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number (e.g. 2 or 0.5)")
    return value


def run(args: argparse.Namespace) -> int:
    if args.file is not None and not args.file.exists() and is_stream_id(str(args.file)):
        # Not a file: a stream id (``SESSION/N``) kept in the history file.
        return asyncio.run(_play(args, _stored_records(args, str(args.file))))
    with open_input(args.file) as stream:
        reader = RecordingReader(args.format, session=args.session)
        status = asyncio.run(_play(args, read_records(read_chunks(stream), reader)))
    if reader.error is not None:
        # Shown as the stream's error block, as a daemon would; said here too, and
        # a failure, as `warpd convert` makes it.
        raise UserError(str(reader.error))
    return status


def is_stream_id(text: str) -> bool:
    """Whether ``text`` is shaped like a stream's id, ``SESSION/N`` (not a file's path)."""
    session, slash, number = text.rpartition("/")
    return bool(slash) and number.isascii() and number.isdigit() and (
        check_session_name(session) is None
    )


def _stored_records(args: argparse.Namespace, stream: str) -> Iterator[Record[Any]]:
    from warpd.cli.history import stored_stream
    from warpd.protocol import decode_server_message

    for _, received, data in stored_stream(args, stream):
        yield received, decode_server_message(data)


async def _play(args: argparse.Namespace, records: Iterator[Record[Any]]) -> int:
    # The renderer (and wcwidth) only for the command that renders.
    from warpd.terminal import PrettyOutput, no_color_requested

    out = sys.stdout.buffer
    clock = PlaybackClock(args.speed)
    finals: list[StreamMessage] = []
    # Every stream shown, finished or not (a capture may stop mid-stream).
    streams: set[str] = set()
    async with PrettyOutput(
        out, no_color=no_color_requested(args.no_color), clock=clock.now,
        end_note="(still streaming when the playback stopped)",
    ) as pretty:
        try:
            for delay, recorded, message in pace(records, speed=args.speed):
                if delay and pretty.is_terminal:
                    await asyncio.sleep(delay)
                clock.shown(recorded, getattr(message, "created", None))
                pretty.write(message)
                if isinstance(message, StreamMessage):
                    streams.add(message.stream)
                    if message.complete:
                        finals.append(message)
        except InputError as exc:
            raise UserError(str(exc)) from None
    if not streams:
        raise UserError("no stream in the input")
    if len(finals) == len(streams) and all(only_input_errors(final) for final in finals):
        raise UserError("no stream in the input: every event in it was irregular (shown above)")
    return 0
