"""``warpd``: serve, push, subscribe, convert, status.

Each command reports a user's mistake (bad option, bad input, no daemon) as
one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from warpd import __version__
from warpd.address import Address, client_address
from warpd.config import load_config
from warpd.connection import connect
from warpd.errors import ClientError, DaemonUnavailable, InputError, PushRejected, WarpdError
from warpd.ingest import FORMATS, detect_format
from warpd.ingest.convert import convert, framing_for
from warpd.ingest.framing import AutoFramer, FramedEvent, make_framer
from warpd.protocol import (
    BlocksMessage,
    EndMessage,
    ErrorMessage,
    HelloMessage,
    ResyncMessage,
    SnapshotMessage,
    StatusMessage,
    decode_server_message,
    encode,
    encode_control,
)
from warpd.service import add_service_parser
from warpd.terminal import PrettyOutput, no_color_requested

READ_SIZE = 64 * 1024


class UserError(WarpdError):
    """A mistake on the command line, reported as one line."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``warpd`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        status: int = args.run(args)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): not an error.
        _silence_stdout()
        return 0
    except WarpdError as exc:
        print(f"warpd {args.command}: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warpd", description="LLM delta streams in, live terminal blocks out."
    )
    parser.add_argument("--version", action="version", version=f"warpd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--config", type=Path, help="config file (default: the XDG one, if any)")
    serve.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="unix:PATH, a socket path, or ws://HOST:PORT (repeatable; overrides the config)",
    )
    serve.add_argument("--log-level", help="TRACE, DEBUG, INFO, WARNING or ERROR")
    serve.set_defaults(run=_serve)

    connect_help = "daemon address (default: $WARPD_ADDR, else the user's Unix socket)"
    push = commands.add_parser("push", help="push a provider stream (FILE or stdin) to the daemon")
    push.add_argument("file", nargs="?", type=Path, help="input file (default: stdin)")
    push.add_argument("--session", default="default", help="session to push to")
    push.add_argument("--format", default="auto", choices=FORMATS, help="upstream format")
    push.add_argument("--connect", metavar="ADDR", help=connect_help)
    push.add_argument("-v", "--verbose", action="store_true", help="say what is happening")
    push.set_defaults(run=_push)

    sub = commands.add_parser("subscribe", help="print a session's block messages live")
    sub.add_argument(
        "--session", action="append", metavar="NAME", help="session to follow (repeatable; * = all)"
    )
    sub.add_argument(
        "--output",
        choices=("pretty", "jsonl", "sse"),
        help="pretty: rendered blocks (the default on a terminal; plain text elsewhere); "
        "jsonl, sse: the block messages (the default when not a terminal: jsonl)",
    )
    sub.add_argument(
        "--no-color", action="store_true", help="pretty output without colours (also NO_COLOR)"
    )
    sub.add_argument("--once", action="store_true", help="exit after the first stream completes")
    sub.add_argument("--replay", type=int, default=0, metavar="N",
                     help="first show the last N completed streams")
    sub.add_argument("--connect", metavar="ADDR", help=connect_help)
    sub.set_defaults(run=_subscribe)

    conv = commands.add_parser(
        "convert", help="decode a recorded stream offline and print its block messages"
    )
    conv.add_argument("file", nargs="?", type=Path, help="input file (default: stdin)")
    conv.add_argument("--format", default="auto", choices=FORMATS)
    conv.add_argument("--session", default="default")
    conv.set_defaults(run=_convert)

    status = commands.add_parser("status", help="show the daemon's sessions and subscribers")
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    status.add_argument("--connect", metavar="ADDR", help=connect_help)
    status.set_defaults(run=_status)

    add_service_parser(commands)
    return parser


# -- serve ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from warpd.logging_setup import configure_logging
    from warpd.server import Server

    config = load_config(args.config)
    configure_logging(args.log_level.upper() if args.log_level else config.log.level)
    try:
        return Server(config, listen=args.listen, config_path=args.config).run()
    except OSError as exc:
        raise UserError(f"cannot listen: {exc.strerror or exc}") from None


# -- input ---------------------------------------------------------------------


