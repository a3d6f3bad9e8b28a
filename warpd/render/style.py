"""Styles of rendered text and their encoding as terminal bytes.

A rendered row is a list of segments ``(text, Style)``; :func:`encode_row`
turns it into what a terminal is sent. Every row is self-contained: it starts
from the default rendition and ends back in it, with any hyperlink closed, so
rows can be written, erased and repainted in any order.

The text of segments must already be neutralised (see :mod:`warpd.render.untrusted`):
this module adds escape sequences, it never checks text for them.
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from typing import NamedTuple

BOLD = 1
DIM = 2
ITALIC = 4
UNDERLINE = 8
REVERSE = 16
STRIKE = 32

_ATTR_SGR = (
    (BOLD, "1"),
    (DIM, "2"),
    (ITALIC, "3"),
    (UNDERLINE, "4"),
    (REVERSE, "7"),
    (STRIKE, "9"),
)

# Foreground colours (SGR codes); 0 is the terminal's default.
DEFAULT = 0
RED = 31
GREEN = 32
YELLOW = 33
BLUE = 34
MAGENTA = 35
CYAN = 36
GREY = 90


class Style(NamedTuple):
    """How a segment looks: attribute bits, a foreground colour, an OSC 8 link target."""

    attrs: int = 0
    fg: int = DEFAULT
    link: str = ""

    def plus(self, attrs: int = 0, fg: int | None = None) -> Style:
        """This style with ``attrs`` added and, if given, the colour replaced."""
        return Style(self.attrs | attrs, self.fg if fg is None else fg, self.link)


PLAIN = Style()

Segment = tuple[str, Style]
Row = list[Segment]


class Mode(Enum):
    """What the output may contain.

    ``COLOR``: everything. ``MONO`` (NO_COLOR, --no-color): no colours, but
    bold/dim/reverse, hyperlinks and cursor movement for the live tail.
    ``PLAIN``: no escape sequence at all, for output that is not a terminal.
    """

    COLOR = "color"
    MONO = "mono"
    PLAIN = "plain"


# String Terminator ends OSC 8; BEL is avoided because some terminals print it.
_ST = "\x1b\\"
_LINK_CLOSE = "\x1b]8;;" + _ST


@lru_cache(maxsize=256)
def _sgr(attrs: int, fg: int, color: bool) -> str:
    codes = ["0"]
    codes.extend(code for bit, code in _ATTR_SGR if attrs & bit)
    if color and fg:
        codes.append(str(fg))
    return "\x1b[" + ";".join(codes) + "m"


def encode_row(row: Row, mode: Mode) -> str:
    """The terminal text of ``row`` (no line ending) in ``mode``."""
    if mode is Mode.PLAIN:
        return "".join(text for text, _ in row)
    color = mode is Mode.COLOR
    out: list[str] = []
    attrs, fg, link = 0, DEFAULT, ""
    for text, style in row:
        if style.link != link:
            if link:
                out.append(_LINK_CLOSE)
            if style.link:
                out.append("\x1b]8;;" + style.link + _ST)
            link = style.link
        s_fg = style.fg if color else DEFAULT
        if style.attrs != attrs or s_fg != fg:
            out.append(_sgr(style.attrs, s_fg, color))
            attrs, fg = style.attrs, s_fg
        out.append(text)
    if link:
        out.append(_LINK_CLOSE)
    if attrs or fg:
        out.append("\x1b[0m")
    return "".join(out)


def row_text(row: Row) -> str:
    """The visible characters of ``row``."""
    return "".join(text for text, _ in row)
