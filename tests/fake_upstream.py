"""A fake LLM provider for the capture tests: a real aiohttp server on a loopback port.

It answers each request with an :class:`Answer` chosen by the test (by path,
and by the body's ``stream`` flag), sent in paced pieces, and logs every
request it got — method, path, query, headers, body — so a test can check
what reached the upstream. It runs in a thread with its own event loop, so
the test's own code (and the subprocesses it starts) can talk to it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class Answer:
    """What the fake upstream sends back: the body in ``pieces`` pieces, ``pace`` s apart."""

    body: bytes
    content_type: str = "text/event-stream"
    status: int = 200
    pieces: int = 8
    pace: float = 0.005
    gzip: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    # Cut the connection after this many pieces (an upstream that breaks).
    cut_after: int | None = None
    # Wait for this event (set by the test) after the first piece.
    hold: threading.Event | None = None
    # Wait for this event before answering at all (no status, no headers yet).
    hold_head: threading.Event | None = None

    def wire_pieces(self) -> list[bytes]:
        data = gzip.compress(self.body, mtime=0) if self.gzip else self.body
        size = max(1, -(-len(data) // self.pieces))
        return [data[i : i + size] for i in range(0, len(data), size)]


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


Chooser = Callable[[str, dict[str, Any]], Answer]


class FakeUpstream:
    """The fake provider; ``url`` is ``http://127.0.0.1:PORT``. Use as a context manager."""

    def __init__(self, choose: Chooser | None = None) -> None:
        self.choose: Chooser = choose or (lambda path, body: Answer(b"{}", "application/json"))
        self.received: list[Received] = []
        self.completed = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def log(self) -> str:
        """Everything received, as text (headers included: credentials belong here)."""
        return "\n".join(
            f"{r.method} {r.path}?{r.query} {json.dumps(r.headers)} "
            f"{r.body.decode(errors='replace')}"
            for r in self.received
        )

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.method, request.path, request.query_string,
                                      dict(request.headers), body))
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        answer = self.choose(request.path, parsed if isinstance(parsed, dict) else {})
        if answer.hold_head is not None:
            await asyncio.get_running_loop().run_in_executor(None, answer.hold_head.wait, 10)
        headers = {"Content-Type": answer.content_type, **answer.headers}
        if answer.gzip:
            headers["Content-Encoding"] = "gzip"
        response = web.StreamResponse(status=answer.status, headers=headers)
        await response.prepare(request)
        for number, piece in enumerate(answer.wire_pieces(), 1):
            try:
                await response.write(piece)
            except ConnectionResetError:
                return response  # the proxy went away (its client did)
            if number == 1 and answer.hold is not None:
                await asyncio.get_running_loop().run_in_executor(None, answer.hold.wait, 10)
            if answer.cut_after is not None and number >= answer.cut_after:
                assert request.transport is not None
                request.transport.abort()
                return response
            await asyncio.sleep(answer.pace)
        await response.write_eof()
        self.completed += 1
        return response


# -- the recorded fixtures as a provider would send them ---------------------


def fixture_route(path: Path) -> tuple[str, str]:
    """(API path, format) a recorded fixture answers, from its name."""
    name = path.name
    if name.startswith("anthropic_"):
        return "/v1/messages", "anthropic"
    if name.startswith("openai_responses_"):
        return "/v1/responses", "openai-responses"
    if name.startswith("ollama_generate"):
        return "/api/generate", "ollama"
    return "/v1/chat/completions", "openai"


def fixture_answer(path: Path, **options: Any) -> Answer:
    """A recorded fixture as its provider sends it over HTTP (see :func:`provider_answer`)."""
    return provider_answer(path.read_bytes(), path.suffix, **options)


def provider_answer(data: bytes, suffix: str, **options: Any) -> Answer:
    """A recorded stream as its provider sends it over HTTP.

    ``.sse`` data is sent as it is; ``.jsonl`` (SSE payloads without their
    framing) gets it back: ``event:`` lines for typed events as Anthropic and
    the Responses API send them, and ``[DONE]`` after OpenAI chat chunks.
    ``.ndjson`` is Ollama's own framing.
    """
    if suffix == ".ndjson":
        return Answer(data, "application/x-ndjson", **options)
    if suffix == ".sse":
        return Answer(data, **options)
    out = []
    typed = False
    for line in data.splitlines():
        if not line.strip():
            continue
        kind = json.loads(line).get("type")
        if isinstance(kind, str):
            typed = True
            out.append(f"event: {kind}\n".encode())
        out.append(b"data: " + line + b"\n\n")
    if not typed:
        out.append(b"data: [DONE]\n\n")
    return Answer(b"".join(out), **options)
