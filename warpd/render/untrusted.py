"""Neutralising untrusted text (everything an LLM or a producer wrote).

A terminal acts on control characters: ESC starts sequences that clear the
screen, set the title, write the clipboard (OSC 52) or move the cursor; CR and
backspace overwrite what was shown (a fake prompt); C1 codes are ESC's 8-bit
forms; bidirectional overrides reorder what is displayed. Each such character
is replaced by a visible form (``^[`` for ESC, ``^M`` for CR, ``<U+202E>``
for an override), which the renderer shows in reverse video, so the text can
be read but never acted on.
"""

from __future__ import annotations

# Which characters are unsafe is decided once, for every output, in warpd.controls.
from warpd.controls import FORMAT_CONTROLS as _FORMAT_CONTROLS
from warpd.controls import SEPARATORS as _SEPARATORS
from warpd.controls import escape_unsafe


def _build_table() -> dict[str, str]:
    table = {chr(c): "^" + chr(c + 0x40) for c in range(0x20)}
    table["\x7f"] = "^?"
    for c in range(0x80, 0xA0):
        table[chr(c)] = f"<U+{c:04X}>"
    for ch in _FORMAT_CONTROLS + _SEPARATORS:
        table[ch] = f"<U+{ord(ch):04X}>"
    return table


VISIBLE: dict[str, str] = _build_table()


def visible_form(ch: str) -> str | None:
    """The visible replacement of ``ch`` if a terminal would act on it, else ``None``.

    Newline and tab are included (as ``^J``/``^I``): callers that give them a
    meaning (line structure, tab stops) must handle them before asking.
    """
    form = VISIBLE.get(ch)
    if form is None and "\ud800" <= ch <= "\udfff":
        # A lone surrogate cannot even be encoded to UTF-8.
        form = f"<U+{ord(ch):04X}>"
    return form


def neutralise(text: str) -> str:
    """``text`` with every unsafe character replaced by its visible form (one line)."""
    return escape_unsafe(text, lambda ch: visible_form(ch) or "")


_SAFE_SCHEMES = ("http://", "https://", "mailto:")


def safe_link_target(url: str) -> str | None:
    """``url`` as an OSC 8 target if it is a plain http(s)/mailto URL, else ``None``.

    Non-ASCII characters are percent-encoded; anything that could end or
    break the escape sequence (controls, spaces) makes the URL unusable.
    """
    if not url.lower().startswith(_SAFE_SCHEMES) or len(url) > 2000:
        return None
    out: list[str] = []
    for ch in url:
        if "!" <= ch <= "~":
            out.append(ch)
        elif ord(ch) > 0x9F and visible_form(ch) is None and not ch.isspace():
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            return None
    return "".join(out)
