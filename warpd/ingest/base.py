"""What every upstream decoder is: one provider event in, normalized deltas out."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import msgspec

from warpd.errors import InputError
from warpd.ingest.deltas import Delta


class UpstreamDecoder(abc.ABC):
    """A sans-I/O decoder for one stream of one upstream format.

    Feed it each event's payload (bytes: one SSE ``data``, one JSON line, one
    WebSocket frame) with :meth:`feed`; when the input ends call
    :meth:`end_of_input` once. Both return the deltas to hand to the
    BlockAssembler. After the decoder has emitted a ``StreamEnd`` the stream is
    over (``ended`` is true): the caller starts a new decoder for any further
    events. A malformed event raises :class:`~warpd.errors.InputError`; the
    decoder must not be fed after that.
    """

    #: The name used by ``--format`` and ``format=`` (e.g. ``openai``).
    name: ClassVar[str]
    #: Raw decoders (plain text) get every frame as it is: no SSE unwrapping,
    #: no skipping of blank frames, no format detection.
    raw: ClassVar[bool] = False

    def __init__(self) -> None:
        self.ended = False

    @abc.abstractmethod
    def feed(self, payload: bytes) -> list[Delta]:
        """Decode one event; return the deltas it carries (often none)."""

    @abc.abstractmethod
    def end_of_input(self) -> list[Delta]:
        """The input ended: return what completes the stream (a ``StreamEnd``, aborted if cut)."""

    @classmethod
    def trails_a_stream(cls, payload: bytes) -> bool:
        """Whether ``payload`` may follow the end of a stream and belongs to it.

        Such an event arriving when no stream is open is ignored rather than
        starting a new stream: OpenAI's ``[DONE]`` after an error ended the
        stream, say. ``payload`` is already stripped.
        """
        return payload == b"[DONE]"

    @classmethod
    def detect(cls, probe: dict[str, Any]) -> bool:
        """Whether a first event decoded as ``probe`` (a JSON object) is of this format."""
        return False


def decode_json(decoder: msgspec.json.Decoder[Any], payload: bytes, what: str) -> Any:
    """Decode ``payload`` with ``decoder``, turning msgspec's errors into an InputError.

    ``what`` names the expected thing (e.g. ``"OpenAI chat completion chunk"``)
    so the message says what we were trying to read.
    """
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise InputError(f"not a valid {what}: {exc} (starts {preview(payload)})") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        bad = invalid_utf8_at(payload)
        if bad is not None:
            raise InputError(
                f"invalid UTF-8 in {what}: byte {bad} (starts {preview(payload)})"
            ) from None
        raise InputError(f"invalid JSON in {what}: {exc} (starts {preview(payload)})") from None


def invalid_utf8_at(payload: bytes) -> int | None:
    """The offset of the first byte of ``payload`` that is not valid UTF-8, or None.

    Called only once a decode has failed: which exception a JSON library
    raises for bad UTF-8 differs between versions (msgspec < 0.19 raised
    UnicodeDecodeError, later ones DecodeError), so the bytes decide.
    """
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def preview(payload: bytes, limit: int = 60) -> str:
    """The start of a payload, escaped and quoted, for error messages."""
    text = payload[:limit].decode("utf-8", "replace")
    shown = repr(text)
    return shown + ("…" if len(payload) > limit else "")
