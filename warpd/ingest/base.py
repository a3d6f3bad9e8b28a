"""What every upstream decoder is: one provider event in, normalized deltas out."""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import msgspec

from warpd.errors import InputError
from warpd.ingest.deltas import Delta, Irregularity
from warpd.ingest.surrogates import SURROGATE_ESCAPE, SurrogateRepair, valid_value


class UpstreamDecoder(abc.ABC):
    """A sans-I/O decoder for one stream of one upstream format.

    Feed it each event's payload (bytes: one SSE ``data``, one JSON line, one
    WebSocket frame) with :meth:`feed`; when the input ends call
    :meth:`end_of_input` once. Both return the deltas to hand to the
    BlockAssembler. After the decoder has emitted a ``StreamEnd`` the stream is
    over (``ended`` is true): the caller starts a new decoder for any further
    events.

    Irregular input never ends a stream. An event that cannot be used at all
    (not JSON, not UTF-8, not the format's shape, nested too deep, an index
    over :data:`~warpd.ingest.deltas.MAX_INDEX`) is skipped; an event that
    breaks the provider's grammar is repaired, keeping as much content as
    possible. Either way an :class:`~warpd.ingest.deltas.Irregularity` is
    appended to :attr:`irregularities`, which the caller drains after each
    call; each decoder's ``irregularities`` table lists its own kinds and
    their repairs, :data:`COMMON_IRREGULARITIES` those of every decoder.
    With ``strict=True`` each of them raises :class:`InputError` instead (the
    event's deltas are lost and the decoder must not be fed again).
    """

    #: The name used by ``--format`` and ``format=`` (e.g. ``openai``).
    name: ClassVar[str]
    #: Raw decoders (plain text) get every frame as it is: no SSE unwrapping,
    #: no skipping of blank frames, no format detection.
    raw: ClassVar[bool] = False
    #: This decoder's irregularities: code -> what is wrong, and the repair.
    irregularities_table: ClassVar[dict[str, str]] = {}

    def __init__(self, *, strict: bool = False) -> None:
        self.ended = False
        self.strict = strict
        #: What was irregular in the input so far; the caller drains it.
        self.irregularities: list[Irregularity] = []
        # Set when an event needed the stdlib JSON fallback (it holds lone
        # UTF-16 surrogates), and kept while a half pair waits for its other
        # half: the events' strings then go through SurrogateRepair. One
        # attribute check per event otherwise.
        self._repairing = False
        self._surrogates = SurrogateRepair()

    def feed(self, payload: bytes) -> list[Delta]:
        """Decode one event; return the deltas it carries (often none).

        Raises :class:`InputError` only in strict mode.
        """
        try:
            deltas = self.decode_event(payload)
        except InputError as exc:
            if self.strict:
                raise
            self.irregularities.append(Irregularity(exc.code, f"{exc.message}: event skipped"))
            return []
        except RecursionError:
            # Deep nesting that got past the JSON decoder (msgspec's own limit
            # is turned into an InputError by decode_json).
            error = InputError("JSON nested too deeply", code="too-deep")
            if self.strict:
                raise error from None
            self.irregularities.append(Irregularity("too-deep", f"{error.message}: event skipped"))
            return []
        if self._repairing:
            deltas, lost = self._surrogates.repair(deltas)
            self._repairing = bool(self._surrogates.pending)
            if lost:
                lost_halves = _lost_halves(lost)
                self.irregular(lost_halves.code, lost_halves.message)
        return deltas

    @abc.abstractmethod
    def decode_event(self, payload: bytes) -> list[Delta]:
        """Decode one event (what :meth:`feed` does, minus the handling of bad input).

        Raise :class:`InputError` for an event that must be skipped; call
        :meth:`irregular` for one that was repaired. Raise before changing
        any state: a skipped event must leave the decoder as it was.
        """

    def end_of_input(self) -> list[Delta]:
        """The input ended: return what completes the stream (a ``StreamEnd``, aborted if cut)."""
        deltas = self.decode_end()
        if self._repairing:
            deltas, lost = self._surrogates.repair(deltas)
            self._repairing = False
            if lost:
                self.irregularities.append(_lost_halves(lost))
        return deltas

    @abc.abstractmethod
    def decode_end(self) -> list[Delta]:
        """What :meth:`end_of_input` does, minus the repair of strings."""

    def irregular(self, code: str, message: str) -> None:
        """Record a repaired irregularity (``code`` from the decoder's table); raise if strict."""
        if self.strict:
            raise InputError(message, code=code)
        self.irregularities.append(Irregularity(code, message))

    def decode_json(self, decoder: msgspec.json.Decoder[Any], payload: bytes, what: str) -> Any:
        """Decode ``payload`` with ``decoder``; an InputError saying what was wrong if it can't.

        ``what`` names the expected thing (e.g. ``"OpenAI chat completion
        chunk"``). A payload refused only for lone UTF-16 surrogate escapes
        is decoded by the standard library instead (see
        :mod:`warpd.ingest.surrogates`).
        """
        try:
            return decoder.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # said below, by decode_json
        try:
            return decode_json(decoder, payload, what)
        except InputError as exc:
            if exc.code != "invalid-json" or SURROGATE_ESCAPE.search(payload) is None:
                raise
        value = _loads_surrogates(payload, what)
        try:
            converted = msgspec.convert(value, decoder.type)
        except msgspec.ValidationError as exc:
            raise InputError(
                f"not a valid {what}: {exc} (starts {preview(payload)})", code="schema-mismatch"
            ) from None
        self._repairing = True
        return converted

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


