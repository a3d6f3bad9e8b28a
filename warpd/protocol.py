"""The wire protocol: block messages for subscribers, replies for producers.

Everything a peer can receive from the daemon is a tagged msgspec Struct whose
``type`` field names it (see docs/protocol.md, the public description). Each
process builds one encoder and one decoder and reuses them: call
:func:`encode` and :func:`decode_server_message` rather than building new ones.

Fields added later always get a default, so older peers keep decoding newer
messages (unknown fields are ignored on decode).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

BlockType = Literal["text", "reasoning", "tool_call", "error"]


class ToolFunction(msgspec.Struct, omit_defaults=True):
    """A tool call's function: its name and (a fragment of) its JSON arguments."""

    name: str = ""
    arguments: str = ""


class Tool(msgspec.Struct, omit_defaults=True):
    """The ``tool`` of a ``tool_call`` block, shaped like OpenAI's tool call."""

    id: str = ""
    type: str = "function"
    function: ToolFunction = msgspec.field(default_factory=ToolFunction)


class ErrorInfo(msgspec.Struct, omit_defaults=True):
    """What went wrong, carried by an ``error`` block.

    ``source`` says whose error it is: ``provider`` (the LLM API reported it
    in its stream), ``input`` (the producer sent something irregular: an
    event that was skipped or repaired, which does not end the stream; or,
    in strict mode, the bad event that ended it) or ``warpd`` (the daemon
    ended the stream, e.g. on shutdown). For ``input``, ``code`` names the
    kind of irregularity and ``frame`` the producer's frame (1-based).
    """

    message: str
    source: Literal["provider", "input", "warpd"] = "provider"
    code: str | None = None
    frame: int | None = None


class Block(msgspec.Struct, omit_defaults=True):
    """One block of a stream: text, reasoning, a tool call or an error.

    While ``streaming``, ``text`` and ``tool.function.arguments`` hold only the
    fragment that arrived since the previous message; in the message that
    completes the block (``complete: true``) they hold the whole value.
    """

    id: str
    index: int
    type: BlockType
    streaming: bool
    complete: bool
    text: str | None = None
    tool: Tool | None = None
    error: ErrorInfo | None = None
    # Which choice of an n>1 response this block belongs to; omitted when 0.
    choice: int = 0
    # The text is the model declining to answer (OpenAI ``refusal``).
    refusal: bool = False
    # Set on a completed tool_call whose arguments are not valid JSON.
    invalid_arguments: bool = False
    # Set on a block that was cut off before its provider ended it.
    truncated: bool = False
    # The provider's own name for this content when it is not one of ours
    # (e.g. ``redacted_thinking``, ``server_tool_use``).
    upstream_type: str | None = None
    # Provider data we pass through as it is (signatures, citations, results).
    data: dict[str, Any] | None = None


class StreamRequest(msgspec.Struct, omit_defaults=True):
    """What a stream's producer asked the provider for, when it knows.

    Set by ``warpd run`` / ``warpd proxy`` from the request each captured
    stream answers: ``model`` as the request named it, and ``prompt``, the
    text of the request's last user message, whitespace collapsed and cut to
    :data:`PROMPT_LIMIT` characters (``…`` marks a cut). Both are untrusted
    text from the producer.
    """

    model: str | None = None
    prompt: str | None = None


#: The most characters of a prompt a :class:`StreamRequest` carries.
PROMPT_LIMIT = 200


