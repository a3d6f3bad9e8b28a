"""``warpd log`` and ``warpd show``: past streams, read from the history file.

Both read the file directly (a read-only SQLite connection), so they work
whether a daemon is running or not; a running daemon's last commit is at
most a fraction of a second old. The file is the one the config names
(``[history] path``, by default ``$XDG_STATE_HOME/warpd/history.sqlite3``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from warpd.cli.options import checked, non_negative
from warpd.cli.output import terminal_safe_json
from warpd.config import history_path, load_config
from warpd.errors import UserError
from warpd.history import HistoryReader, StreamRow, clear, connect, tokens
from warpd.render.outcome import finish_words
from warpd.render.untrusted import neutralise

# Characters of the answer a `warpd log` line shows.
LINE_TEXT = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``warpd log`` or ``warpd show``, whichever ``parser`` is for."""
    parser.add_argument("--config", type=Path,
                        help="config file naming the history file (default: the XDG one)")
    if parser.prog.split()[-1] == "show":
        parser.description = (
            "One past stream from the history file: rendered as `warpd subscribe` shows "
            "it, as text, as the stored JSON messages, or as Markdown."
        )
        parser.add_argument("stream", help="the stream's id, as `warpd log` lists it")
        parser.add_argument(
            "--output", choices=("pretty", "text", "jsonl", "markdown"),
            help="pretty: rendered like `warpd subscribe` (the default on a terminal); "
            "text: the same without escape sequences; jsonl: the stored messages "
            "(the default elsewhere); markdown: the final blocks as Markdown",
        )
        parser.add_argument("--no-color", action="store_true",
                            help="pretty output without colours (also NO_COLOR)")
        parser.set_defaults(run=run_show)
        return
    parser.description = (
        "Past streams from the history file, oldest first, one line each: when it "
        "started, its id (SESSION/N, for `warpd show` and `warpd play`), the model, how it "
        "ended, tokens used, and the start of the answer. Works with or without a daemon."
    )
    parser.add_argument("--session", metavar="NAME", help="only this session's streams")
    parser.add_argument("--since", metavar="TIME", type=checked(parse_since),
                        help="only streams started since TIME: 30m, 2h, 1d, or 2025-06-01[T14:00]")
    parser.add_argument("--grep", metavar="TEXT", help="only streams whose answer contains TEXT")
    parser.add_argument("-n", type=non_negative, default=20, metavar="N",
                        help="the last N streams (default 20; 0: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per stream")
    parser.add_argument("--clear", action="store_true",
                        help="delete the stored streams (of --session, or all); asks first")
    parser.add_argument("--yes", action="store_true", help="--clear without asking")
    parser.set_defaults(run=run_log)


def _path(args: argparse.Namespace) -> Path:
    return history_path(load_config(args.config))


