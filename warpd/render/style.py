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

# Foreground colours: the 16-colour SGR codes follow the terminal's theme;
# 0 is the terminal's default. An RGB colour (code highlighting) is
# ``RGB | 0xRRGGBB``, sent as 24-bit or as the nearest of the 256-colour
# palette depending on the mode.
DEFAULT = 0
RED = 31
GREEN = 32
YELLOW = 33
BLUE = 34
MAGENTA = 35
CYAN = 36
GREY = 90
RGB = 1 << 24


def rgb(hex_colour: str) -> int:
    """The foreground value of ``"rrggbb"`` (as Pygments styles give colours)."""
    return RGB | int(hex_colour, 16)


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

    ``COLOR``: everything, RGB colours as the nearest of the 256-colour
    palette. ``TRUECOLOR``: the same with RGB colours sent as they are
    (COLORTERM=truecolor). ``MONO`` (NO_COLOR, --no-color): no colours, but
    bold/dim/reverse, hyperlinks and cursor movement for the live tail.
    ``PLAIN``: no escape sequence at all, for output that is not a terminal.
    """

    COLOR = "color"
    TRUECOLOR = "truecolor"
    MONO = "mono"
    PLAIN = "plain"

    @property
    def colored(self) -> bool:
        """Whether colours are sent at all."""
        return self is Mode.COLOR or self is Mode.TRUECOLOR


# String Terminator ends OSC 8; BEL is avoided because some terminals print it.
_ST = "\x1b\\"
_LINK_CLOSE = "\x1b]8;;" + _ST


def _palette_index(value: int) -> int:
    """The nearest colour of the xterm 256-colour palette's cube and grey ramp.

    The first 16 entries are left out: they are the terminal theme's, not
    fixed colours.
    """
    r, g, b = (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF
    levels = (0, 95, 135, 175, 215, 255)

    def level(c: int) -> int:
        return min(range(6), key=lambda i: abs(levels[i] - c))

    ri, gi, bi = level(r), level(g), level(b)
    cube = (levels[ri], levels[gi], levels[bi])
    grey = min(range(24), key=lambda i: abs(8 + 10 * i - (r + g + b) // 3))
    grey_value = 8 + 10 * grey

    def distance(c: tuple[int, int, int]) -> int:
        return (c[0] - r) ** 2 + (c[1] - g) ** 2 + (c[2] - b) ** 2

    if distance((grey_value,) * 3) < distance(cube):
        return 232 + grey
    return 16 + 36 * ri + 6 * gi + bi


def _fg_code(fg: int, mode: Mode) -> str:
    if not fg:
        return "39"
    if not fg & RGB:
        return str(fg)
    if mode is Mode.TRUECOLOR:
        return f"38;2;{(fg >> 16) & 0xFF};{(fg >> 8) & 0xFF};{fg & 0xFF}"
    return f"38;5;{_palette_index(fg)}"


@lru_cache(maxsize=4096)
def _sgr(was_attrs: int, was_fg: int, attrs: int, fg: int, mode: Mode) -> str:
    """The shortest SGR going from one rendition to another (the output is a
    terminal's, byte for byte: a highlighted line changes colour often)."""
    if not attrs and not fg:
        return "\x1b[0m"
    if was_attrs & ~attrs:
        # An attribute goes away: only a reset removes it portably.
        codes = ["0"]
        codes.extend(code for bit, code in _ATTR_SGR if attrs & bit)
        if fg:
            codes.append(_fg_code(fg, mode))
    else:
        codes = [code for bit, code in _ATTR_SGR if attrs & ~was_attrs & bit]
        if fg != was_fg:
            codes.append(_fg_code(fg, mode))
    return "\x1b[" + ";".join(codes) + "m"


def encode_row(row: Row, mode: Mode) -> str:
    """The terminal text of ``row`` (no line ending) in ``mode``."""
    if mode is Mode.PLAIN:
        return "".join(text for text, _ in row)
    color = mode.colored
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
            out.append(_sgr(attrs, fg, style.attrs, s_fg, mode))
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
