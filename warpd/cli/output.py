"""Block messages written out as JSON lines or SSE, safe to print on a terminal."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, BinaryIO

__all__ = ["jsonl_writer", "sse_writer", "terminal_safe_json"]


def jsonl_writer(out: BinaryIO) -> Callable[[Any, bytes], None]:
    """``write(message, data)``: the message's JSON bytes ``data`` as one line."""

    def write(message: Any, data: bytes) -> None:
        out.write(terminal_safe_json(data) + b"\n")
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
