"""Offline decoding: bytes of a recorded stream in, block messages out, no daemon.

The engine of ``warpd convert``, of the tests that compare it with the daemon,
and of the decode benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from warpd.blocks import BlockAssembler
from warpd.errors import InputError
from warpd.ingest import DECODERS
from warpd.ingest.framing import AutoFramer, Framing, make_framer
from warpd.ingest.producer import ProducerStreams
from warpd.protocol import BlocksMessage, WarningMessage

FramingChoice = Framing | Literal["auto"]


def framing_for(format: str, framing: FramingChoice = "auto") -> FramingChoice:
    """The framing to split input of ``format`` with: raw for raw formats, else ``framing``."""
    decoder = DECODERS.get(format)
    return "raw" if decoder is not None and decoder.raw else framing


def convert(
    chunks: Iterable[bytes],
    *,
    format: str = "auto",
    session: str = "default",
    framing: FramingChoice = "auto",
    errors: Literal["raise", "message"] = "raise",
    strict: bool = False,
    max_frame_bytes: int | None = None,
    max_warnings: int = 20,
    on_warning: Callable[[WarningMessage, int], None] | None = None,
    on_start: Callable[[BlockAssembler], None] | None = None,
) -> Iterator[BlocksMessage]:
    """Decode and assemble ``chunks`` (any split of the input bytes) into block messages.

    Messages get ``seq`` 1, 2, … and streams ids ``session/1``, ``session/2``, …
    as a fresh daemon would give them. An irregular event is skipped or
    repaired, shown as an ``error`` block (``source: "input"``) and passed to
    ``on_warning`` with its input line (0 if unknown), as the daemon tells a
    producer; the stream goes on. Events over ``max_frame_bytes`` are
    discarded as they are read. With ``strict=True`` an irregular event
    raises :class:`InputError` (with its input line) when ``errors="raise"``;
    with ``errors="message"`` the stream it hit completes aborted with an
    error block, as in the daemon. ``on_start``, if given, is called with
    each new stream's assembler (as the daemon's hub is).
    """
    counter = 0

    def new_stream_id() -> str:
        nonlocal counter
        counter += 1
        return f"{session}/{counter}"

    producer = ProducerStreams(
        session,
        format,
        new_stream_id,
        strict=strict,
        max_frame_bytes=max_frame_bytes,
        max_warnings=max_warnings,
        on_start=on_start,
    )
    framer = make_framer(framing_for(format, framing), max_frame_bytes, text=format == "auto")
    # Auto framing of auto format: input that is neither SSE nor JSON is text.
    sniffing = isinstance(framer, AutoFramer) and format == "auto"
    seq = 0
    for chunk in _chunks_then_end(chunks):
        events = framer.feed(chunk) if chunk is not None else framer.close()
        if sniffing and events:
            sniffing = False
            if isinstance(framer, AutoFramer) and framer.framing == "raw":
                producer.plain_text_input()
        for event in events:
            failed = False
            try:
                if event.oversized:
                    messages = producer.oversized(event.oversized)
                else:
                    messages = producer.feed(event.payload)
            except InputError as exc:
                if event.line:
                    exc.message = f"line {event.line}: {exc.message}"
                if errors == "raise":
                    raise
                # The bad event ends the input, as it ends a push connection.
                messages = producer.fail(exc)
                failed = True
            if producer.warnings:
                for warning in producer.warnings:
                    if on_warning is not None:
                        on_warning(warning, event.line)
                producer.warnings = []
            for message in messages:
                seq += 1
                message.seq = seq
                yield message
            if failed:
                return
        if chunk is None:
            ending = producer.end()
            for warning in producer.warnings:
                if on_warning is not None:
                    on_warning(warning, 0)
            producer.warnings = []
            for message in ending:
                seq += 1
                message.seq = seq
                yield message


def _chunks_then_end(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None
