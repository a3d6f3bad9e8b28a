"""The naive baseline: dicts and ``json.loads``, re-joining the text on every chunk.

This is what the original module (../shared/seed/streaming.py,
``DeltaStreamProcessor.process_delta``) did, and what a quick script piping a
stream usually does: each chunk is parsed into dicts, its fragment appended to
a list, and the accumulated text re-joined so that every update carries the
whole text so far — O(length so far) per chunk, O(n²) per stream. Tool-call
arguments are accumulated with ``+=`` on a dict value (also a copy per chunk).
"""

from __future__ import annotations

import json
from typing import Any


class NaiveOpenAIAccumulator:
    """The seed's ``DeltaStreamProcessor``, fed whole chunks (as its adapter did)."""

    def __init__(self) -> None:
        self.content_buffer: list[str] = []
        self.tool_call_buffer: dict[int, dict[str, Any]] = {}

    def add_chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content_buffer.append(delta["content"])
                result["content"] = delta["content"]
                result["accumulated_content"] = "".join(self.content_buffer)
            for tool_call in delta.get("tool_calls") or ():
                index = tool_call.get("index", 0)
                slot = self.tool_call_buffer.setdefault(
                    index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                if "id" in tool_call:
                    slot["id"] = tool_call["id"]
                function = tool_call.get("function") or {}
                if "name" in function:
                    slot["function"]["name"] = function["name"]
                if "arguments" in function:
                    slot["function"]["arguments"] += function["arguments"]
                result["tool_calls"] = list(self.tool_call_buffer.values())
        return result


class NaiveAnthropicAccumulator:
    """The same approach for Anthropic events: blocks as dicts, text re-joined per delta."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.parts: dict[int, list[str]] = {}

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        kind = event.get("type")
        if kind == "content_block_start":
            self.blocks[event["index"]] = dict(event["content_block"])
            self.parts[event["index"]] = []
        elif kind == "content_block_delta":
            index = event["index"]
            delta = event["delta"]
            block = self.blocks[index]
            fragment = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
            if fragment is not None:
                self.parts[index].append(fragment)
                field = {"text_delta": "text", "thinking_delta": "thinking"}.get(
                    delta["type"], "partial_json"
                )
                block[field] = "".join(self.parts[index])
            elif delta.get("type") == "signature_delta":
                block["signature"] = delta["signature"]
            return block
        return {}


def sse_json_events(reads: list[bytes]) -> list[Any]:
    """Parse SSE bytes the quick way: join, split lines, ``json.loads`` each ``data:`` line."""
    events = []
    for line in b"".join(reads).decode("utf-8").splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return events
