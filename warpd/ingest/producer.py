"""ProducerStreams: a producer's frames in, the block messages of its streams out.

This is the sans-I/O state of one push connection (or one ``warpd convert``
input): it picks the format, runs a decoder and a BlockAssembler per stream,
starts a new stream after each one ends, and numbers frames for errors.
The daemon's push handler and ``warpd convert`` are thin loops around it.

Irregular input never ends a stream here (unless ``strict``): a frame over
the size limit, a first event whose format cannot be told, and whatever the
decoder skipped or repaired become warnings — an ``error`` block with
``source: "input"`` in the stream, and a :class:`~warpd.protocol.WarningMessage`
for the producer in :attr:`ProducerStreams.warnings` — and the input goes on.
Blank and whitespace-only frames are not events, anywhere in a stream.
A whole (non-streaming) response as a stream's first event is decoded as the
events of the stream it stands for (:mod:`warpd.ingest.whole`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from warpd.blocks import BlockAssembler
from warpd.controls import backslash_escaped
from warpd.errors import FrameTooLarge, InputError
from warpd.ingest import DECODERS, check_format, detect_format
from warpd.ingest.base import UpstreamDecoder, loads
from warpd.ingest.deltas import Irregularity, StreamEnd
from warpd.ingest.framing import sse_payload
from warpd.ingest.whole import completion_events, whole_format
from warpd.protocol import BlocksMessage, ErrorInfo, StreamRequest, WarningMessage

#: Irregularities recorded here rather than by a decoder: code -> repair.
PRODUCER_IRREGULARITIES: dict[str, str] = {
    "oversized-frame": "an event over limits.max_frame_bytes: skipped (its bytes discarded "
    "as they arrive)",
    "unknown-format": "a first event whose format cannot be told (format auto): skipped, "
    "the next event is tried",
    "invalid-utf8": "a first event that is not UTF-8 (format auto): skipped, the next event "
    "is tried",
}


class ProducerStreams:
    """Turns one producer's frames into stream messages.

    Call :meth:`feed` with each frame (one upstream event), or
    :meth:`oversized` for one the framer discarded for its size
    (:meth:`open` starts a stream before its first event); when the
    input ends call :meth:`end`, or :meth:`abort` if the producer went away.
    Each returns the messages to publish, in order, and may leave warnings
    for the producer in :attr:`warnings` (the caller drains the list).
    ``new_stream_id`` is called for each new stream and must return a fresh
    id (``session/N``); ``on_start``, if given, is called with each new
    stream's assembler.

    With ``strict=True`` every irregularity raises :class:`InputError` (with
    its frame number) instead; then call :meth:`fail` with it, which ends
    the live stream as aborted. ``max_warnings`` bounds the warnings shown
    per stream (``ingest.max_warnings``); later ones are only counted.
    """

    def __init__(
        self,
        session: str,
        format: str,
        new_stream_id: Callable[[], str],
        *,
        max_frame_bytes: int | None = None,
        strict: bool = False,
        max_warnings: int = 20,
        on_start: Callable[[BlockAssembler], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.format = check_format(format)
        self.frames = 0
        self.streams: list[str] = []
        self.strict = strict
        #: Warnings for the producer, in order; the caller drains this list.
        self.warnings: list[WarningMessage] = []
        self._decoder_class: type[UpstreamDecoder] | None = (
            None if format == "auto" else DECODERS[format]
        )
        # Frames go to the decoder as they are (plain text): no SSE unwrapping,
        # no skipping of blank frames, no detection. Format detection never
        # picks a raw decoder, so only the format and plain_text_input set it.
        self._raw = self._decoder_class is not None and self._decoder_class.raw
        self._new_stream_id = new_stream_id
        self._max_frame_bytes = max_frame_bytes
        self._max_warnings = max_warnings
        self._clock = clock
        self._on_start = on_start
        self._decoder: UpstreamDecoder | None = None
        self._assembler: BlockAssembler | None = None
        # Irregularities seen while no stream was live (frame numbers with
        # them), for the next stream to show; and how many more were only counted.
        self._pending: list[tuple[Irregularity, int]] = []
        self._pending_unshown = 0

    @property
    def live(self) -> BlockAssembler | None:
        """The assembler of the stream in progress, if any."""
        return self._assembler

    @property
    def detected(self) -> str | None:
        """The format in use (as detected, for ``auto``), once known."""
        return self._decoder_class.name if self._decoder_class is not None else None

    def plain_text_input(self) -> None:
        """Tell a producer of format ``auto`` that its input is plain text.

        Call it before the first :meth:`feed` when the framer found neither SSE
        nor JSON (``AutoFramer.framing == "raw"``): frames then go, as they
        are, to the text decoder. With any other format it does nothing.
        """
        if self.format == "auto" and self._decoder is None:
            self._decoder_class = DECODERS["text"]
            self._raw = True

    def open(self, request: StreamRequest | None) -> list[BlocksMessage]:
        """Start a stream now, before its first event, saying what was asked for.

        A live stream is completed first, as by :meth:`end`. Returns the
        messages to publish: that stream's final message, if any, then the new
        stream's first message (no blocks yet; ``created`` and ``request``).
        The stream's format is still chosen by its first event, as for any.
        """
        messages = self.end()
        assembler = self._new_assembler(request)
        return [*messages, assembler.announce()]

    def feed(self, frame: bytes) -> list[BlocksMessage]:
        """Decode one frame; raises :class:`InputError` (with its frame number) only if strict."""
        self.frames += 1
        if self._max_frame_bytes is not None and len(frame) > self._max_frame_bytes:
            return self._oversized(len(frame))
        # Most frames are bare JSON: skip the SSE and blank checks for them.
        raw = self._raw
        if raw or frame[:1] == b"{":
            payload = frame
        else:
            payload = sse_payload(frame)
            if not payload or payload.isspace():
                return []  # not an event, wherever it comes
        whole: list[bytes] | None = None
        if self._decoder is None:
            # The stream's first event (its stream may be open already).
            if not raw:
                stripped = payload.strip()
                decoder_class = self._decoder_class
                if stripped == b"[DONE]" or (
                    decoder_class is not None and decoder_class.trails_a_stream(stripped)
                ):
                    # What trails a stream that already ended (an end marker
                    # after a provider error) carries nothing.
                    return []
            try:
                whole = self._start(payload)
            except InputError as exc:
                if self.strict:
                    exc.frame = self.frames
                    raise
                self._irregular(Irregularity(exc.code, f"{exc.message}: event skipped"))
                return self._update()
        decoder, assembler = self._decoder, self._assembler
        assert decoder is not None and assembler is not None
        try:
            if whole is None:
                deltas = decoder.feed(payload)
            else:
                deltas = [delta for event in whole for delta in decoder.feed(event)]
        except InputError as exc:
            exc.frame = self.frames
            raise
        if decoder.irregularities:
            for irregularity in decoder.irregularities:
                self._irregular(irregularity)
            decoder.irregularities = []
        message = assembler.feed(deltas)
        if decoder.ended:
            self._stop()
        return [message] if message is not None else []

    def oversized(self, size: int, limit: int | None = None) -> list[BlocksMessage]:
        """A frame of ``size`` bytes was discarded (by a framer) for being over ``limit``.

        ``limit`` defaults to ours; a producer that discarded it by its own
        limit says which.
        """
        self.frames += 1
        return self._oversized(size, limit)

    def end(self) -> list[BlocksMessage]:
        """The input ended: complete the live stream (aborted if its provider never ended it).

        Warnings recorded after the last stream ended complete in a stream of
        their own (their error blocks), so that subscribers see them too.
        """
        if self._assembler is None:
            if not self._pending:
                return []
            message = self._new_assembler().feed([StreamEnd()])
            self._stop()
            return [message] if message is not None else []
        if self._decoder is None:
            # Opened, but no event came.
            return self.abort("input ended before the stream's first event")
        deltas = self._decoder.end_of_input()
        for irregularity in self._decoder.irregularities:
            self._irregular(irregularity)
        message = self._assembler.feed(deltas)
        if message is None or not self._assembler.done:
            message = self._assembler.abort("input ended before the stream's end marker")
        self._stop()
        return [message]

    def abort(self, reason: str) -> list[BlocksMessage]:
        """Complete the live stream, if any, as aborted with ``reason``."""
        if self._assembler is None:
            return []
        message = self._assembler.abort(reason)
        self._stop()
        return [message]

    def fail(self, error: InputError) -> list[BlocksMessage]:
        """Complete the live stream as aborted by ``error``, with an error block saying so.

        For strict mode. If no stream was open, one is started to carry the
        error, so that subscribers see it too.
        """
        if self._assembler is None:
            self._new_assembler()
        assert self._assembler is not None
        message = self._assembler.abort(
            f"bad input: {error}", error=ErrorInfo(str(error), "input", error.code, error.frame)
        )
        self._stop()
        return [message]

    def _oversized(self, size: int, limit: int | None = None) -> list[BlocksMessage]:
        limit = limit or self._max_frame_bytes
        message = (
            f"event of {size} bytes is over the limit of {limit} bytes (limits.max_frame_bytes)"
        )
        if self.strict:
            raise FrameTooLarge(message, frame=self.frames, code="oversized-frame")
        self._irregular(Irregularity("oversized-frame", f"{message}: skipped"))
        return self._update()

    def _update(self) -> list[BlocksMessage]:
        """The message showing what changed in the live stream (a warning), if any."""
        if self._assembler is None:
            return []
        update = self._assembler.feed([])
        return [update] if update is not None else []

    def _irregular(self, irregularity: Irregularity) -> None:
        """Record an irregularity of the current frame: for the stream and for the producer."""
        frame = self.frames
        irregularity = Irregularity(irregularity.code, backslash_escaped(irregularity.message))
        assembler = self._assembler
        if assembler is None:
            if len(self._pending) < self._max_warnings:
                self._pending.append((irregularity, frame))
            else:
                self._pending_unshown += 1
                return
            stream = None
        else:
            assembler.warn(irregularity.message, irregularity.code, frame)
            if assembler.warnings > self._max_warnings:
                return
            stream = assembler.stream
        self.warnings.append(
            WarningMessage(irregularity.message, frame, irregularity.code, stream)
        )

    def _start(self, payload: bytes) -> list[bytes] | None:
        """Start decoding a stream whose first event is ``payload``.

        Returns the events to decode instead of ``payload`` when it is a
        whole response (of the format asked for, if one was), else None.
        Raises :class:`InputError` when format ``auto`` cannot tell its format.
        """
        whole = None
        format = whole_format(loads(payload)) if payload[:1] == b"{" else None
        if format is not None and self._decoder_class in (None, DECODERS[format]):
            self._decoder_class = DECODERS[format]
            whole = completion_events(format, payload)
        elif self._decoder_class is None:
            self._decoder_class = detect_format(payload.strip())
        self._decoder = self._decoder_class(strict=self.strict)
        if self._assembler is None:
            self._new_assembler()
        return whole

    def _new_assembler(self, request: StreamRequest | None = None) -> BlockAssembler:
        assembler = BlockAssembler(
            self.session,
            self._new_stream_id(),
            clock=self._clock,
            request=request,
            max_warnings=self._max_warnings,
        )
        self._assembler = assembler
        self.streams.append(assembler.stream)
        if self._on_start is not None:
            self._on_start(assembler)
        # What was recorded while no stream was live shows in this one.
        for irregularity, frame in self._pending:
            assembler.warn(irregularity.message, irregularity.code, frame)
        assembler.warnings += self._pending_unshown
        self._pending = []
        self._pending_unshown = 0
        return assembler

    def _stop(self) -> None:
        self._decoder = None
        self._assembler = None
