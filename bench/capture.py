"""Capture proxy: what ``warpd proxy`` adds to time to first byte and to each chunk's latency.

A fake provider (this module run as ``python -m bench.capture``, an aiohttp
server in its own process) answers each request with an SSE stream of
OpenAI-shaped chunks, one every ``PACE`` seconds, each carrying the
``time.monotonic_ns()`` at which it was written (the clock is system-wide, so
other processes can compare). The client — a plain blocking socket in this
process — takes every request twice in the same run, interleaved: straight
to the provider (the baseline) and through a real ``warpd proxy`` that tees
every answer into a real ``warpd serve`` with one ``warpd subscribe``
reading the session. For each it records:

- time to first byte: from sending the request to the first bytes of the
  answer's body;
- per-chunk latency: from the provider writing a chunk to the client
  reading it.

Reported: p50 and p99 of each, direct and proxied, and what the proxy adds
(the difference of the percentiles). Targets: under 2 ms added to first
byte and under 0.5 ms per chunk, at p50.

``python -m bench capture`` (``--quick``: fewer, shorter streams).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACE = 0.002
TARGETS_MS = {"first byte": 2.0, "chunk": 0.5}
_STAMP = re.compile(rb'"t":(\d+)')


# -- the fake provider (its own process) ---------------------------------------


def serve_upstream() -> None:
    """Serve the paced SSE answer on a free loopback port; print the port; run until killed."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        chunks = int(request.query.get("chunks", "100"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n in range(chunks):
            content = f"token {n} "
            await response.write(
                b'data: {"object":"chat.completion.chunk","model":"bench","t":%d,'
                b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
                % (time.monotonic_ns(), content.encode())
            )
            await asyncio.sleep(PACE)
        await response.write(
            b'data: {"object":"chat.completion.chunk","model":"bench","t":%d,"choices":'
            b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
            % time.monotonic_ns()
        )
        await response.write_eof()
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the client ------------------------------------------------------------------


def _exchange(port: int, path: str, chunks: int) -> tuple[float, list[float]]:
    """One request; (seconds to the body's first bytes, each chunk's latency in seconds)."""
    body = b'{"model":"bench","stream":true,"messages":[{"role":"user","content":"go"}]}'
    request = (
        f"POST {path}?chunks={chunks} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    first: float | None = None
    buffer = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = time.monotonic_ns()
        sock.sendall(request)
        in_body = False
        while True:
            data = sock.recv(65536)
            now = time.monotonic_ns()
            if not data:
                break
            buffer += data
            if not in_body:
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    continue
                in_body, buffer = True, rest
                if not buffer:
                    continue
            if first is None:
                first = (now - sent) / 1e9
            # Whole events only: a stamp cut by a read waits for its rest.
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            for stamp in _STAMP.findall(buffer[:cut]):
                latencies.append((now - int(stamp)) / 1e9)
            buffer = buffer[cut + 2 :]
    assert first is not None, "no answer"
    return first, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _environment(home: Path) -> dict[str, str]:
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LISTEN_", "NOTIFY_", "WARPD_", "XDG_"))}
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OLLAMA_HOST"):
        env.pop(name, None)
    env.update(XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(home / "config"),
               PYTHONPATH=str(ROOT), NO_COLOR="1", WARPD_ADDR=f"unix:{home / 'warpd.sock'}")
    return env


def _read_line(process: subprocess.Popen[bytes], pattern: bytes, seconds: float = 20) -> bytes:
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if pattern in line or re.match(pattern, line):
            return line
        if not line and process.poll() is not None:
            break
    raise SystemExit(f"bench capture: no {pattern!r} from {process.args!r}")


def run(quick: bool = False) -> None:
    requests, chunks = (6, 50) if quick else (30, 200)
    print(f"capture proxy: {requests} streams of {chunks} chunks, {PACE * 1000:.0f} ms apart, "
          "each taken straight to the provider and through warpd proxy (with a daemon and a "
          "subscriber), interleaved")
    with tempfile.TemporaryDirectory(prefix="warpd-bench-", dir="/tmp") as tmp:
        home = Path(tmp)
        env = _environment(home)
        python = sys.executable
        processes: list[subprocess.Popen[bytes]] = []

        def start(*argv: str, **options: object) -> subprocess.Popen[bytes]:
            process = subprocess.Popen(list(argv), env=env, **options)  # type: ignore[call-overload]
            processes.append(process)
            return process

        try:
            upstream = start(python, "-m", "bench.capture", stdout=subprocess.PIPE)
            upstream_port = int(_read_line(upstream, rb"\d+"))
            start(python, "-m", "warpd", "serve", "--listen", env["WARPD_ADDR"],
                  "--log-level", "WARNING", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 20
            while not (home / "warpd.sock").exists():
                if time.monotonic() > deadline:
                    raise SystemExit("bench capture: the daemon did not start")
                time.sleep(0.02)
            start(python, "-m", "warpd", "subscribe", "--session", "bench", "--output", "jsonl",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proxy = start(python, "-m", "warpd", "proxy", "--session", "bench", "--log-level",
                          "WARNING", "--upstream", f"openai=http://127.0.0.1:{upstream_port}/v1",
                          stdout=subprocess.PIPE)
            line = _read_line(proxy, b"export OPENAI_BASE_URL=")
            proxy_port = int(re.search(rb":(\d+)/openai", line).group(1))  # type: ignore[union-attr]
            # Warm both paths up (imports, connection pools, the daemon's first session).
            for _ in range(2):
                _exchange(upstream_port, "/v1/chat/completions", 10)
                _exchange(proxy_port, "/openai/v1/chat/completions", 10)
            results: dict[str, tuple[list[float], list[float]]] = {
                "direct": ([], []), "proxied": ([], [])}
            for _ in range(requests):
                for name, port, path in (("direct", upstream_port, "/v1/chat/completions"),
                                         ("proxied", proxy_port, "/openai/v1/chat/completions")):
                    first, latencies = _exchange(port, path, chunks)
                    results[name][0].append(first)
                    results[name][1].extend(latencies)
        finally:
            for process in reversed(processes):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    print(f"{'':>24}{'direct':>10}{'proxied':>10}{'added':>10}   target (added, p50)")
    for index, label in ((0, "first byte"), (1, "chunk")):
        direct, proxied = results["direct"][index], results["proxied"][index]
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            d, p = _percentile(direct, q) * 1000, _percentile(proxied, q) * 1000
            target = f"< {TARGETS_MS[label]} ms" if name == "p50" else ""
            verdict = ("ok" if p - d < TARGETS_MS[label] else "OVER") if target else ""
            print(f"{label + ' ' + name + ' (ms)':>24}{d:>10.3f}{p:>10.3f}{p - d:>10.3f}   "
                  f"{target} {verdict}")
    mean = statistics.mean(results["proxied"][1]) - statistics.mean(results["direct"][1])
    print(f"chunks measured: {len(results['direct'][1])} direct, {len(results['proxied'][1])} "
          f"proxied; mean added per chunk {mean * 1000:.3f} ms")


if __name__ == "__main__":
    serve_upstream()
