"""Real SDK clients for the capture tests, run as ``python -m tests.capture_clients SDK``.

Each makes its requests the way an application does — the SDK's own client,
its base URL and key taken from the environment, sync and async, streaming
and not — and prints what it got as one JSON document, so a test can compare
a run straight against the upstream with a run under ``warpd run``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


def dump(obj: Any) -> Any:
    return obj.model_dump(mode="json")


def openai_requests() -> dict[str, Any]:
    import openai

    messages: Any = [{"role": "user", "content": "What is the weather in Edinburgh?"}]
    client = openai.OpenAI(max_retries=0)
    out: dict[str, Any] = {}
    out["chat stream"] = [dump(c) for c in client.chat.completions.create(
        model="gpt-4o", messages=messages, stream=True)]
    out["chat"] = dump(client.chat.completions.create(model="gpt-4o", messages=messages))
    out["responses stream"] = [dump(e) for e in client.responses.create(
        model="gpt-5", input="List the files", stream=True)]
    out["responses"] = dump(client.responses.create(model="gpt-5", input="List the files"))

    async def async_requests() -> None:
        aclient = openai.AsyncOpenAI(max_retries=0)
        stream = await aclient.chat.completions.create(model="gpt-4o", messages=messages,
                                                       stream=True)
        out["async chat stream"] = [dump(c) async for c in stream]
        out["async chat"] = dump(await aclient.chat.completions.create(
            model="gpt-4o", messages=messages))
        await aclient.close()

    asyncio.run(async_requests())
    return out


def anthropic_requests() -> dict[str, Any]:
    import anthropic

    messages: Any = [{"role": "user", "content": "Search for warpd"}]
    client = anthropic.Anthropic(max_retries=0)
    out: dict[str, Any] = {}
    out["stream"] = [dump(e) for e in client.messages.create(
        model="claude-test", max_tokens=100, messages=messages, stream=True)]
    out["message"] = dump(client.messages.create(
        model="claude-test", max_tokens=100, messages=messages))

    async def async_requests() -> None:
        aclient = anthropic.AsyncAnthropic(max_retries=0)
        async with aclient.messages.stream(model="claude-test", max_tokens=100,
                                           messages=messages) as stream:
            out["async stream final"] = dump(await stream.get_final_message())
        out["async message"] = dump(await aclient.messages.create(
            model="claude-test", max_tokens=100, messages=messages))
        await aclient.close()

    asyncio.run(async_requests())
    return out


#: How many requests each client makes: (streamed, whole).
REQUESTS = {"openai": (3, 3), "anthropic": (2, 2)}

if __name__ == "__main__":
    which = sys.argv[1]
    result = openai_requests() if which == "openai" else anthropic_requests()
    json.dump(result, sys.stdout, sort_keys=True)
