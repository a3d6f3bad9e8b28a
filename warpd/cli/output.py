"""Block messages written out as JSON lines or SSE, safe to print on a terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from warpd.controls import escape_unsafe

__all__ = ["jsonl_writer", "sse_writer", "terminal_safe_json"]


def jsonl_writer(
    out: BinaryIO, *, received: Callable[[], float] | None = None
) -> Callable[[Any, bytes], None]:
    """``write(message, data)``: the message's JSON bytes ``data`` as one line.

    With ``received`` (a clock giving Unix time), each line also gets the
    field ``"received": SECONDS`` — when the message arrived, so that
    ``warpd play`` can replay a capture at its pace (docs/protocol.md,
    "Captures"). It is added here, not sent by the daemon: the wire message
    is the line without it.
    """

    def write(message: Any, data: bytes) -> None:
        line = terminal_safe_json(data)
        if received is not None and line.endswith(b"}"):
            line = line[:-1] + b',"received":%.6f}' % received()
        out.write(line + b"\n")
        out.flush()

    return write


def sse_writer(out: BinaryIO) -> Callable[[Any, bytes], None]:
    """``write(message, data)``: one SSE event (``id:`` its seq, ``event:`` its type)."""

    def write(message: Any, data: bytes) -> None:
        seq = getattr(message, "seq", None)
        kind = type(message).__struct_config__.tag
        head = f"id: {seq}\n" if isinstance(seq, int) and seq else ""
        out.write(f"{head}event: {kind}\ndata: ".encode() + terminal_safe_json(data) + b"\n\n")
        out.flush()

    return write


def _json_escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}"


def terminal_safe_json(data: bytes) -> bytes:
    """JSON bytes with every character a terminal could act on escaped as ``\\uXXXX``.

    JSON itself escapes only the C0 controls; DEL, the C1 controls, the bidi
    controls and the line and paragraph separators (:data:`warpd.controls.UNSAFE`)
    would reach the terminal raw. Escaped, the JSON value is the same.
    """
    # Every unsafe character a JSON encoder leaves raw is DEL or beyond ASCII.
    if data.isascii() and b"\x7f" not in data:
        return data
    text = data.decode("utf-8", "replace")
    safe = escape_unsafe(text, _json_escape)
    return data if safe is text else safe.encode()