class StreamMessage(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Base of the messages that carry a stream's blocks (see subclasses)."""

    session: str
    stream: str
    seq: int
    streaming: bool
    complete: bool
    blocks: list[Block]
    # Changes whenever the daemon's history starts afresh (a restart): a
    # subscriber resuming with ``since`` compares it to know whether seq
    # numbers still mean the same messages.
    epoch: str = ""
    # Unix time the daemon started the stream; on its first message and on
    # snapshots and the final message.
    created: float | None = None
    model: str | None = None
    finish_reason: str | None = None
    # Per-choice finish reasons of an n>1 response, indexed by choice.
    finish_reasons: list[str | None] | None = None
    usage: dict[str, Any] | None = None
    aborted: bool = False
    abort_reason: str | None = None
    # This subscriber fell behind and was resynchronised: messages between
    # its last one and this one were replaced by snapshots.
    resync: bool = False
    # What was asked for, when the producer said (an ``open`` control): on
    # the stream's first message, snapshots and the last message.
    request: StreamRequest | None = None


class BlocksMessage(StreamMessage, tag="blocks"):
    """The blocks that changed in one upstream event, or a stream's final message."""


class SnapshotMessage(StreamMessage, tag="snapshot"):
    """A live stream's blocks so far, whole, for a subscriber that joins late."""


class HelloMessage(msgspec.Struct, tag="hello", tag_field="type", omit_defaults=True):
    """First message on every subscribe connection."""

    epoch: str
    sessions: list[str]
    # The last seq of each subscribed session at the moment of joining.
    seq: dict[str, int] = msgspec.field(default_factory=dict)
    # Set when ``since`` was asked for but cannot be honoured, and why.
    resume_failed: str | None = None


class ResyncMessage(msgspec.Struct, tag="resync", tag_field="type", omit_defaults=True):
    """This subscriber fell behind: ``dropped`` messages of ``session`` were not sent.

    What follows makes up for them: the final messages of streams that
    completed meanwhile, then a snapshot (``resync: true``) of each live
    stream as of ``seq``; live messages continue after ``seq``.
    """

    session: str
    seq: int
    dropped: int = 0


class ErrorMessage(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    """An error for the peer that caused it (or a subscriber's request error).

    ``frame`` is the 1-based number of the producer's frame at fault, if any.
    """

    message: str
    frame: int | None = None
    stream: str | None = None


class WarningMessage(msgspec.Struct, tag="warning", tag_field="type", omit_defaults=True):
    """To a producer: one of its frames was irregular, and was skipped or repaired.

    The stream goes on (subscribers see the same as an ``error`` block with
    ``source: "input"``). ``frame`` is the 1-based number of the frame,
    ``code`` the kind of irregularity (see docs/protocol.md), ``stream`` the
    stream it was recorded in, if one was live.
    """

    message: str
    frame: int | None = None
    code: str | None = None
    stream: str | None = None


class EndMessage(msgspec.Struct, tag="end", tag_field="type", omit_defaults=True):
    """Sent to a producer after its ``end`` control: every stream it pushed is complete."""

    streams: list[str]


class StatusMessage(msgspec.Struct, tag="status", tag_field="type", omit_defaults=True):
    """The daemon's answer on ``/status``."""

    version: str
    epoch: str
    pid: int
    uptime: float
    listen: list[str]
    sessions: list[dict[str, Any]]
    # With [broker] url: the Redis connection's state (see docs/scaling.md).
    broker: dict[str, Any] | None = None
    # What is kept: sessions (in use, idle), history in memory (messages,
    # bytes as counted against [history] total_bytes) and the history file.
    history: dict[str, Any] | None = None


class ReloadMessage(msgspec.Struct, tag="reload", tag_field="type", omit_defaults=True):
    """The daemon's answer on ``/reload``: whether the configuration was re-read.

    ``message`` says from where, or why not (the old configuration is kept).
    """

    ok: bool
    message: str
    pid: int = 0


ServerMessage = (
    BlocksMessage
    | SnapshotMessage
    | HelloMessage
    | ResyncMessage
    | ErrorMessage
    | WarningMessage
    | EndMessage
    | StatusMessage
    | ReloadMessage
)


class ProducerControl(msgspec.Struct, omit_defaults=True):
    """A control frame from a producer, told apart from upstream events by its prefix.

    ``end``: the producer has no more input; complete the live stream (as
    aborted if its provider never ended it) and reply with :class:`EndMessage`.
    ``abort``: the producer gives up; complete the live stream as aborted with
    ``reason``.
    ``open``: start a stream now, before its first event, saying what was
    asked for (``request``); a live stream is completed first, as by ``end``.
    ``finish``: the live stream's input is over: complete it as ``end`` does,
    but keep the connection for more streams (no ``end`` reply).
    ``skipped``: the producer discarded one upstream event of ``bytes``
    bytes for being over its size limit ``limit`` (it counts as a frame, and
    is recorded as the daemon records an oversized frame).
    """

    warpd: Literal["end", "abort", "open", "finish", "skipped"]
    reason: str | None = None
    request: StreamRequest | None = None
    bytes: int | None = None
    limit: int | None = None


# A producer's control frames are JSON objects whose first key is "warpd";
# checking this prefix keeps the per-frame cost O(1) for upstream events.
CONTROL_PREFIX = b'{"warpd":'

_encoder = msgspec.json.Encoder()
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_control_decoder = msgspec.json.Decoder(ProducerControl)


def only_input_errors(message: StreamMessage) -> bool:
    """Whether a stream's message holds nothing but input errors: the warnings of
    events that were skipped (``error.source == "input"``), no answer at all."""
    blocks = message.blocks
    return bool(blocks) and all(b.error is not None and b.error.source == "input" for b in blocks)


def encode(message: msgspec.Struct) -> bytes:
    """Encode any protocol Struct to JSON bytes with the process's one encoder."""
    return _encoder.encode(message)


def decode_server_message(data: bytes | str) -> ServerMessage:
    """Decode one message from the daemon; raises ``msgspec.DecodeError`` if malformed."""
    return _server_decoder.decode(data)


def decode_control(data: bytes) -> ProducerControl:
    """Decode a producer control frame; raises ``msgspec.DecodeError`` if malformed."""
    return _control_decoder.decode(data)


def encode_control(
    kind: Literal["end", "abort", "open", "finish", "skipped"],
    reason: str | None = None,
    *,
    request: StreamRequest | None = None,
    bytes: int | None = None,
    limit: int | None = None,
) -> bytes:
    """Encode a producer control frame (its first key is always ``warpd``)."""
    return _encoder.encode(ProducerControl(kind, reason, request, bytes, limit))


_SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")


def check_session_name(name: str) -> str | None:
    """Return why ``name`` is not a valid session name, or None if it is."""
    if _SESSION_NAME.fullmatch(name):
        return None
    return (
        f"invalid session name {name[:80]!r}: use 1-128 letters, digits and . _ : @ + -, "
        "starting with a letter or digit"
    )
