"""Example streams warpd ships, for ``warpd demo`` and ``warpd play`` (no API key needed).

The project wrote them itself in the shapes providers send (field names,
event order, how fragments split), with its own content:

============================== ============ =========================================
file                           format       what it shows
============================== ============ =========================================
openai_chat_parallel_tools.sse openai       two parallel tool calls, argument fragments
anthropic_thinking_tool.sse    anthropic    thinking (with signature), text, a tool
ollama_chat.ndjson             ollama       /api/chat: thinking then markdown, timed
plain.txt                      text         plain text, as a command's output
============================== ============ =========================================

Only the Ollama example carries times (``created_at`` on every object), so it
plays at its recorded pace; the others play at a steady rate.
"""

from __future__ import annotations

from importlib.resources import files

# File name → the format ``warpd push --format`` would name (auto detects each).
EXAMPLES: dict[str, str] = {
    "openai_chat_parallel_tools.sse": "openai",
    "anthropic_thinking_tool.sse": "anthropic",
    "ollama_chat.ndjson": "ollama",
    "plain.txt": "text",
}


def read_example(name: str) -> bytes:
    """The bytes of example ``name`` (a key of :data:`EXAMPLES`); KeyError if unknown."""
    if name not in EXAMPLES:
        raise KeyError(name)
    return files(__name__).joinpath(name).read_bytes()
