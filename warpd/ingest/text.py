"""Plain text to deltas: every byte of the input is one text block.

For output that is not a provider stream (``some-cli | warpd push --format
text``). Chunks may split a UTF-8 character anywhere: an incremental decoder
holds the partial character until the rest arrives, and bytes that are not
UTF-8 become U+FFFD. There is no end marker: the end of input completes the
stream normally.
"""

from __future__ import annotations

import codecs

from warpd.ingest.base import UpstreamDecoder
from warpd.ingest.deltas import Delta, StreamEnd, TextDelta

_KEY = "text"


class TextDecoder(UpstreamDecoder):
    """Decodes raw bytes as one UTF-8 text block (see the module docstring)."""

    name = "text"
    raw = True

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode_event(self, payload: bytes) -> list[Delta]:
        text = self._utf8.decode(payload)
        return [TextDelta(_KEY, "text", text)] if text else []

    def decode_end(self) -> list[Delta]:
        if self.ended:
            return []
        self.ended = True
        # A character cut off by the end of input becomes U+FFFD.
        rest = self._utf8.decode(b"", final=True)
        return [TextDelta(_KEY, "text", rest), StreamEnd()] if rest else [StreamEnd()]
