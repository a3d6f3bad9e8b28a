"""Splitting a byte stream into upstream events: SSE, JSON lines, or raw text.

Framers are sans-I/O: ``feed(data)`` takes any chunk of bytes and returns the
events completed by it; ``close()`` returns what the end of input completes.
Lines are split on bytes (``\\r\\n``, ``\\n`` or ``\\r``) before anything is
decoded, so a UTF-8 character split across reads is never broken.

Each event is a :class:`FramedEvent`: the payload (an SSE event's ``data``,
one JSON line, or a raw chunk) and the 1-based input line where it started,
for error messages.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Framing = Literal["sse", "jsonl", "raw"]


class FramedEvent(msgspec.Struct, gc=False):
    """One upstream event's payload and the input line it started on (0 for raw chunks)."""

    payload: bytes
    line: int
    name: str | None = None


class LineSplitter:
    """Splits bytes into lines on ``\\r\\n``, ``\\n`` or ``\\r``; keeps the partial last line."""

    def __init__(self) -> None:
        # The unfinished last line, kept as parts so that a long line arriving
        # in many reads is joined once, not re-copied on every read.
        self._partial: list[bytes] = []
        # The previous chunk ended with \r: a \n starting the next one belongs to it.
        self._swallow_lf = False
        self.lines_seen = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete lines (without their endings) that ``data`` finishes."""
        if self._swallow_lf and data[:1] == b"\n":
            data = data[1:]
        self._swallow_lf = False
        if b"\n" not in data and b"\r" not in data:
            if data:
                self._partial.append(data)
            return []
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial = []
        if b"\r" in data:
            self._swallow_lf = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        self.lines_seen += len(lines)
        return lines

    def close(self) -> list[bytes]:
        """Return the last line if the input did not end with a line ending."""
        rest = b"".join(self._partial)
        self._partial = []
        if rest:
            self.lines_seen += 1
            return [rest]
        return []


class SSEFramer:
    """Server-Sent Events: ``data:`` lines joined by ``\\n`` until a blank line.

    ``:`` comment lines, ``id:`` and ``retry:`` are ignored; ``event:`` names the
    event. An event left without its blank line at the end of input is still
    delivered (a cut-off recording keeps its last event).
    """

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._data: list[bytes] = []
        self._name: str | None = None
        self._start = 0

    def feed(self, data: bytes) -> list[FramedEvent]:
        return self._take(self._lines.feed(data))

    def close(self) -> list[FramedEvent]:
        events = self._take(self._lines.close())
        if self._data:
            events.append(self._dispatch())
        return events

    def _take(self, lines: list[bytes]) -> list[FramedEvent]:
        events: list[FramedEvent] = []
        first_line = self._lines.lines_seen - len(lines)
        for offset, line in enumerate(lines, start=1):
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    self._name = None
                continue
            if line[0] == 0x3A:  # b":" — a comment
                continue
            field, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                if not self._data:
                    self._start = first_line + offset
                self._data.append(value)
            elif field == b"event":
                self._name = value.decode("utf-8", "replace")
            # id:, retry: and unknown fields are ignored, as the SSE spec says.
        return events

    def _dispatch(self) -> FramedEvent:
        payload = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = FramedEvent(payload, self._start, self._name)
        self._data = []
        self._name = None
        return event


class JSONLinesFramer:
    """One event per non-blank line (JSON lines, NDJSON)."""

    def __init__(self) -> None:
        self._lines = LineSplitter()

    def feed(self, data: bytes) -> list[FramedEvent]:
        return self._take(self._lines.feed(data))

    def close(self) -> list[FramedEvent]:
        return self._take(self._lines.close())

    def _take(self, lines: list[bytes]) -> list[FramedEvent]:
        first_line = self._lines.lines_seen - len(lines)
        return [
            FramedEvent(line.strip(), first_line + offset)
            for offset, line in enumerate(lines, start=1)
            if line.strip()
        ]


class RawFramer:
    """Every chunk is an event as it is (plain text; the decoder handles UTF-8)."""

    def feed(self, data: bytes) -> list[FramedEvent]:
        return [FramedEvent(data, 0)] if data else []

    def close(self) -> list[FramedEvent]:
        return []


# SSE fields other than data, and comments (which start with ":").
_SSE_FIELDS = (b"event:", b"id:", b"retry:", b":")
# Past this much input the start has said all it will: decide.
_SNIFF_LIMIT = 1024 * 1024


def sniff_framing(held: bytes, *, final: bool = True) -> Framing | None:
    """The framing of an input that starts with ``held``, or None if more bytes must decide.

    JSON lines when the first line is a JSON object; SSE once a ``data:``
    line comes before anything that is not an SSE field, comment or blank
    line; raw text otherwise — so plain text that merely starts with ``[``,
    ``{`` or ``:`` is text, not a broken stream. ``final``: no more input
    will come.
    """
    start = held.lstrip()
    settled = final or len(held) > _SNIFF_LIMIT
    if not start:
        return "raw" if settled else None
    lines = start.splitlines()
    if not settled and not start.endswith((b"\n", b"\r")):
        partial = lines.pop()  # the last line is still arriving
        if not lines and not partial.startswith((b"{", b"[", b"data:", *_SSE_FIELDS)) and not (
            _could_become_sse(partial)
        ):
            return "raw"
    if not lines:
        return None
    if start[:1] in (b"{", b"["):
        return "jsonl" if _is_json_object(lines[0]) else "raw"
    for line in lines:
        if line.startswith(b"data:"):
            return "sse"
        if line.strip() and not line.startswith(_SSE_FIELDS):
            return "raw"
    return "raw" if settled else None


def _is_json_object(line: bytes) -> bool:
    """Whether a line is shaped like a JSON object (a broken one is then reported, not shown)."""
    line = line.strip()
    return line.startswith(b"{") and line.endswith(b"}")


def _could_become_sse(start: bytes) -> bool:
    """Whether more bytes could still make ``start`` an SSE field name."""
    return any(len(start) < len(s) and s.startswith(start) for s in (b"data:", *_SSE_FIELDS))


class AutoFramer:
    """Chooses SSE, JSON lines or raw text from the start of the input (:func:`sniff_framing`).

    It holds the input back until the start decides (usually the first line,
    or until :meth:`close`); nothing is lost, leading blank lines included.
    ``framing`` tells which was chosen once known: callers with format
    ``auto`` must then decode ``raw`` input as plain text.
    """

    def __init__(self) -> None:
        self._inner: SSEFramer | JSONLinesFramer | RawFramer | None = None
        self._pending = b""
        self.framing: Framing | None = None

    def feed(self, data: bytes) -> list[FramedEvent]:
        if self._inner is None:
            self._pending += data
            if not self._choose(final=False):
                return []
            data, self._pending = self._pending, b""
        assert self._inner is not None
        return self._inner.feed(data)

    def close(self) -> list[FramedEvent]:
        if self._inner is None:
            if not self._pending.strip():
                # Nothing but blank input: no stream at all.
                return []
            self._choose(final=True)
            assert self._inner is not None
            events = self._inner.feed(self._pending)
            self._pending = b""
            return events + self._inner.close()
        return self._inner.close()

    def _choose(self, *, final: bool) -> bool:
        framing = sniff_framing(self._pending, final=final)
        if framing is None:
            return False
        self.framing = framing
        if framing == "jsonl":
            self._inner = JSONLinesFramer()
        elif framing == "sse":
            self._inner = SSEFramer()
        else:
            self._inner = RawFramer()
        return True


Framer = SSEFramer | JSONLinesFramer | RawFramer | AutoFramer


def make_framer(framing: Framing | Literal["auto"]) -> Framer:
    """Return a new framer for ``framing`` (``auto`` picks SSE, JSON lines or raw text)."""
    if framing == "sse":
        return SSEFramer()
    if framing == "jsonl":
        return JSONLinesFramer()
    if framing == "raw":
        return RawFramer()
    return AutoFramer()


def sse_payload(frame: bytes) -> bytes:
    """Return the ``data`` of a frame that holds one whole SSE event, else the frame.

    Producers may send each event as its SSE text (``data: {...}``) instead of
    its bare payload; this accepts both.
    """
    if frame[:5] != b"data:" and frame[:6] != b"event:" and frame[:1] != b":":
        return frame
    framer = SSEFramer()
    events = framer.feed(frame) + framer.close()
    if not events:
        return b""
    return events[0].payload if len(events) == 1 else b"\n".join(e.payload for e in events)
