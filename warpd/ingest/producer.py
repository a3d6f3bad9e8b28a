"""ProducerStreams: a producer's frames in, the block messages of its streams out.

This is the sans-I/O state of one push connection (or one ``warpd convert``
input): it picks the format, runs a decoder and a BlockAssembler per stream,
starts a new stream after each one ends, and numbers frames for errors.
The daemon's push handler and ``warpd convert`` are thin loops around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from warpd.blocks import BlockAssembler
from warpd.errors import FrameTooLarge, InputError
from warpd.ingest import DECODERS, check_format, detect_format
from warpd.ingest.base import UpstreamDecoder
from warpd.ingest.framing import sse_payload
from warpd.protocol import BlocksMessage, ErrorInfo, StreamRequest


class ProducerStreams:
    """Turns one producer's frames into stream messages.

    Call :meth:`feed` with each frame (one upstream event); when the input
    ends call :meth:`end`, or :meth:`abort` if the producer went away, or
    :meth:`fail` with the :class:`InputError` that :meth:`feed` raised. Each
    returns the messages to publish, in order. ``new_stream_id`` is called
    for each new stream and must return a fresh id (``session/N``);
    ``on_start``, if given, is called with each new stream's assembler.
    """

    def __init__(
        self,
        session: str,
        format: str,
        new_stream_id: Callable[[], str],
        *,
        max_frame_bytes: int | None = None,
        on_start: Callable[[BlockAssembler], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.format = check_format(format)
        self.frames = 0
        self.streams: list[str] = []
        self._decoder_class: type[UpstreamDecoder] | None = (
            None if format == "auto" else DECODERS[format]
        )
        self._new_stream_id = new_stream_id
        self._max_frame_bytes = max_frame_bytes
        self._clock = clock
        self._on_start = on_start
        self._decoder: UpstreamDecoder | None = None
        self._assembler: BlockAssembler | None = None

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
        """Decode one frame; raises :class:`InputError` (with its frame number) if it is bad."""
        self.frames += 1
        if self._max_frame_bytes is not None and len(frame) > self._max_frame_bytes:
            raise FrameTooLarge(
                f"event of {len(frame)} bytes is over the limit of {self._max_frame_bytes} bytes "
                "(limits.max_frame_bytes)",
                frame=self.frames,
            )
        # Most frames are bare JSON: skip the SSE check for them.
        payload = frame if self._raw or frame[:1] == b"{" else sse_payload(frame)
        if self._decoder is None and not self._raw:
            stripped = payload.strip()
            decoder = self._decoder_class
            if not stripped or stripped == b"[DONE]" or (
                decoder is not None and decoder.trails_a_stream(stripped)
            ):
                # Blank frames, and what trails a stream that already ended
                # (an end marker after a provider error), carry nothing.
                return []
        if self._decoder is None:
            try:
                self._start(payload)
            except InputError as exc:
                exc.frame = self.frames
                raise
        assert self._decoder is not None and self._assembler is not None
        try:
            deltas = self._decoder.feed(payload)
        except InputError as exc:
            exc.frame = self.frames
            raise
        message = self._assembler.feed(deltas)
        if self._decoder.ended:
            self._stop()
        return [message] if message is not None else []

    def end(self) -> list[BlocksMessage]:
        """The input ended: complete the live stream (aborted if its provider never ended it)."""
        if self._assembler is None:
            return []
        if self._decoder is None:
            # Opened, but no event came.
            return self.abort("input ended before the stream's first event")
        message = self._assembler.feed(self._decoder.end_of_input())
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

        If no stream was open, one is started to carry the error, so that
        subscribers see it too.
        """
        if self._assembler is None:
            self._new_assembler()
        assert self._assembler is not None
        message = self._assembler.abort(
            f"bad input: {error}", error=ErrorInfo(str(error), "input")
        )
        self._stop()
        return [message]

    @property
    def _raw(self) -> bool:
        return self._decoder_class is not None and self._decoder_class.raw

    def _start(self, payload: bytes) -> None:
        if self._decoder_class is None:
            self._decoder_class = detect_format(payload.strip())
        self._decoder = self._decoder_class()
        if self._assembler is None:
            self._new_assembler()

    def _new_assembler(self, request: StreamRequest | None = None) -> BlockAssembler:
        assembler = BlockAssembler(
            self.session, self._new_stream_id(), clock=self._clock, request=request
        )
        self._assembler = assembler
        self.streams.append(assembler.stream)
        if self._on_start is not None:
            self._on_start(assembler)
        return assembler

    def _stop(self) -> None:
        self._decoder = None
        self._assembler = None
