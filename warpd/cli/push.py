"""``warpd push``: push a provider stream (a file or stdin) to the daemon, as it arrives.

Its exit status says how the stream ended, so that ``curl … | warpd push &&
next`` can tell (:data:`EXIT_STATUS`, and :data:`EPILOG` for the whole table).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from warpd.address import Address, client_address
from warpd.cli.input import InputPump, open_input
from warpd.cli.options import add_connect_argument
from warpd.client import Outcome, provider_error, push_outcome
from warpd.client.connection import connect
from warpd.client.push import abort_reason
from warpd.config import load_config
from warpd.controls import backslash_escaped
from warpd.errors import InputError, PushRejected, UserError, WarpdError
from warpd.ingest import FORMATS, detect_format
from warpd.ingest.base import loads
from warpd.ingest.convert import framing_for
from warpd.ingest.framing import AutoFramer, FramedEvent, make_framer
from warpd.ingest.whole import whole_format
from warpd.protocol import (
    BlocksMessage,
    EndMessage,
    ErrorMessage,
    WarningMessage,
    decode_server_message,
    encode_control,
    only_input_errors,
)

# The exit status for how the pushed stream(s) ended (the worst of them).
EXIT_STATUS: dict[Outcome, int] = {Outcome.OK: 0, Outcome.PROVIDER_ERROR: 4, Outcome.ABORTED: 5}

EPILOG = """\
exit status:
  0    every stream completed as its provider ended it
  1    warpd error: the daemon refused the input (in --strict mode: an event it
       cannot decode; a limit), no stream in the input (nothing but irregular
       events either), a file that cannot be read
  2    usage error: a bad option or argument
  3    no daemon is running at the address
  4    the provider reported an error in the stream (e.g. Anthropic's
       overloaded_error): it is shown as an error block
  5    the stream was cut off before its provider ended it (the input ended
       early, the daemon shut down): it completed as aborted
  130  interrupted (Ctrl-C)