def _open_input(path: Path | None) -> BinaryIO:
    if path is None:
        if sys.stdin.isatty():
            print("warpd: reading the stream from stdin (end it with Ctrl-D)", file=sys.stderr)
        return sys.stdin.buffer
    try:
        return path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Chunks as they arrive (a `curl -N` pipe shows up live), until EOF."""
    fd = stream.fileno()
    while chunk := os.read(fd, READ_SIZE):
        yield chunk


# -- convert -------------------------------------------------------------------


def _convert(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    with _open_input(args.file) as stream:
        try:
            for message in convert(_read_chunks(stream), format=args.format, session=args.session):
                out.write(terminal_safe_json(encode(message)) + b"\n")
        except InputError as exc:
            out.flush()
            raise UserError(str(exc)) from None
    out.flush()
    return 0


# -- push ----------------------------------------------------------------------


def _push(args: argparse.Namespace) -> int:
    address = client_address(args.connect)
    with _open_input(args.file) as stream:
        return asyncio.run(_push_async(args, address, stream))


async def _push_async(args: argparse.Namespace, address: Address, stream: BinaryIO) -> int:
    verbose: Callable[..., None] = (
        (lambda *a: print("warpd push:", *a, file=sys.stderr)) if args.verbose else _quiet
    )
    pump = _InputPump(stream.fileno(), asyncio.get_running_loop())
    read = pump.read

    framer = make_framer(framing_for(args.format))
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
    query = urlencode({"session": args.session, "format": format})
    ws = await connect(address, f"/push?{query}")
    verbose(f"connected to {address}, session {args.session!r}")
    # The input line of each frame, so the daemon's frame numbers can be
    # reported as lines of the user's file.
    lines: list[int] = []
    replies = asyncio.ensure_future(_push_replies(ws, verbose))
    try:
        while True:
            for event in pending:
                if not lines and format == "auto":
                    _say_format(event.payload, verbose)
                lines.append(event.line)
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
    try:
        end = await replies
    except PushRejected as exc:
        where = ""
        if exc.frame is not None:
            line = lines[exc.frame - 1] if 0 < exc.frame <= len(lines) else 0
            where = f"line {line}: " if line else f"frame {exc.frame}: "
        raise PushRejected(where + exc.message, frame=exc.frame) from None
    finally:
        await ws.close()
    verbose(f"done: {len(end.streams)} stream(s) complete: {' '.join(end.streams)}")
    return 0


class _InputPump:
    """Reads a file descriptor in a daemon thread and hands the chunks to the event loop.

    A daemon thread rather than the loop's executor: a read blocked on a
    silent pipe (a `curl -N` that waits) must not keep us from exiting once
    the daemon has answered. :meth:`read` returns b"" at the end of input.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        threading.Thread(target=self._run, daemon=True, name="warpd-input").start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, READ_SIZE)
            except OSError:
                chunk = b""
            try:
                self._loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)
            except RuntimeError:  # the loop is gone: we are exiting
                return
            if not chunk:
                return

    async def read(self) -> bytes:
        return await self._chunks.get()


def _say_format(payload: bytes, verbose: Callable[..., None]) -> None:
    try:
        verbose(f"format {detect_format(payload).name} (detected from the first event)")
    except InputError:
        pass  # the daemon will say so, with the frame number


async def _push_replies(ws: ClientConnection, verbose: Callable[..., None]) -> EndMessage:
    """Read the daemon's replies until its ``end``; raise PushRejected on an error."""
    try:
        async for frame in ws:
            message = decode_server_message(frame)
            match message:
                case BlocksMessage() if message.aborted:
                    # Delivered, but cut short: worth a line even without -v.
                    print(f"warpd push: stream {message.stream} completed as aborted: "
                          f"{message.abort_reason}", file=sys.stderr)
                case BlocksMessage():
                    verbose(f"stream {message.stream} complete")
                case ErrorMessage():
                    raise PushRejected(message.message, frame=message.frame)
                case EndMessage():
                    return message
    except ConnectionClosed:
        pass
    raise PushRejected(
        f"the daemon closed the connection "
        f"(code {ws.close_code}{': ' + ws.close_reason if ws.close_reason else ''})"
    )


# -- subscribe -----------------------------------------------------------------


def _subscribe(args: argparse.Namespace) -> int:
    address = client_address(args.connect)
    sessions = args.session or ["default"]
    if args.replay < 0:
        raise UserError("--replay must not be negative")
    return asyncio.run(_subscribe_async(args, address, sessions))


