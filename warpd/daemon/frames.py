"""What the daemon sends on a WebSocket: close codes, large messages in fragments, closes.

Close codes: 1000 done, 1001 daemon shutting down, 1007 bad input (the
error message before it says what and where), 1008 producer idle, 1013 a
limit refused the request, 4008 subscriber too slow for too long.
"""

from __future__ import annotations

import functools
import struct

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

__all__ = [
    "CLOSE_BAD_INPUT",
    "CLOSE_IDLE",
    "CLOSE_LIMIT",
    "CLOSE_TOO_SLOW",
    "FRAGMENT_BYTES",
    "close",
    "close_reason",
    "send_message",
    "text_frame_header",
]

CLOSE_BAD_INPUT = 1007
CLOSE_IDLE = 1008
CLOSE_LIMIT = 1013
CLOSE_TOO_SLOW = 4008

# Messages larger than this go out as fragments of this size: the same bytes
# are sliced for every subscriber, so a big final or snapshot costs each
# socket at most one fragment of framing copy, not a copy of the message.
FRAGMENT_BYTES = 256 * 1024


def close_reason(text: str) -> str:
    """A close reason within the 123 bytes WebSocket allows."""
    data = text.encode()
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "…"


@functools.lru_cache(maxsize=4096)
def text_frame_header(length: int) -> bytes:
    """The RFC 6455 header of an unfragmented text frame from a server (never masked)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


async def send_message(ws: ServerConnection, data: bytes) -> None:
    """Send one encoded message as a text message, fragmented when it is large."""
    if len(data) <= FRAGMENT_BYTES:
        await ws.send(data, text=True)
        return
    view = memoryview(data)
    await ws.send(
        (view[i : i + FRAGMENT_BYTES] for i in range(0, len(data), FRAGMENT_BYTES)), text=True
    )


async def close(ws: ServerConnection, code: int, reason: str) -> None:
    """Close with ``code`` and ``reason`` (shortened to fit); a connection already gone is fine."""
    try:
        await ws.close(code, close_reason(reason))
    except ConnectionClosed:
        pass
