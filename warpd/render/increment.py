"""The new part of a block's growing value (the protocol's streaming rule)."""

from __future__ import annotations


class Increment:
    """The new part of a block's growing value.

    While a block streams, each message carries the fragment since the
    previous one: all new. A whole value (a snapshot, the message that
    completes the block) repeats what was seen, and only the rest is new.
    """

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = 0

    def new(self, value: str, *, whole: bool) -> str:
        """The part of ``value`` not seen yet (``whole``: it carries the whole value)."""
        if not whole:
            self.seen += len(value)
            return value
        new = value[self.seen :] if self.seen else value
        self.seen = len(value)
        return new
