"""Splitting a byte stream into upstream events: SSE, JSON lines, or raw text.

Framers are sans-I/O: ``feed(data)`` takes any chunk of bytes and returns the
events completed by it; ``close()`` returns what the end of input completes.
Lines are split on bytes (``\\r\\n``, ``\\n`` or ``\\r``) before anything is
decoded, so a UTF-8 character split across reads is never broken. A UTF-8
byte order mark at the start of the input is not part of it (the WHATWG SSE
rule; editors and PowerShell write one at the start of saved recordings).

Each event is a :class:`FramedEvent`: the payload (an SSE event's ``data``,
one JSON line, or a raw chunk) and the 1-based input line where it started,
for error messages.

With ``max_event_bytes``, an event (or a line) larger than that is not kept:
its bytes are discarded as they arrive, up to the next line boundary, and it
comes out as a :class:`FramedEvent` with an empty payload and ``oversized``
set to its size, so that the caller can record it and go on. Nothing is ever
buffered beyond the limit.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Framing = Literal["sse", "jsonl", "raw"]

# A UTF-8 byte order mark: ignored at the start of an input.
_BOM = b"\xef\xbb\xbf"


class FramedEvent(msgspec.Struct, gc=False):
    """One upstream event's payload and the input line it started on (0 for raw chunks).

    ``oversized`` is the size in bytes of an event that was over the
    framer's limit: its payload was discarded (and is empty).
    """

    payload: bytes
    line: int
    name: str | None = None
    oversized: int = 0


def _oversized_line(size: int) -> bytes:
    """What LineSplitter returns for a line over its limit: a line feed, then the size.

    No real line holds a line feed, so this cannot be confused with one, and
    it costs SSE nothing on its hot path: an SSE framer meets it as an
    unknown field.
    """
    return b"\n%d" % size


def _oversized_size(line: bytes) -> int:
    """The size of the line ``line`` stands for, or 0 if it is a real line."""
    return int(line[1:]) if line[:1] == b"\n" else 0


class LineSplitter:
    """Splits bytes into lines on ``\\r\\n``, ``\\n`` or ``\\r``; keeps the partial last line.

    A line longer than ``max_line_bytes`` is discarded as it arrives and
    returned as a line feed followed by its size (see :func:`_oversized_line`).
    """

    def __init__(self, max_line_bytes: int | None = None) -> None:
        # The unfinished last line, kept as parts so that a long line arriving
        # in many reads is joined once, not re-copied on every read.
        self._partial: list[bytes] = []
        self._partial_size = 0
        # Bytes of an over-long line discarded so far (0: not discarding).
        self._discarded = 0
        self._max = max_line_bytes
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
                self._hold(data)
            return []
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial = []
            self._partial_size = 0
        if b"\r" in data:
            self._swallow_lf = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        rest = lines.pop()
        if not self.lines_seen and lines[0][:3] == _BOM:
            lines[0] = lines[0][3:]
        limit = self._max
        if self._discarded:
            # The over-long line that was being discarded ends here.
            lines[0] = _oversized_line(self._discarded + len(lines[0]))
            self._discarded = 0
        if limit is not None and len(data) > limit:
            lines = [_oversized_line(len(n)) if len(n) > limit else n for n in lines]
        if rest:
            self._hold(rest)
        self.lines_seen += len(lines)
        return lines

    def close(self) -> list[bytes]:
        """Return the last line if the input did not end with a line ending."""
        if self._discarded:
            size, self._discarded = self._discarded, 0
            self.lines_seen += 1
            return [_oversized_line(size)]
        rest = b"".join(self._partial)
        self._partial = []
        self._partial_size = 0
        if not self.lines_seen and rest[:3] == _BOM:
            rest = rest[3:]
        if rest:
            self.lines_seen += 1
            return [rest]
        return []

    def _hold(self, data: bytes) -> None:
        """Keep the start of an unfinished line, or count it if the line is over the limit."""
        if self._discarded:
            self._discarded += len(data)
            return
        self._partial.append(data)
        self._partial_size += len(data)
        if self._max is not None and self._partial_size > self._max:
            self._discarded = self._partial_size
            self._partial = []
            self._partial_size = 0


class SSEFramer:
    """Server-Sent Events: ``data:`` lines joined by ``\\n`` until a blank line.

    ``:`` comment lines, ``id:`` and ``retry:`` are ignored; ``event:`` names the
    event. An ``error:`` line, which llama.cpp's server sent for an error in
    mid-stream until late 2025 (``error: {"code": 500, "message": …}``), is
    read as the data line it means, ``data: {"error": …}`` (what later
    versions send), so that the provider's error is not lost in an unknown
    field. An event whose data is empty or only whitespace is not an event
    (the WHATWG rule for an empty data buffer; proxies send ``data:`` lines as
    keep-alives). An event left without its blank line at the end of input is
    still delivered (a cut-off recording keeps its last event). An event over
    ``max_event_bytes`` comes out ``oversized`` (see the module docstring).
    """

    def __init__(self, max_event_bytes: int | None = None) -> None:
        # A data line holds the "data:" field name besides the event's bytes.
        self._lines = LineSplitter(None if max_event_bytes is None else max_event_bytes + 16)
        self._max = max_event_bytes
        self._data: list[bytes] = []
        self._size = 0
        # Bytes of this event discarded for being over the limit (0: none).
        self._oversized = 0
        self._name: str | None = None
        self._start = 0

    def feed(self, data: bytes) -> list[FramedEvent]:
        return self._take(self._lines.feed(data))

    def close(self) -> list[FramedEvent]:
        events = self._take(self._lines.close())
        if self._data or self._oversized:
            self._dispatch(events)
        return events

    def _take(self, lines: list[bytes]) -> list[FramedEvent]:
        events: list[FramedEvent] = []
        first_line = self._lines.lines_seen - len(lines)
        for offset, line in enumerate(lines, start=1):
            if not line:
                if self._data or self._oversized:
                    self._dispatch(events)
                else:
                    self._name = None
                continue
            if line[0] == 0x3A:  # b":" — a comment
                continue
            field, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if field == b"error" and sep:
                field, value = b"data", _error_data(value)
            if field == b"data":
                if not self._data:
                    if self._oversized:
                        self._oversized += len(value)
                        continue
                    self._start = first_line + offset
                self._data.append(value)
                if self._max is not None:
                    self._size += len(value) + 1
                    if self._size > self._max:
                        self._oversized, self._data, self._size = self._size, [], 0
            elif field == b"event":
                self._name = value.decode("utf-8", "replace")
            elif line[0] == 0x0A:
                # A line over the limit: the event it belongs to is too.
                if not self._data and not self._oversized:
                    self._start = first_line + offset
                self._oversized += _oversized_size(line) + self._size
                self._data = []
                self._size = 0
            # id:, retry: and unknown fields are ignored, as the SSE spec says.
        return events

    def _dispatch(self, events: list[FramedEvent]) -> None:
        """End the event being read: add it to ``events`` unless its data is empty."""
        if self._oversized:
            events.append(FramedEvent(b"", self._start, self._name, self._oversized))
        else:
            payload = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            if payload and not payload.isspace():
                events.append(FramedEvent(payload, self._start, self._name))
        self._data = []
        self._size = 0
        self._oversized = 0
        self._name = None


def _error_data(value: bytes) -> bytes:
    """The data an ``error:`` line means: ``{"error": value}`` (a string if not a JSON object)."""
    if value.strip()[:1] == b"{":
        return b'{"error":' + value + b"}"
    return b'{"error":' + msgspec.json.encode(value.decode("utf-8", "replace")) + b"}"


class JSONLinesFramer:
    """One event per non-blank line (JSON lines, NDJSON); a line over the limit is ``oversized``."""

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._lines = LineSplitter(max_event_bytes)

    def feed(self, data: bytes) -> list[FramedEvent]:
        return self._take(self._lines.feed(data))

    def close(self) -> list[FramedEvent]:
        return self._take(self._lines.close())

    def _take(self, lines: list[bytes]) -> list[FramedEvent]:
        first_line = self._lines.lines_seen - len(lines)
        events: list[FramedEvent] = []
        for offset, line in enumerate(lines, start=1):
            if line[:1] == b"\n":
                events.append(FramedEvent(b"", first_line + offset, None, _oversized_size(line)))
            elif line and not line.isspace():
                events.append(FramedEvent(line.strip(), first_line + offset))
        return events


class RawFramer:
    """Every chunk is an event as it is (plain text; the decoder handles UTF-8)."""

    def feed(self, data: bytes) -> list[FramedEvent]:
        return [FramedEvent(data, 0)] if data else []

    def close(self) -> list[FramedEvent]:
        return []


# SSE fields other than data, and comments (which start with ":").
_SSE_FIELDS = (b"event:", b"id:", b"retry:", b"error:", b":")
# Past this much input the start has said all it will: decide.
_SNIFF_LIMIT = 1024 * 1024
# The most input held as one JSON document when no event size limit is given
# (the default limits.max_frame_bytes).
_DOCUMENT_LIMIT = 16 * 1024 * 1024
Sniffed = Framing | Literal["document"]


def sniff_framing(held: bytes, *, final: bool = True) -> Sniffed | None:
    """The framing of an input that starts with ``held``, or None if more bytes must decide.

    JSON lines when the first line is a JSON object; ``document`` when the
    input starts with ``{`` but its first line is not a whole object (a
    pretty-printed JSON body, as ``curl`` shows one): one JSON object if the
    whole input is one, which only its end can tell (:class:`AutoFramer`
    holds it); SSE once a ``data:`` line comes before anything that is not
    an SSE field, comment or blank line; raw text otherwise — so plain text
    that merely starts with ``[`` or ``:`` is text, not a broken stream.
    ``final``: no more input will come.
    """
    settled = final or len(held) > _SNIFF_LIMIT
    if not settled and held and len(held) < len(_BOM) and _BOM.startswith(held):
        return None  # the start of a byte order mark
    start = held.removeprefix(_BOM).lstrip()
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
    if start[:1] == b"{":
        if settled and not final and len(lines) == 1 and not start.endswith((b"\n", b"\r")):
            # Past the sniff limit with the first line still arriving: a line
            # that starts a JSON object and runs on for a MiB is an event (an
            # image's base64, a long answer), as it is when read whole.
            return "jsonl"
        return "jsonl" if _is_json_object(lines[0]) else "document"
    if start[:1] == b"[":
        return "raw"
    for line in lines:
        if line.startswith(b"data:"):
            return "sse"
        if line.strip() and not line.startswith(_SSE_FIELDS):
            return "raw"
    return "raw" if settled else None


def event_framing(held: bytes, *, final: bool = True) -> Framing | None:
    """SSE or JSON lines for an input that holds events; None if more bytes must decide.

    The first line that starts with ``data:`` (SSE) or with ``{`` or ``[``
    (JSON lines) decides; lines before it are not looked at. An input with
    neither is read as JSON lines: each of its lines is then reported as an
    event that is not JSON, rather than skipped unseen as SSE would skip it.
    """
    settled = final or len(held) > _SNIFF_LIMIT
    lines = held.removeprefix(_BOM).splitlines()
    if not settled and lines and not held.endswith((b"\n", b"\r")):
        lines.pop()  # the last line is still arriving
    for line in lines:
        line = line.lstrip()
        if line.startswith(b"data:"):
            return "sse"
        if line.startswith((b"{", b"[")):
            return "jsonl"
    return "jsonl" if settled else None


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
    A ``document`` start is held to the end of input: if all of it is one
    JSON object it is one event of JSON lines (compacted to one line), else
    raw text — as it is once it grows past ``max_event_bytes`` (16 MiB, the
    default limits.max_frame_bytes, without one): it could not be one event.
    ``framing`` tells which was chosen once known: callers with format
    ``auto`` must then decode ``raw`` input as plain text.

    With ``text=False`` (the format is given, and is not plain text) the
    input holds events whatever its start looks like: instead of raw text it
    is SSE or JSON lines, by its first line that starts with ``data:`` or
    with ``{``/``[`` (:func:`event_framing`), so that a line before the
    events (``curl -i``'s headers, a proxy's banner) costs that line, not
    the whole input.
    """

    def __init__(self, max_event_bytes: int | None = None, *, text: bool = True) -> None:
        self._inner: SSEFramer | JSONLinesFramer | RawFramer | None = None
        self._pending = b""
        self._max = max_event_bytes
        # The parts of a document being held (None: not holding one), and their size.
        self._document: list[bytes] | None = None
        self._document_size = 0
        self._text = text
        self.framing: Framing | None = None

    def feed(self, data: bytes) -> list[FramedEvent]:
        if self._inner is None:
            if self._document is None:
                self._pending += data
                sniffed = self._sniff(final=False)
                if sniffed is None:
                    return []
                data, self._pending = self._pending, b""
                if sniffed != "document":
                    return self._choose(sniffed).feed(data)
                self._document = []
            self._document.append(data)
            self._document_size += len(data)
            if self._document_size <= (self._max or _DOCUMENT_LIMIT):
                return []
            return self._release_document(ended=False)
        return self._inner.feed(data)

    def close(self) -> list[FramedEvent]:
        if self._inner is not None:
            return self._inner.close()
        if self._document is None:
            if not self._pending.strip():
                # Nothing but blank input: no stream at all.
                return []
            sniffed = self._sniff(final=True)
            assert sniffed is not None
            if sniffed != "document":
                inner = self._choose(sniffed)
                return inner.feed(self._pending) + inner.close()
            self._document = [self._pending]
            self._document_size = len(self._pending)
        events = self._release_document(ended=True)
        assert self._inner is not None
        return events + self._inner.close()

    def _release_document(self, *, ended: bool) -> list[FramedEvent]:
        """Decide what the held document is: one JSON event if ``ended`` within the limit."""
        parts, self._document = self._document, None
        assert parts is not None
        if ended and self._document_size <= (self._max or _DOCUMENT_LIMIT):
            compact = one_json_object(b"".join(parts))
            if compact is not None:
                return self._choose("jsonl").feed(compact)
        # Not one event: as the reads came (each within the limit) — text, or with a
        # format given, the events its lines hold (event_framing).
        framing: Framing = "raw"
        if not self._text:
            framing = event_framing(b"".join(parts)) or "jsonl"
        inner = self._choose(framing)
        return [event for part in parts for event in inner.feed(part)]

    def _sniff(self, *, final: bool) -> Sniffed | None:
        """:func:`sniff_framing` of what is held, but never raw text when a format is given."""
        sniffed = sniff_framing(self._pending, final=final)
        if sniffed == "raw" and not self._text:
            return event_framing(self._pending, final=final)
        return sniffed

    def _choose(self, framing: Framing) -> SSEFramer | JSONLinesFramer | RawFramer:
        self.framing = framing
        inner: SSEFramer | JSONLinesFramer | RawFramer
        if framing == "jsonl":
            inner = JSONLinesFramer(self._max)
        elif framing == "sse":
            inner = SSEFramer(self._max)
        else:
            inner = RawFramer()
        self._inner = inner
        return inner


def one_json_object(data: bytes) -> bytes | None:
    """``data`` on one line if it is exactly one JSON object (blanks around it aside), else None.

    A JSON document holds no line ending but as whitespace (a string cannot
    hold one raw), so its compact form is one JSON line. The bytes inside its
    strings are not checked here (the decoder says what is wrong with them).
    """
    try:
        compact = msgspec.json.format(data, indent=0)
    except (msgspec.DecodeError, RecursionError):  # nested past what msgspec parses
        return None
    return compact if compact[:1] == b"{" else None


Framer = SSEFramer | JSONLinesFramer | RawFramer | AutoFramer


def make_framer(
    framing: Framing | Literal["auto"],
    max_event_bytes: int | None = None,
    *,
    text: bool = True,
) -> Framer:
    """Return a new framer for ``framing`` (``auto`` picks SSE, JSON lines or raw text).

    Events over ``max_event_bytes`` come out ``oversized`` (raw chunks are
    never over: they are as big as the reads). ``text=False``: ``auto`` never
    picks raw text (the input's format is known to be one with events; see
    :class:`AutoFramer`).
    """
    if framing == "sse":
        return SSEFramer(max_event_bytes)
    if framing == "jsonl":
        return JSONLinesFramer(max_event_bytes)
    if framing == "raw":
        return RawFramer()
    return AutoFramer(max_event_bytes, text=text)


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
