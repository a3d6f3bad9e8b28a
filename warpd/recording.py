"""Recordings and their pace: what ``warpd play`` shows and ``warpd demo`` pushes (sans-I/O).

A recording is one of:

- an **upstream stream**, in any format ``warpd convert`` reads: its events
  are framed and decoded as a fresh daemon would (:class:`UpstreamEvents`,
  :class:`UpstreamRecording`). The only upstream format that stamps each
  event is Ollama's (``created_at``, RFC 3339, on every object); events of
  the others carry no time.
- a **capture** made by ``warpd subscribe --output jsonl``: one server message
  per line, each with the optional ``received`` field (Unix seconds, a float)
  that the subscriber adds when it writes the line (:class:`CaptureReader`;
  docs/protocol.md, "Captures").

Either way the reader turns bytes into *records*: ``(time, item)`` pairs whose
``time`` is the Unix time the item was sent or received, or None when the
recording does not say. :func:`pace` adds to each record how long to wait
before showing or sending its item, and
:class:`PlaybackClock` gives the renderer the recording's time of day.
Nothing here sleeps, reads or writes: the commands are loops around it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec

from warpd.errors import InputError
from warpd.ingest.convert import framing_for
from warpd.ingest.framing import AutoFramer, FramedEvent, LineSplitter, make_framer
from warpd.ingest.producer import ProducerStreams
from warpd.protocol import BlocksMessage, ServerMessage, decode_server_message

T = TypeVar("T")

# Between two items whose times are not both known: about the pace of a
# model writing ~30 tokens a second.
STEADY_SECONDS = 0.03
# A longer pause in a recording (a subscriber left open between two streams)
# is shortened to this: nobody wants to watch a recorded silence.
MAX_GAP_SECONDS = 2.0

# The message types that start a capture (a subscriber's first line is
# ``hello``); upstream streams never use these ``type`` values.
CAPTURE_TYPES = frozenset({"hello", "blocks", "snapshot", "resync"})
# Past this much input without a whole first line, it is not a capture.
_SNIFF_LIMIT = 1024 * 1024

Record = tuple[float | None, T]


def pace(
    records: Iterable[tuple[float | None, T]],
    *,
    speed: float = 1.0,
    steady: float = STEADY_SECONDS,
    max_gap: float = MAX_GAP_SECONDS,
) -> Iterator[tuple[float, float | None, T]]:
    """Yield ``(delay, time, item)`` for each record: seconds to wait before the item.

    Between two items whose times are both known the delay is their recorded
    gap divided by ``speed`` (a clock that went backwards counts as no gap);
    otherwise it is ``steady / speed``. No delay is longer than ``max_gap``
    seconds; the first item has none. Raises ValueError if ``speed`` is not
    a positive number. Lazy: records are read as items are asked for.
    """
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed must be a positive number, not {speed}")
    previous: float | None = None
    first = True
    for recorded, item in records:
        if first:
            delay = 0.0
            first = False
        elif recorded is not None and previous is not None:
            delay = max(0.0, recorded - previous) / speed
        else:
            delay = steady / speed
        previous = recorded
        yield min(delay, max_gap), recorded, item


class PlaybackClock:
    """The recording's time of day, for the renderer's clock (stream headers, durations).

    Call :meth:`shown` as each record is shown; :meth:`now` is then the last
    known recorded time plus the real time since, times ``speed``. Until a
    time is known it is the wall clock. ``monotonic`` and ``wall`` are
    injectable for tests.
    """

    def __init__(
        self,
        speed: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.speed = speed
        self._monotonic = monotonic
        self._wall = wall
        self._anchor: tuple[float, float] | None = None

    def shown(self, recorded: float | None, created: float | None = None) -> None:
        """A record stamped ``recorded`` is being shown; ``created``: its stream's start time.

        A record without a time keeps the clock running from the last one; the
        first stream's ``created`` anchors a recording that has no times at all.
        """
        if recorded is None and self._anchor is None:
            recorded = created
        if recorded is not None:
            self._anchor = (recorded, self._monotonic())

    def now(self) -> float:
        if self._anchor is None:
            return self._wall()
        recorded, at = self._anchor
        return recorded + (self._monotonic() - at) * self.speed


# -- upstream streams ---------------------------------------------------------


class _Stamped(msgspec.Struct):
    """The per-event time of an upstream event, where its format has one (Ollama)."""

    created_at: Any = None


_stamped_decoder = msgspec.json.Decoder(_Stamped)
# A raw (plain text) chunk is cut into words, each with the spaces after it,
# so that a text recording plays as it would stream.
_WORD = re.compile(rb"\S*\s*")


def event_time(payload: bytes) -> float | None:
    """The Unix time an upstream event carries (Ollama's ``created_at``), or None."""
    if b'"created_at"' not in payload or not payload.startswith(b"{"):
        return None
    try:
        stamp = _stamped_decoder.decode(payload).created_at
        return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None
    except (msgspec.DecodeError, ValueError, OverflowError):
        return None


class UpstreamEvents:
    """Bytes of an upstream recording in, timed events out: ``(time, event)`` records.

    ``feed`` any split of the input, then ``close``; each returns the events
    completed so far. An event's payload is what a producer would push (one
    SSE event's ``data``, one JSON line, or a word of plain text), its line
    where it started (0 for text). :attr:`plain_text` is
    True once the input is known to be plain text (format ``text``, or
    ``auto`` input that is neither SSE nor JSON).
    """

    def __init__(self, format: str = "auto") -> None:
        self.format = format
        self._framer = make_framer(framing_for(format), text=format == "auto")

    @property
    def plain_text(self) -> bool:
        if self.format == "text":
            return True
        framer = self._framer
        return self.format == "auto" and isinstance(framer, AutoFramer) and (
            framer.framing == "raw"
        )

    def feed(self, data: bytes) -> list[Record[FramedEvent]]:
        return self._timed(self._framer.feed(data))

    def close(self) -> list[Record[FramedEvent]]:
        return self._timed(self._framer.close())

    def _timed(self, events: list[FramedEvent]) -> list[Record[FramedEvent]]:
        if self.plain_text:
            return [
                (None, FramedEvent(word, 0))
                for e in events
                for word in _WORD.findall(e.payload)
                if word
            ]
        return [(event_time(e.payload), e) for e in events]


class UpstreamRecording:
    """An upstream recording's bytes in, timed block messages out, as a fresh daemon gives them.

    Streams are numbered ``session/1``, ``session/2``…, messages ``seq`` 1, 2…
    An irregular event is skipped or repaired the way a daemon does it, with
    an input error block saying so; nothing is raised.
    A stream's ``created`` is its first event's recorded time when known.
    """

    def __init__(
        self, format: str = "auto", *, session: str = "default",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.events = UpstreamEvents(format)
        self._clock = clock
        self._now: float | None = None
        self._counter = 0
        self._seq = 0
        self._failed = False
        # The bad event's error, once one ended the input (for callers to report it).
        self.error: InputError | None = None
        self._session = session
        self._producer = ProducerStreams(
            session, format, self._new_stream_id, clock=self._event_clock
        )

    def feed(self, data: bytes) -> list[Record[BlocksMessage]]:
        return self._decode(self.events.feed(data))

    def close(self) -> list[Record[BlocksMessage]]:
        records = self._decode(self.events.close())
        if not self._failed:
            records += self._numbered(self._now, self._producer.end())
        return records

    def _decode(self, events: list[Record[FramedEvent]]) -> list[Record[BlocksMessage]]:
        out: list[Record[BlocksMessage]] = []
        for recorded, event in events:
            if self._failed:
                break
            if self.events.plain_text:
                self._producer.plain_text_input()
            self._now = recorded
            try:
                messages = self._producer.feed(event.payload)
            except InputError as exc:
                if event.line:
                    exc.message = f"line {event.line}: {exc.message}"
                messages = self._producer.fail(exc)
                self._failed = True
                self.error = exc
            out += self._numbered(recorded, messages)
        return out

    def _numbered(
        self, recorded: float | None, messages: list[BlocksMessage]
    ) -> list[Record[BlocksMessage]]:
        for message in messages:
            self._seq += 1
            message.seq = self._seq
        return [(recorded, m) for m in messages]

    def _new_stream_id(self) -> str:
        self._counter += 1
        return f"{self._session}/{self._counter}"

    def _event_clock(self) -> float:
        return self._now if self._now is not None else self._clock()


# -- captures -----------------------------------------------------------------


class _Received(msgspec.Struct):
    received: float | None = None


_received_decoder = msgspec.json.Decoder(_Received)


class CaptureReader:
    """Lines of a ``warpd subscribe --output jsonl`` capture in, ``(received, message)`` out.

    A line that is not a server message raises :class:`InputError` naming
    its line number; blank lines are skipped.
    """

    def __init__(self) -> None:
        self._lines = LineSplitter()

    def feed(self, data: bytes) -> list[Record[ServerMessage]]:
        return self._take(self._lines.feed(data))

    def close(self) -> list[Record[ServerMessage]]:
        return self._take(self._lines.close())

    def _take(self, lines: list[bytes]) -> list[Record[ServerMessage]]:
        first = self._lines.lines_seen - len(lines) + 1
        out: list[Record[ServerMessage]] = []
        for number, line in enumerate(lines, start=first):
            if not line.strip():
                continue
            try:
                message = decode_server_message(line)
                received = _received_decoder.decode(line).received
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"line {number}: not a warpd message: {exc}") from None
            out.append((received, message))
        return out


def is_capture(first_line: bytes) -> bool:
    """Whether a recording whose first non-blank line is ``first_line`` is a capture."""
    line = first_line.strip()
    if not line.startswith(b"{"):
        return False
    try:
        kind = msgspec.json.decode(line, type=dict[str, Any]).get("type")
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    return kind in CAPTURE_TYPES


RecordingKind = Literal["capture", "upstream"]


class RecordingReader:
    """Any recording's bytes in, timed messages out: a capture or an upstream stream.

    ``format`` is ``capture``, an upstream format, or ``auto``: a capture when
    the first non-blank line is a warpd message (:func:`is_capture`), else an
    upstream stream of any format. Input is held until that line is whole.
    :attr:`kind` says which, once known. Raises :class:`InputError` for a
    capture line that is not a warpd message.
    """

    def __init__(self, format: str = "auto", *, session: str = "default") -> None:
        self.format = format
        self._session = session
        self._held = b""
        self._inner: CaptureReader | UpstreamRecording | None = None
        if format == "capture":
            self._inner = CaptureReader()
        elif format != "auto":
            self._inner = UpstreamRecording(format, session=session)

    @property
    def error(self) -> InputError | None:
        """The error of the bad event that ended an upstream recording, if one did."""
        return self._inner.error if isinstance(self._inner, UpstreamRecording) else None

    @property
    def kind(self) -> RecordingKind | None:
        if self._inner is None:
            return None
        return "capture" if isinstance(self._inner, CaptureReader) else "upstream"

    def feed(self, data: bytes) -> list[Record[ServerMessage]]:
        if self._inner is None:
            self._held += data
            if not self._choose(final=False):
                return []
            data, self._held = self._held, b""
        assert self._inner is not None
        return list(self._inner.feed(data))

    def close(self) -> list[Record[ServerMessage]]:
        if self._inner is None:
            self._choose(final=True)
            assert self._inner is not None
            data, self._held = self._held, b""
            return list(self._inner.feed(data)) + list(self._inner.close())
        return list(self._inner.close())

    def _choose(self, *, final: bool) -> bool:
        start = self._held.lstrip()
        line, newline, _ = start.partition(b"\n")
        if not newline and not final and len(self._held) <= _SNIFF_LIMIT:
            return False
        if is_capture(line):
            self._inner = CaptureReader()
        else:
            self._inner = UpstreamRecording("auto", session=self._session)
        return True


def read_records(chunks: Iterable[bytes], reader: RecordingReader) -> Iterator[Record[Any]]:
    """Every record of ``chunks`` (any split of a recording) through ``reader``, lazily."""
    for chunk in chunks:
        yield from reader.feed(chunk)
    yield from reader.close()
