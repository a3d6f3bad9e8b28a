"""Upstream decoding: framing, one decoder per provider format, format detection.

``DECODERS`` maps each ``--format`` name to its decoder class; ``auto``
detects the format from the first event with :func:`detect_format` (each
decoder's ``detect`` recognises only its own events, so at most one claims a
first event). Plain text has no event to detect: with ``auto``, input that
does not look like SSE or JSON (see ``framing.sniff_framing``) is text.
"""

from __future__ import annotations

from typing import Any

from warpd.errors import InputError
from warpd.ingest.anthropic import AnthropicDecoder
from warpd.ingest.base import UpstreamDecoder, invalid_utf8_at, loads, preview
from warpd.ingest.ollama import OllamaDecoder
from warpd.ingest.openai_chat import OpenAIChatDecoder
from warpd.ingest.openai_responses import OpenAIResponsesDecoder
from warpd.ingest.text import TextDecoder

DECODERS: dict[str, type[UpstreamDecoder]] = {
    decoder.name: decoder
    for decoder in (
        OpenAIChatDecoder,
        OpenAIResponsesDecoder,
        AnthropicDecoder,
        OllamaDecoder,
        TextDecoder,
    )
}

FORMATS: tuple[str, ...] = ("auto", *DECODERS)

def detect_format(payload: bytes) -> type[UpstreamDecoder]:
    """Return the decoder class for a stream whose first event is ``payload``.

    Raises :class:`InputError` naming the formats tried and showing the start
    of the event when no decoder recognises it.
    """
    probe: Any = loads(payload)
    if probe is None:
        bad = invalid_utf8_at(payload)
        if bad is not None:
            raise InputError(
                f"invalid UTF-8 in the stream's first event at byte {bad}: "
                f"the event starts {preview(payload)}",
                code="invalid-utf8",
            )
    if isinstance(probe, dict):
        for decoder in DECODERS.values():
            if decoder.detect(probe):
                return decoder
    known = ", ".join(name for name, decoder in DECODERS.items() if not decoder.raw)
    raise InputError(
        f"cannot tell the stream's format from its first event (tried {known}): "
        f"say which it is; the event starts {preview(payload)}",
        code="unknown-format",
    )


def check_format(name: str) -> str:
    """Return ``name`` if it is a known format (or ``auto``), else raise InputError."""
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r}: expected one of {', '.join(FORMATS)}")
    return name