def _lost_halves(lost: int) -> Irregularity:
    return Irregularity(
        "unpaired-surrogate",
        f"{lost} half of a UTF-16 surrogate pair never got its other half: "
        "shown as U+FFFD, or dropped when its block ended first",
    )


#: Irregularities every decoder may record: the event is skipped.
COMMON_IRREGULARITIES: dict[str, str] = {
    "invalid-json": "the event is not JSON: skipped",
    "invalid-utf8": "the event is not UTF-8: skipped",
    "schema-mismatch": "a field has a shape the format does not allow, or an index over "
    "MAX_INDEX: the event is skipped",
    "too-deep": "JSON nested deeper than the parser allows: the event is skipped",
    "unpaired-surrogate": "half of a UTF-16 surrogate pair whose other half never came: "
    "U+FFFD (or dropped, when its block ended first)",
}


def decode_json(decoder: msgspec.json.Decoder[Any], payload: bytes, what: str) -> Any:
    """Decode ``payload`` with ``decoder``, turning every failure into an InputError.

    ``what`` names the expected thing so the message says what we were
    trying to read; the error's ``code`` says which kind of failure it was
    (``invalid-utf8``, ``invalid-json``, ``schema-mismatch``, ``too-deep``).
    """
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise InputError(
            f"not a valid {what}: {exc} (starts {preview(payload)})", code="schema-mismatch"
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        bad = invalid_utf8_at(payload)
        if bad is not None:
            raise InputError(
                f"invalid UTF-8 in {what}: byte {bad} (starts {preview(payload)})",
                code="invalid-utf8",
            ) from None
        raise InputError(
            f"invalid JSON in {what}: {exc} (starts {preview(payload)})", code="invalid-json"
        ) from None
    except RecursionError:
        raise InputError(
            f"{what} nested too deeply (starts {preview(payload)})", code="too-deep"
        ) from None


def loads(payload: bytes) -> Any:
    """Any JSON value, including strings with lone surrogate escapes; None if not JSON.

    For format detection, where a failure only means "not this format".
    """
    try:
        return _probe.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        if SURROGATE_ESCAPE.search(payload) is None:
            return None
    try:
        return _loads_surrogates(payload, "event")
    except InputError:
        return None


_probe = msgspec.json.Decoder()


def _loads_surrogates(payload: bytes, what: str) -> Any:
    """The standard library's JSON parser, which keeps lone surrogates (msgspec refuses them)."""
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InputError(
            f"invalid JSON in {what} (starts {preview(payload)})", code="invalid-json"
        ) from None
    except RecursionError:
        raise InputError(
            f"{what} nested too deeply (starts {preview(payload)})", code="too-deep"
        ) from None


def json_text(value: Any) -> str:
    """``value`` (a decoded JSON value) written out as JSON text, e.g. tool arguments as an object.

    A value from the lone-surrogate fallback may hold strings no encoder
    takes: they are made valid first.
    """
    try:
        return _encoder.encode(value).decode()
    except UnicodeEncodeError:
        return _encoder.encode(valid_value(value)).decode()


_encoder = msgspec.json.Encoder()


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
