"""The characters a terminal (or a log reader) could be fooled by, and escaping them.

Text from a peer — an LLM's words, a producer's field, a request path — may
carry characters that act instead of showing: C0 controls (ESC starts
sequences, CR and backspace overwrite, newline starts a line of its own), DEL,
the C1 controls (ESC's 8-bit forms), the bidirectional embeddings, overrides,
isolates and marks (which reorder what is displayed), the line and paragraph
separators (some terminals and editors break lines there), and lone
surrogates. :data:`UNSAFE` matches every one of them; each output escapes
them in its own syntax with :func:`escape_unsafe`: the renderer shows visible
forms (:mod:`warpd.render.untrusted`), JSON output ``\\uXXXX``
(:mod:`warpd.cli.output`), the daemon's log and the commands' own lines on
stderr backslash escapes (:func:`backslash_form`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "FORMAT_CONTROLS",
    "SEPARATORS",
    "UNSAFE",
    "backslash_escaped",
    "backslash_form",
    "escape_unsafe",
]

# Bidirectional embeddings, overrides and isolates, and the marks.
FORMAT_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# The line and paragraph separators (which some terminals treat as newlines).
SEPARATORS = "\u2028\u2029"

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f" + FORMAT_CONTROLS + SEPARATORS + "\ud800-\udfff]")


def escape_unsafe(text: str, form: Callable[[str], str]) -> str:
    """``text`` with each character :data:`UNSAFE` matches replaced by ``form(character)``."""
    if UNSAFE.search(text) is None:
        return text
    return UNSAFE.sub(lambda match: form(match.group()), text)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def backslash_form(ch: str) -> str:
    """The backslash escape of one unsafe character, as Python writes it (``\\x1b``, ``\\n``)."""
    short = _SHORT_ESCAPES.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def backslash_escaped(text: str) -> str:
    """``text`` as one line with nothing a terminal acts on: unsafe characters backslash-escaped.

    For messages that quote a peer (the daemon's log, a warning printed by
    ``warpd push``).
    """
    return escape_unsafe(text, backslash_form)
