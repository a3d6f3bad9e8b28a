"""What a captured request asked for: its model and its last user message, in short.

Read from the request body each provider's API takes (its API reference):

- ``openai`` (Chat Completions) and ``ollama`` (``/api/chat``): ``messages``,
  each ``{"role", "content"}``, content a string or a list of parts
  (``{"type": "text", "text"}``, images…);
- ``anthropic`` (Messages): ``messages`` likewise, parts being content
  blocks (``text``, ``image``, ``tool_result``…);
- ``openai-responses``: ``input``, a string or a list of items, messages
  among them (``{"role": "user", "content"}``, parts ``input_text``…);
- ``ollama`` (``/api/generate``): ``prompt``, a string.

The prompt is the text of the last user message; a message with no text part
is named by its parts' types (``[tool_result ×2]``: in an agent loop the last
user turn is often tool output). Whitespace is collapsed and the result cut
to :data:`~warpd.protocol.PROMPT_LIMIT` characters, ``…`` marking a cut.
Never raises: a body of another shape gives what could be read, or None.
Only the last user message is decoded in full, so a long conversation costs
one pass of msgspec over the body.
"""

from __future__ import annotations

from typing import Any

import msgspec

from warpd.protocol import PROMPT_LIMIT, StreamRequest


class _Message(msgspec.Struct):
    role: Any = None
    type: Any = None
    content: msgspec.Raw = msgspec.Raw()


class _Body(msgspec.Struct):
    model: Any = None
    messages: msgspec.Raw = msgspec.Raw()
    input: msgspec.Raw = msgspec.Raw()
    prompt: Any = None


_body_decoder = msgspec.json.Decoder(_Body)
_messages_decoder = msgspec.json.Decoder(list[_Message])
_any_decoder = msgspec.json.Decoder()


def summarise_request(body: bytes) -> StreamRequest | None:
    """The model and prompt of a request ``body`` (JSON bytes), or None if it names neither."""
    try:
        request = _body_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    model = _short(request.model) if isinstance(request.model, str) else None
    prompt: str | None = None
    if isinstance(request.prompt, str):
        prompt = request.prompt
    else:
        prompt = _last_user_text(request.messages) or _input_text(request.input)
    prompt = _short(prompt) if prompt else None
    if model is None and prompt is None:
        return None
    return StreamRequest(model=model, prompt=prompt)


def _last_user_text(raw: msgspec.Raw) -> str | None:
    if not raw:
        return None
    try:
        messages = _messages_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    for message in reversed(messages):
        if message.role == "user":
            return _content_text(message.content)
    return None


def _input_text(raw: msgspec.Raw) -> str | None:
    """The last user message of a Responses ``input`` (a string is the message itself)."""
    if not raw:
        return None
    if memoryview(raw)[:1].tobytes() == b'"':
        try:
            text = _any_decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        return text if isinstance(text, str) else None
    return _last_user_text(raw)


def _content_text(raw: msgspec.Raw) -> str | None:
    if not raw:
        return None
    try:
        content = _any_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    kinds: dict[str, int] = {}
    for part in content:
        if not isinstance(part, dict):
            continue
        text = part.get("text")
        if isinstance(text, str) and text.strip():
            texts.append(text)
        else:
            kind = part.get("type")
            kind = kind if isinstance(kind, str) else "part"
            kinds[kind] = kinds.get(kind, 0) + 1
    if texts:
        return " ".join(texts)
    named = (f"{kind} ×{count}" if count > 1 else kind for kind, count in kinds.items())
    return f"[{', '.join(named)}]" if kinds else None


def _short(text: str) -> str:
    """``text`` on one line, cut to PROMPT_LIMIT characters."""
    # Collapsing looks at a bounded head only: a pasted megabyte costs no more.
    head = text[: PROMPT_LIMIT * 8]
    one_line = " ".join(head.split())
    if len(one_line) > PROMPT_LIMIT or len(head) < len(text):
        return one_line[: PROMPT_LIMIT - 1] + "…"
    return one_line
