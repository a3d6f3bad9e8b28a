"""``warpd subscribe``: follow sessions live — rendered, as JSON lines or SSE,
or as the answers' raw text.

A daemon that is not up yet is waited for (``--no-wait`` fails instead);
until the first stream a "waiting for streams" line says it is connected.
It reconnects when the connection drops and resumes where it stood (the
daemon's epoch and the last seq per session). With ``--notify`` (or
``[subscribe] notify``), the terminal posts a notification when a stream
completes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed

from warpd.address import Address, client_address
from warpd.cli.options import add_connect_argument, non_negative
from warpd.cli.output import NotificationOutput, jsonl_writer, sse_writer, text_writer
from warpd.client.connection import connect
from warpd.config import SubscribeConfig, load_config
from warpd.errors import ClientError, DaemonUnavailable, UserError
from warpd.protocol import (
    BlocksMessage,
    ErrorMessage,
    HelloMessage,
    ResyncMessage,
    SnapshotMessage,
    StreamMessage,
    decode_server_message,
)

# Retry delays while the daemon is down: short at first, so a daemon that
# starts is found at once, then doubling up to a bound — a low one before
# the first connection (someone is about to start `warpd serve`), a higher
# one after a connection was lost.
FIRST_RETRY_SECONDS = 0.1
MAX_WAIT_RETRY_SECONDS = 1.0
MAX_RECONNECT_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show a session's streams as they arrive: rendered live on a terminal (pretty), "
        "else as JSON lines; waits for the daemon if it is not up yet, and reconnects."
    )
    parser.add_argument(
        "--session", action="append", metavar="NAME",
        help="session to follow (repeatable; * = all; default: default)",
    )
    parser.add_argument(
        "--output",
        choices=("pretty", "jsonl", "sse", "text"),
        help="pretty: rendered blocks (the default on a terminal; plain text elsewhere); "
        "jsonl, sse: the block messages (the default when not a terminal: jsonl); "
        "text: the answers' raw markdown as it streams, nothing else",
    )
    parser.add_argument(
        "--no-color", action="store_true", help="pretty output without colours (also NO_COLOR)"
    )
    parser.add_argument(
        "--notify",
        action="store_true",
        help="post a terminal notification when a stream completes or fails "
        "(Warp, iTerm2, WezTerm, Ghostty, kitty, foot; also [subscribe] notify)",
    )
    parser.add_argument(
        "--once", action="store_true", help="exit after the first stream completes"
    )
    parser.add_argument("--replay", type=non_negative, default=0, metavar="N",
                        help="first show the last N completed streams")
    parser.add_argument(
        "--no-wait", action="store_true",
        help="fail at once when no daemon is running (default: wait for one)",
    )
    add_connect_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    address = client_address(args.connect)
    sessions = args.session or ["default"]
    return asyncio.run(_subscribe(args, address, sessions))


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


async def _subscribe(args: argparse.Namespace, address: Address, sessions: list[str]) -> int:
    out = sys.stdout.buffer
    output = args.output or ("pretty" if out.isatty() else "jsonl")
    config = load_config().subscribe
    if output != "pretty":
        close: Callable[[], None] = _nothing
        if output == "text":
            write, close = text_writer(out, neutralised=out.isatty())
        elif output == "sse":
            write = sse_writer(out)
        else:
            # jsonl lines carry their receive time, for `warpd play`.
            write = jsonl_writer(out, received=time.time)
        write = _with_notifications(args, config, write, None)
        try:
            return await _subscription(
                args, address, sessions, write, _note_on_stderr, _waiting_on_stderr
            )
        finally:
            close()
    # The renderer (and wcwidth, Pygments) only for pretty output.
    from warpd.render.code import theme_exists
    from warpd.terminal import PrettyOutput, no_color_requested

    if not theme_exists(config.code_theme):
        raise UserError(
            f"config.toml [subscribe] code_theme: no Pygments style named {config.code_theme!r} "
            "(`pygmentize -L styles` lists them)"
        )
    async with PrettyOutput(
        out, no_color=no_color_requested(args.no_color), sessions=sessions,
        theme=config.code_theme,
    ) as pretty:
        write = _with_notifications(args, config, pretty.write, pretty.emit_raw)
        # Our own lines go through the renderer, above its live tail.
        return await _subscription(
            args, address, sessions, write, pretty.note, pretty.waiting
        )


def _nothing() -> None:
    pass


def _with_notifications(
    args: argparse.Namespace,
    config: SubscribeConfig,
    write: Callable[[Any, bytes], None],
    emit: Callable[[bytes], None] | None,
) -> Callable[[Any, bytes], None]:
    """``write``, plus notifications when --notify (or the config) asks for them."""
    if not (args.notify or config.notify):
        return write
    notifications = NotificationOutput(
        os.environ, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer, emit=emit
    )
    if notifications.problem:
        _note_on_stderr(notifications.problem)
        return write

    def write_and_notify(message: Any, data: bytes) -> None:
        write(message, data)
        notifications.write(message, data)

    return write_and_notify


def _note_on_stderr(text: str) -> None:
    print(f"warpd subscribe: {text}", file=sys.stderr)


def _waiting_on_stderr(text: str | None) -> None:
    if text is not None:
        _note_on_stderr(text)


def waiting_text(sessions: list[str]) -> str:
    """The line shown until the first stream: which sessions are being followed."""
    if "*" in sessions:
        return "waiting for streams on any session"
    return "waiting for streams on " + ", ".join(repr(s) for s in sessions)


async def _subscription(
    args: argparse.Namespace,
    address: Address,
    sessions: list[str],
    write: Callable[[Any, bytes], None],
    note: Callable[[str], None],
    waiting: Callable[[str | None], None],
) -> int:
    """Follow ``sessions``, reconnecting and resuming.

    ``note`` shows a line of our own (reconnected…); ``waiting`` shows the
    "waiting for streams" line until the first stream (None takes it away).
    """
    resume = _Resume()
    delay = FIRST_RETRY_SECONDS
    connected_once = False
    said_waiting = False
    streams_seen = False
    while True:
        try:
            ws = await connect(address, f"/subscribe?{resume.query(sessions, args.replay)}")
        except DaemonUnavailable:
            if not connected_once and args.no_wait:
                raise
            if not connected_once and not said_waiting:
                # Once, on stderr: nothing of the renderer's is on screen yet.
                _note_on_stderr(f"no daemon at {address} yet; waiting for one "
                                "(start it with `warpd serve`; --no-wait to fail instead)")
                said_waiting = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_SECONDS if connected_once
                        else MAX_WAIT_RETRY_SECONDS)
            continue
        if connected_once:
            note("reconnected")
        elif said_waiting:
            _note_on_stderr(f"connected to {address}")
        connected_once = True
        delay = FIRST_RETRY_SECONDS
        try:
            while True:
                # The raw bytes: written out as they are, not decoded and re-encoded.
                data = await ws.recv(decode=False)
                message = decode_server_message(data)
                write(message, data)
                if not streams_seen and isinstance(message, StreamMessage):
                    streams_seen = True
                    waiting(None)
                match message:
                    case HelloMessage():
                        if not streams_seen and resume.epoch is None:
                            waiting(waiting_text(sessions))
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

