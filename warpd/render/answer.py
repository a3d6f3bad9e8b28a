"""The answer's raw text, streamed: what ``warpd subscribe --output text`` prints.

Only ``text`` blocks count (not reasoning, tool calls or errors): their new
text is given out as it arrives, as the model wrote it (raw markdown), in
block order. Like the renderer, streams are given one at a time in the order
they started and, within a stream, text blocks in index order: text of a
later stream or block waits until the earlier one is complete. A stream's
text ends with a newline (one is added if the model's did not), so the next
stream's starts on a line of its own.

With ``neutralised`` (the output is a terminal) every character a terminal
would act on is shown in its visible form; newlines and tabs are kept.
"""

from __future__ import annotations

from collections import OrderedDict

from warpd.protocol import HelloMessage, SnapshotMessage, StreamMessage
from warpd.render.increment import Increment
from warpd.render.untrusted import neutralise

# Streams that ended are remembered (to ignore late repeats) up to this many.
_FINISHED_MEMORY = 1024


class _StreamText:
    """One stream's text blocks: what was given out, what waits for its turn."""

    def __init__(self) -> None:
        self.increments: dict[int, Increment] = {}
        self.held: dict[int, list[str]] = {}
        self.complete: set[int] = set()
        self.cursor = 0
        self.final = False
        self.ended_line = True

    def apply(self, message: StreamMessage) -> None:
        whole = isinstance(message, SnapshotMessage)
        for block in message.blocks:
            if block.type != "text" or block.index in self.complete:
                continue
            increment = self.increments.setdefault(block.index, Increment())
            new = increment.new(block.text or "", whole=whole or block.complete)
            if new:
                self.held.setdefault(block.index, []).append(new)
            if block.complete:
                self.complete.add(block.index)
        if message.complete and not message.streaming:
            self.final = True

    def drain(self) -> str:
        out: list[str] = []
        while self.held or not self.final:
            # The next text block (indexes of other block types are skipped).
            indexes = [i for i in self.increments if i >= self.cursor]
            if not indexes:
                break
            index = min(indexes)
            self.cursor = index
            out.extend(self.held.pop(index, []))
            if index not in self.complete and not self.final:
                break
            self.cursor = index + 1
        text = "".join(out)
        if text:
            self.ended_line = text.endswith("\n")
        if self.final and not self.ended_line:
            text += "\n"
            self.ended_line = True
        return text


class AnswerText:
    """Block messages in, the answers' raw text out (see the module docstring).

    :meth:`feed` every message; it returns the text to write now (``""``
    when there is none); :meth:`close` the text of unfinished streams.
    """

    def __init__(self, *, neutralised: bool = False) -> None:
        self._neutralised = neutralised
        self._streams: dict[str, _StreamText] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()

    def feed(self, message: object) -> str:
        """The text this message adds, in order."""
        if isinstance(message, HelloMessage):
            return ""
        if not isinstance(message, StreamMessage) or message.stream in self._finished:
            return ""
        stream = self._streams.setdefault(message.stream, _StreamText())
        stream.apply(message)
        return self._safe(self._drain())

    def close(self) -> str:
        """What unfinished streams have, once the subscriber stops."""
        for stream in self._streams.values():
            stream.final = True
        return self._safe(self._drain())

    def _drain(self) -> str:
        out: list[str] = []
        while self._streams:
            name, stream = next(iter(self._streams.items()))
            out.append(stream.drain())
            if not stream.final:
                break
            del self._streams[name]
            self._finished[name] = None
            if len(self._finished) > _FINISHED_MEMORY:
                self._finished.popitem(last=False)
        return "".join(out)

    def _safe(self, text: str) -> str:
        if not self._neutralised or not text:
            return text
        text = text.replace("\r\n", "\n")
        return "\n".join("\t".join(neutralise(p) for p in line.split("\t"))
                         for line in text.split("\n"))
