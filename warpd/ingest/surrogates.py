"""UTF-16 surrogates in JSON strings: pairs split across events rejoined, lone ones replaced.

JSON escapes characters outside the BMP as surrogate pairs (``"\\ud83d\\ude80"``
is 🚀). Providers that cut text into deltas by UTF-16 code units send the
pair's halves in two events: ``"\\ud83d"`` then ``"\\ude80…"``. msgspec refuses
such a string (it is not valid Unicode); the decoders fall back to the
standard library's parser for those events (see ``UpstreamDecoder``), which
yields Python strings holding lone surrogates, and :class:`SurrogateRepair`
then makes every string valid before it leaves the decoder:

- in a text channel (a ``TextDelta``'s text, a ``ToolCallDelta``'s
  arguments, by block key), a high surrogate that ends a fragment is held
  back and joined to the low surrogate that starts the next fragment of the
  same block;
- any surrogate that cannot be paired becomes U+FFFD, as does everything
  else in the deltas (names, ids, provider data), so that no lone surrogate
  ever reaches an encoder (msgspec cannot encode one).

Only events that needed the fallback, and the events after one that left a
half pair waiting, go through this: the fast path costs one attribute check.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from warpd.ingest.deltas import (
    BlockData,
    BlockDone,
    BlockOpen,
    ChoiceFinish,
    Delta,
    StreamEnd,
    StreamInfo,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
)

_SURROGATE = re.compile("[\ud800-\udfff]")
# A lone surrogate escape in JSON bytes: what makes msgspec refuse a payload.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def valid_text(text: str) -> str:
    """``text`` with each surrogate pair joined and each lone surrogate replaced by U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def valid_value(value: Any) -> Any:
    """A decoded JSON value with every string in it made valid (see :func:`valid_text`)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_text(str(k)): valid_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [valid_value(v) for v in value]
    return value


class SurrogateRepair:
    """Per-stream state: the high surrogate each text channel holds back, by block key."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        # Block key -> (the held high surrogate, the block's choice).
        self.pending: dict[Hashable, tuple[str, int]] = {}

    def repair(self, deltas: list[Delta]) -> tuple[list[Delta], int]:
        """Make every string in ``deltas`` valid; return them and how many halves were lost.

        The deltas are changed in place (they are the decoder's own, not yet
        handed out).
        """
        lost = 0
        for delta in deltas:
            if type(delta) is TextDelta:
                delta.text, n = self._join(delta.key, delta.text, delta.choice)
                lost += n
            elif type(delta) is ToolCallDelta:
                delta.arguments, n = self._join(delta.key, delta.arguments, delta.choice)
                lost += n
                delta.call_id = _opt(delta.call_id)
                delta.name = _opt(delta.name)
                delta.call_type = _opt(delta.call_type)
                delta.upstream_type = _opt(delta.upstream_type)
            elif type(delta) is BlockOpen:
                delta.data = valid_value(delta.data)
                delta.call_id = _opt(delta.call_id)
                delta.name = _opt(delta.name)
                delta.upstream_type = _opt(delta.upstream_type)
            elif type(delta) is BlockData:
                delta.field = valid_text(delta.field)
                delta.value = valid_value(delta.value)
            elif type(delta) is BlockDone:
                # The block is over: a half pair it held can no longer be completed.
                lost += 1 if self.pending.pop(delta.key, None) is not None else 0
            elif type(delta) is ChoiceFinish:
                delta.reason = _opt(delta.reason)
                # The choice's blocks complete: their half pairs are lost.
                ended = [k for k, (_, c) in self.pending.items() if c == delta.choice]
                for key in ended:
                    del self.pending[key]
                lost += len(ended)
            elif type(delta) is StreamInfo:
                delta.model = _opt(delta.model)
                delta.usage = valid_value(delta.usage)
            elif type(delta) is UpstreamError:
                delta.message = valid_text(delta.message)
                delta.code = _opt(delta.code)
            elif type(delta) is StreamEnd:
                delta.reason = _opt(delta.reason)
                delta.finish_reason = _opt(delta.finish_reason)
                lost += len(self.pending)
                self.pending.clear()
        return deltas, lost

    def _join(self, key: Hashable, text: str, choice: int) -> tuple[str, int]:
        lost = 0
        pending = self.pending.pop(key, None)
        if pending is not None:
            held = pending[0]
            if text[:1] and "\udc00" <= text[0] <= "\udfff":
                text = held + text
            else:
                # Its other half never came: show that something was there.
                text = "\ufffd" + text
                lost += 1
        if text and "\ud800" <= text[-1] <= "\udbff":
            self.pending[key] = (text[-1], choice)
            text = text[:-1]
        return valid_text(text), lost


def _opt(text: str | None) -> str | None:
    return None if text is None else valid_text(text)
