"""A VT100 emulator (pyte) that keeps its scrollback, for reading back rendered output."""

from __future__ import annotations

import pyte
from pyte.screens import wcwidth


class Terminal:
    """A ``width`` x ``height`` terminal; :meth:`lines` is the scrollback plus the screen."""

    def __init__(self, width: int, height: int) -> None:
        self.screen = pyte.HistoryScreen(width, height, history=1_000_000)
        self.stream = pyte.ByteStream(self.screen)

    def feed(self, data: bytes) -> None:
        self.stream.feed(data)

    def _text(self, line: object) -> str:
        chars: list[str] = []
        wide = False
        for x in range(self.screen.columns):
            if wide:
                wide = False
                continue
            data = line[x].data  # type: ignore[index]
            wide = bool(data) and wcwidth(data[0]) == 2
            chars.append(data)
        return "".join(chars).rstrip()

    def lines(self) -> list[str]:
        """Every line scrolled off and on screen, trailing blank lines dropped."""
        out = [self._text(line) for line in self.screen.history.top]
        out += [line.rstrip() for line in self.screen.display]
        while out and not out[-1]:
            out.pop()
        return out