with --no-fail the status is 0 whatever happened (except usage errors); the
message is still printed."""


# How long an interrupted push may take to tell the daemon (Ctrl-C must be quick).
INTERRUPT_SECONDS = 1.0

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Push a provider stream (SSE, JSON lines or plain text; file or stdin, live from\n"
        "a `curl -N` pipe) to the daemon; exits once the daemon has completed it."
    )
    parser.epilog = EPILOG
    parser.add_argument("file", nargs="?", type=Path, help="input file (default: stdin)")
    parser.add_argument(
        "--session", default="default", help="session to push to (default: default)"
    )
    parser.add_argument(
        "--format", default="auto", choices=FORMATS,
        help="the provider format (default: auto, detected from the first event)",
    )
    add_connect_argument(parser)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="an irregular event ends the stream (as aborted) instead of being skipped or "
        "repaired with a warning",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="say what is happening")
    parser.add_argument(
        "--no-fail", action="store_true",
        help="exit 0 even when the stream or warpd failed (for pipelines that must go on)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        address = client_address(args.connect)
        with open_input(args.file) as stream:
            status = asyncio.run(_push(args, address, stream))
    except WarpdError as exc:
        if not args.no_fail:
            raise
        print(f"warpd push: {backslash_escaped(str(exc))}", file=sys.stderr)
        return 0
    return 0 if args.no_fail else status


async def _push(args: argparse.Namespace, address: Address, stream: BinaryIO) -> int:
    verbose: Callable[..., None] = (
        (lambda *a: print("warpd push:", *a, file=sys.stderr)) if args.verbose else _quiet
    )
    pump = InputPump(stream.fileno(), asyncio.get_running_loop())
    read = pump.read

    # Events over the size limit are discarded as they are read (the daemon
    # is told, and records them); the limit is the one config.toml sets.
    limit = load_config().limits.max_frame_bytes
    framer = make_framer(framing_for(args.format), limit, text=args.format == "auto")
    pending: list[FramedEvent] = []
    eof = False
    format = args.format
    if isinstance(framer, AutoFramer):
        # Look at the input before connecting: `auto` input that is neither
        # SSE nor JSON is plain text, and the daemon must be told so.
        while framer.framing is None and not eof:
            chunk = await read()
            eof = not chunk
            pending += framer.feed(chunk) if chunk else framer.close()
        if framer.framing == "raw" and format == "auto":
            format = "text"
            verbose("format text (the input is neither SSE nor JSON)")
    params = {"session": args.session, "format": format}
    if args.strict:
        params["strict"] = "true"
    query = urlencode(params)
    ws = await connect(address, f"/push?{query}")
    verbose(f"connected to {address}, session {args.session!r}")
    # The input line of each frame, so the daemon's frame numbers can be
    # reported as lines of the user's file.
    lines: list[int] = []
    finals: list[BlocksMessage] = []
    replies = asyncio.ensure_future(_push_replies(ws, finals, verbose, lines))
    try:
        while True:
            for event in pending:
                lines.append(event.line)
                if event.oversized:
                    await ws.send(
                        encode_control("skipped", bytes=event.oversized, limit=limit)
                    )
                    continue
                if len(lines) == 1 and format == "auto":
                    _say_format(event.payload, verbose)
                await ws.send(event.payload)
            if eof:
                break
            reading = asyncio.ensure_future(read())
            await asyncio.wait({reading, replies}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                # The daemon answered (an error, or it closed) while the input
                # was silent: don't wait for more input to say so.
                reading.cancel()
                break
            chunk = reading.result()
            eof = not chunk
            pending = framer.feed(chunk) if chunk else framer.close()
        await ws.send(encode_control("end"))
    except ConnectionClosed:
        pass  # the daemon closed on us: its reply says why
    except asyncio.CancelledError:
        # Ctrl-C (asyncio.run cancels us, then raises KeyboardInterrupt):
        # subscribers are told the stream was interrupted, not that a
        # connection was lost.
        await _interrupted(ws, replies)
        raise
    try:
        end = await replies
    except PushRejected as exc:
        raise PushRejected(_where(exc.frame, lines) + exc.message, frame=exc.frame) from None
    finally:
        await ws.close()
    if not end.streams:
        raise UserError("no stream in the input")
    if all(only_input_errors(final) for final in finals):
        raise UserError("no stream in the input: every event in it was irregular (see above)")
    verbose(f"done: {len(end.streams)} stream(s) complete: {' '.join(end.streams)}")
    return EXIT_STATUS[push_outcome(finals)]


async def _interrupted(ws: ClientConnection, replies: asyncio.Future[EndMessage]) -> None:
    """Complete the live stream as aborted, interrupted; briefly, whatever the daemon does."""
    try:
        async with asyncio.timeout(INTERRUPT_SECONDS):
            await ws.send(encode_control("abort", abort_reason(KeyboardInterrupt())))
            await ws.send(encode_control("end"))
            await asyncio.wait([replies])
    except (ConnectionClosed, TimeoutError):
        pass
    finally:
        replies.cancel()
        await ws.close()


def _say_format(payload: bytes, verbose: Callable[..., None]) -> None:
    whole = whole_format(loads(payload))
    if whole is not None:
        verbose(f"format {whole} (a whole response)")
        return
    try:
        verbose(f"format {detect_format(payload).name} (detected from the first event)")
    except InputError:
        pass  # the daemon will say so, with the frame number


def _where(frame: int | None, lines: list[int]) -> str:
    """``line N: `` for a daemon frame number, ``frame N: `` if its line is unknown."""
    if frame is None:
        return ""
    line = lines[frame - 1] if 0 < frame <= len(lines) else 0
    return f"line {line}: " if line else f"frame {frame}: "


async def _push_replies(
    ws: ClientConnection,
    finals: list[BlocksMessage],
    verbose: Callable[..., None],
    lines: list[int],
) -> EndMessage:
    """Read the daemon's replies until its ``end``, collecting the streams' ``finals``.

    Warnings (an irregular event skipped or repaired) are printed as they
    come, one line each, naming the input line. Raises PushRejected when the
    daemon refused the input.
    """
    try:
        async for frame in ws:
            message = decode_server_message(frame)
            if isinstance(message, BlocksMessage):
                finals.append(message)
            match message:
                case BlocksMessage() if (error := provider_error(message)) is not None:
                    named = not error.code or error.code in error.message
                    code = "" if named else f"{error.code}: "
                    # The provider failed: worth a line even without -v.
                    said = backslash_escaped(f"{code}{error.message}")
                    print(f"warpd push: stream {backslash_escaped(message.stream)}: the "
                          f"provider reported an error: {said}", file=sys.stderr)
                case BlocksMessage() if message.aborted:
                    # Delivered, but cut short: worth a line even without -v.
                    print(f"warpd push: stream {backslash_escaped(message.stream)} completed "
                          f"as aborted: {backslash_escaped(message.abort_reason or '')}",
                          file=sys.stderr)
                case BlocksMessage():
                    verbose(f"stream {message.stream} complete")
                case WarningMessage():
                    where = _where(message.frame, lines)
                    print(f"warpd push: warning: {where}{backslash_escaped(message.message)}",
                          file=sys.stderr)
                case ErrorMessage():
                    raise PushRejected(backslash_escaped(message.message), frame=message.frame)
                case EndMessage():
                    return message
    except ConnectionClosed:
        pass
    if ws.close_code == 1001 and finals and finals[-1].aborted and (
        finals[-1].abort_reason == ws.close_reason
    ):
        # The daemon shut down and completed the live stream as aborted, for
        # that reason (said above): the streams end there, status 5.
        return EndMessage(streams=[final.stream for final in finals])
    reason = f": {backslash_escaped(ws.close_reason)}" if ws.close_reason else ""
    raise PushRejected(f"the daemon closed the connection (code {ws.close_code}{reason})")


def _quiet(*args: Any) -> None:
    pass