class _Resume:
    """What a reconnecting subscriber tells the daemon: its epoch and last seq per session."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.seq: dict[str, int] = {}

    def query(self, sessions: list[str], replay: int) -> str:
        params: list[tuple[str, str]] = [("session", s) for s in sessions]
        if self.epoch is not None:
            params.append(("epoch", self.epoch))
            params += [("since", f"{name}:{seq}") for name, seq in self.seq.items()]
        elif replay:
            params.append(("replay", str(replay)))
        return urlencode(params)


async def _subscribe_async(args: argparse.Namespace, address: Address, sessions: list[str]) -> int:
    out = sys.stdout.buffer
    output = args.output or ("pretty" if out.isatty() else "jsonl")
    if output != "pretty":
        write = _sse_writer(out) if output == "sse" else _jsonl_writer(out)
        return await _subscription(args, address, sessions, write, _note_on_stderr)
    async with PrettyOutput(out, no_color=no_color_requested(args.no_color)) as pretty:
        # Our own lines go through the renderer, above its live tail.
        return await _subscription(args, address, sessions, pretty.write, pretty.note)


def _note_on_stderr(text: str) -> None:
    print(f"warpd subscribe: {text}", file=sys.stderr)


async def _subscription(
    args: argparse.Namespace,
    address: Address,
    sessions: list[str],
    write: Callable[[Any, bytes], None],
    note: Callable[[str], None],
) -> int:
    """Follow ``sessions``, reconnecting and resuming; ``note`` shows our own status lines."""
    resume = _Resume()
    delay = 0.1
    connected_once = False
    while True:
        try:
            ws = await connect(address, f"/subscribe?{resume.query(sessions, args.replay)}")
        except DaemonUnavailable:
            if not connected_once:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if connected_once:
            note("reconnected")
        connected_once = True
        delay = 0.1
        try:
            while True:
                # The raw bytes: written out as they are, not decoded and re-encoded.
                data = await ws.recv(decode=False)
                message = decode_server_message(data)
                write(message, data)
                match message:
                    case HelloMessage():
                        if message.epoch != resume.epoch:
                            # Seq numbers of another epoch mean nothing here.
                            resume.seq = {}
                        # Sessions we had no message from yet resume from
                        # where they stood when we joined.
                        for name, seq in message.seq.items():
                            resume.seq.setdefault(name, seq)
                        resume.epoch = message.epoch
                        if message.resume_failed:
                            note(f"could not resume ({message.resume_failed}); "
                                 "showing the live state instead")
                    case BlocksMessage() | SnapshotMessage() | ResyncMessage():
                        resume.seq[message.session] = max(
                            resume.seq.get(message.session, 0), message.seq
                        )
                        if args.once and isinstance(message, BlocksMessage) and (
                            message.complete and not message.streaming
                        ):
                            await ws.close()
                            return 0
                    case ErrorMessage():
                        raise ClientError(message.message)
        except ConnectionClosed:
            pass
        code = ws.close_code
        if code == 1000:
            return 0
        if code in (1002, 1003, 1007, 1008, 1013):
            raise ClientError(f"the daemon closed the subscription: {ws.close_reason or code}")
        # 1001 (daemon restarting), 4008 (too slow), a network blip: resume.
        note(f"connection lost ({ws.close_reason or code}); reconnecting")


def _jsonl_writer(out: BinaryIO) -> Callable[[Any, bytes], None]:
    def write(message: Any, data: bytes) -> None:
        out.write(terminal_safe_json(data) + b"\n")
        out.flush()

    return write


def _sse_writer(out: BinaryIO) -> Callable[[Any, bytes], None]:
    def write(message: Any, data: bytes) -> None:
        seq = getattr(message, "seq", None)
        kind = type(message).__struct_config__.tag
        head = f"id: {seq}\n" if isinstance(seq, int) and seq else ""
        out.write(f"{head}event: {kind}\ndata: ".encode() + terminal_safe_json(data) + b"\n\n")
        out.flush()

    return write


# JSON leaves DEL and the C1 controls (U+0080-U+009F) unescaped; some
# terminals act on them, so they are escaped too before reaching one.
_UNSAFE_IN_JSON = re.compile(rb"\x7f|\xc2[\x80-\x9f]")


def terminal_safe_json(data: bytes) -> bytes:
    """JSON bytes with every character a terminal could act on escaped as ``\\uXXXX``."""
    if b"\x7f" not in data and b"\xc2" not in data:
        return data
    return _UNSAFE_IN_JSON.sub(
        lambda m: b"\\u%04x" % ord(m.group().decode("utf-8")), data
    )


# -- status --------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    address = client_address(args.connect)
    status = asyncio.run(_fetch_status(address))
    if args.json:
        sys.stdout.buffer.write(encode(status) + b"\n")
        return 0
    print(f"warpd {status.version} pid {status.pid}, up {status.uptime:.0f}s, "
          f"epoch {status.epoch}, listening on {', '.join(status.listen)}")
    broker = status.broker
    if broker:
        problem = f", last error: {broker['last_error']}" if broker.get("last_error") else ""
        print(f"broker {broker['kind']} {broker['url']}: {broker['state']}, "
              f"{broker['outages']} outage(s){problem}")
    if not status.sessions:
        print("no sessions yet")
    for row in status.sessions:
        live = ", ".join(row["live_streams"]) or "none"
        print(f"session {row['session']!r}: seq {row['seq']}, streams {row['streams_started']}"
              f" (live: {live}), history {row['history_messages']} messages"
              f" / {row['history_bytes']} bytes, {len(row['subscribers'])} subscriber(s)")
        for sub in row["subscribers"]:
            print(f"  {sub['id']}: lag {sub['lag_messages']} messages, queued"
                  f" {sub['queued_bytes']} bytes, catch-ups {sub.get('catchups', 0)},"
                  f" resyncs {sub['resyncs']},"
                  f" dropped {sub['dropped']}{', BEHIND' if sub['behind'] else ''}")
    return 0


async def _fetch_status(address: Address) -> StatusMessage:
    ws = await connect(address, "/status")
    try:
        message = decode_server_message(await ws.recv())
    except (ConnectionClosed, msgspec.DecodeError) as exc:
        raise ClientError(f"no status from the daemon at {address}: {exc}") from None
    finally:
        await ws.close()
    if not isinstance(message, StatusMessage):
        raise ClientError(f"unexpected reply from the daemon at {address}: {message!r}"[:200])
    return message


# -- helpers -------------------------------------------------------------------


def _quiet(*args: Any) -> None:
    pass


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush doesn't fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
