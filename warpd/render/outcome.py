"""How a stream ended, in words (the protocol keeps the provider's own value).

Providers name the same outcomes differently (``stop``, ``end_turn``,
``completed``; ``length``, ``max_tokens``, ``max_output_tokens``): a reader
wants the outcome, not the vocabulary.
"""

from __future__ import annotations

from warpd.protocol import StreamMessage
from warpd.render.untrusted import neutralise

FINISH_WORDS = {
    "stop": "done",
    "end_turn": "done",
    "completed": "done",
    "stop_sequence": "done",
    "eos": "done",
    "length": "cut off at the token limit",
    "max_tokens": "cut off at the token limit",
    "max_output_tokens": "cut off at the token limit",
    "model_length": "cut off at the token limit",
    "tool_calls": "tool calls",
    "tool_use": "tool calls",
    "function_call": "tool calls",
    "content_filter": "filtered",
    "safety": "filtered",
    "refusal": "refused",
    "pause_turn": "paused",
    "incomplete": "incomplete",
}


def finish_words(reason: str | None) -> str:
    """A provider's finish reason in words (``end_turn`` → ``done``), else neutralised."""
    if not reason:
        return "-"
    return FINISH_WORDS.get(reason.lower(), neutralise(reason))


def outcome(final: StreamMessage) -> str:
    """What became of a complete stream: ``done``, ``failed`` (an error), ``aborted``, …"""
    if final.aborted:
        return "failed" if any(b.type == "error" for b in final.blocks) else "aborted"
    return finish_words(final.finish_reason)
