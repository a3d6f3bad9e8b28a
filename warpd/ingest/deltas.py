"""Normalized deltas: what every upstream decoder emits and BlockAssembler consumes.

A decoder turns one provider event into a list of these. ``key`` names an
upstream block (any hashable the decoder chooses, e.g. ``("text", choice)``
or an Anthropic content-block index); the assembler maps each key to a block
in order of first appearance, and a key that arrives again after its block
completed opens a new block. Deltas carry only what changed: text and
argument fragments, never accumulated values.

Decoders also report :class:`Irregularity` records (not deltas): what was
wrong with the input and how it was repaired (see ``UpstreamDecoder``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

import msgspec

# The largest index (choice, tool call, output item, content part, content
# block) a decoder accepts. Indexes are map keys, never list lengths, but some
# outputs are laid out by choice (``finish_reasons``): a bigger value is bad
# input for its frame, which is skipped.
MAX_INDEX = 4096

TextKind = Literal["text", "reasoning"]


class TextDelta(msgspec.Struct, gc=False):
    """A fragment of a text or reasoning block (opens the block if new)."""

    key: Hashable
    kind: TextKind
    text: str
    choice: int = 0
    refusal: bool = False


class ToolCallDelta(msgspec.Struct, gc=False):
    """A fragment of a tool call (opens the block if new).

    ``call_id``, ``name`` and ``call_type`` are set when the provider sent them;
    they replace the stored value (providers that repeat them on every
    fragment must not have them concatenated). ``arguments`` is appended.
    """

    key: Hashable
    arguments: str = ""
    call_id: str | None = None
    name: str | None = None
    call_type: str | None = None
    choice: int = 0
    upstream_type: str | None = None
    # Free-form input (a Responses ``custom_tool_call``): not JSON, so never
    # flagged ``invalid_arguments``.
    free_form: bool = False


class BlockOpen(msgspec.Struct, gc=False):
    """Announces a block before (or without) fragments, e.g. a result that arrives whole."""

    key: Hashable
    kind: Literal["text", "reasoning", "tool_call", "error"]
    choice: int = 0
    upstream_type: str | None = None
    data: dict[str, Any] | None = None
    call_id: str | None = None
    name: str | None = None


class BlockData(msgspec.Struct, gc=False):
    """Provider data for a block's ``data`` field: set ``field``, or append to a list there."""

    key: Hashable
    field: str
    value: Any
    append: bool = False


class BlockDone(msgspec.Struct, gc=False):
    """The provider ended this block; ``truncated`` if it was cut before its end."""

    key: Hashable
    truncated: bool = False


class ChoiceFinish(msgspec.Struct, gc=False):
    """A choice finished: every open block of that choice completes."""

    choice: int
    reason: str | None


class StreamInfo(msgspec.Struct, gc=False):
    """Stream metadata; ``usage`` is merged key by key into what came before."""

    model: str | None = None
    usage: dict[str, Any] | None = None


class UpstreamError(msgspec.Struct, gc=False):
    """An error the provider reported inside its stream; becomes an ``error`` block."""

    message: str
    code: str | None = None


class StreamEnd(msgspec.Struct, gc=False):
    """The stream is over: normally (the provider's end marker) or ``aborted`` with a reason."""

    aborted: bool = False
    reason: str | None = None
    # An explicit finish reason, for formats whose end marker carries it.
    finish_reason: str | None = None


Delta = (
    TextDelta
    | ToolCallDelta
    | BlockOpen
    | BlockData
    | BlockDone
    | ChoiceFinish
    | StreamInfo
    | UpstreamError
    | StreamEnd
)


class Irregularity(msgspec.Struct, frozen=True, gc=False):
    """Something wrong with the input that a decoder repaired or skipped, and how.

    ``code`` names the kind (each decoder's ``irregularities`` table lists
    its codes and their repairs); ``message`` is one line for people: what
    was wrong, where, and what was done about it.
    """

    code: str
    message: str