# -- log ----------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration back from now (``90s``, ``30m``, ``2h``, ``1d``, ``1w``)
    or a local date/time (ISO 8601); Unix time. UserError naming the value otherwise."""
    now = time.time() if now is None else now
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now - float(match[1]) * _UNITS[match[2]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UserError(
            f"{text!r}: expected a duration like 30m, 2h or 1d, "
            "or a date/time like 2025-06-01 or 2025-06-01T14:00"
        ) from None


def run_log(args: argparse.Namespace) -> int:
    path = _path(args)
    if args.clear:
        return _clear(path, args)
    since = args.since
    reader = HistoryReader(connect(path, readonly=True))
    try:
        rows = reader.streams(session=args.session, since=since, grep=args.grep, limit=args.n)
    finally:
        reader.db.close()
    out = sys.stdout
    if args.json:
        encoder = msgspec.json.Encoder()
        for row in rows:
            out.buffer.write(terminal_safe_json(encoder.encode(row)) + b"\n")
        return 0
    if not rows:
        print("no streams stored" + (" that match" if args.session or since or args.grep
                                      else ""), file=sys.stderr)
        return 0
    lines = [log_fields(row) for row in rows]
    # Columns aligned; on a terminal, each line cut to its width (the answer's start).
    widths = [max(len(fields[i]) for fields in lines) for i in range(5)]
    columns = shutil.get_terminal_size().columns if out.isatty() else 0
    for fields in lines:
        line = "  ".join([*(f.ljust(w) for f, w in zip(fields, widths, strict=False)),
                          fields[5]])
        if columns and len(line) > columns:
            line = line[: columns - 1] + "…"
        out.write(line + "\n")
    return 0


def log_fields(row: StreamRow) -> list[str]:
    """One stream as ``warpd log`` shows it: time, stream (session/N), model, outcome
    (in words, as ``warpd subscribe``'s footer says it), tokens, the start of the
    answer — every value from the stream neutralised."""
    when = datetime.fromtimestamp(row.started).strftime("%Y-%m-%d %H:%M:%S")
    count = tokens(row.usage)
    text = " ".join(row.text.split())
    if len(text) > LINE_TEXT:
        text = text[: LINE_TEXT - 1] + "…"
    return [
        when,
        neutralise(row.stream),
        neutralise(row.model or "-"),
        finish_words(row.outcome),
        f"{count} tok" if count is not None else "",
        neutralise(text),
    ]


def _clear(path: Path, args: argparse.Namespace) -> int:
    what = (f"the stored streams of session {args.session!r}" if args.session
            else "every stored stream")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"--clear deletes {what}: confirm with --yes")
        answer = input(f"Delete {what} from {path}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    count, live = clear(path, args.session)
    kept = f" ({live} live stream(s) kept: clear again once they complete)" if live else ""
    print(f"deleted {count} stream(s) from {path}{kept}", file=sys.stderr)
    return 0


# -- show ---------------------------------------------------------------------------


def stored_stream(args: argparse.Namespace, stream: str) -> list[tuple[int, float, bytes]]:
    """The stored messages of ``stream`` (see HistoryReader.stream_messages); UserError
    when the history file has no such stream. ``args.config`` says where the file is."""
    path = _path(args)
    reader = HistoryReader(connect(path, readonly=True))
    try:
        stored = reader.stream_messages(stream)
    finally:
        reader.db.close()
    if not stored:
        raise UserError(f"no stream {stream!r} in {path} (`warpd log` lists them)")
    return stored


def run_show(args: argparse.Namespace) -> int:
    stored = stored_stream(args, args.stream)
    out = sys.stdout.buffer
    output = args.output or ("pretty" if out.isatty() else "jsonl")
    if output == "jsonl":
        out.write(b"".join(terminal_safe_json(data) + b"\n" for _, _, data in stored))
        return 0
    from warpd.protocol import StreamMessage, decode_server_message

    messages = [m for _, _, data in stored
                if isinstance(m := decode_server_message(data), StreamMessage)]
    if output == "markdown":
        text = markdown(_whole(messages))
        out.write((text if not out.isatty() else _neutral_lines(text)).encode())
        return 0
    from warpd.render import TerminalRenderer
    from warpd.terminal import no_color_requested, terminal_size

    plain = output == "text" or not out.isatty()
    size = terminal_size(out.fileno())
    # The renderer's clock is when each message was received, not now, so
    # durations are the stream's own. Drawn at once (no frames to cap).
    renderer = TerminalRenderer(size.columns, size.lines, fps=0, now=stored[0][1],
                                color=not no_color_requested(args.no_color), plain=plain)
    for _, received, data in stored:
        message = decode_server_message(data)
        if isinstance(message, StreamMessage):
            out.write(renderer.feed(message, received))
    out.write(renderer.close("(still streaming: stored up to here)"))
    return 0


def _whole(messages: list[Any]) -> Any:
    """The stream's final message, or (cut off and not yet completed) its state so far."""
    last = messages[-1]
    if last.complete and not last.streaming:
        return last
    from warpd.broker.mirror import StreamMirror

    mirror = StreamMirror()
    for message in messages:
        mirror.apply(message)
    return mirror.snapshot(last.session, last.stream)


def markdown(message: Any) -> str:
    """A stream's blocks as Markdown: text as is, reasoning quoted, tool calls as JSON."""
    parts = []
    for block in message.blocks:
        if block.type == "text":
            parts.append(block.text or "")
        elif block.type == "reasoning":
            parts.append("\n".join("> " + line for line in (block.text or "").splitlines()))
        elif block.type == "tool_call" and block.tool is not None:
            function = block.tool.function
            parts.append(f"**tool call** `{function.name}`\n\n```json\n{function.arguments}\n```")
        elif block.type == "error" and block.error is not None:
            parts.append(f"**error** ({block.error.source}): {block.error.message}")
    if message.aborted:
        parts.append(f"*aborted: {message.abort_reason or 'no reason given'}*")
    return "\n\n".join(parts) + "\n"


def _neutral_lines(text: str) -> str:
    """Markdown bound for a terminal: each line neutralised (newlines kept)."""
    return "\n".join(neutralise(line) for line in text.split("\n"))
