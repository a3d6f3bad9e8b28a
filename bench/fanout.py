"""Fan-out: 1 producer → N subscribers through a real ``warpd serve``, beside a bare relay.

The bare relay (``python -m bench.fanout relay SOCKET``) is the floor: a
``websockets`` server on the same event loop (uvloop) that rebroadcasts every
pushed frame unchanged with ``websockets.broadcast`` — no decoding, no blocks,
no per-subscriber outbox. Both run as their own processes on a Unix socket;
subscribers run in worker processes (up to ``WORKERS`` of them, each holding
several connections: 100 Python processes would measure process switching
on 2 cores, not the daemon).

Each pushed event is an OpenAI chat chunk whose text is ``t<ns>|``, where
``<ns>`` is ``time.monotonic_ns()`` taken just before the send. The text
reaches subscribers of warpd inside a block message and subscribers of the
relay inside the original chunk; either way a worker finds the timestamps in
the frame and compares them with its own ``time.monotonic_ns()`` —
``CLOCK_MONOTONIC`` is one clock for every process of a Linux machine.
A timestamp seen again (a stream's final message repeats the whole text) is
not counted twice.

Two phases per subscriber count:
- **throughput**: the producer sends as fast as the socket takes them;
  deliveries/s = fragments received by all subscribers ÷ (last receipt − first send);
- **latency**: the producer paces 500 events/s; push→receive p50/p99/p99.9.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.timing import table, verdict

WORKERS = 4
PACED_RATE = 500
_TIMESTAMP = re.compile(rb"t(\d+)\|")
_HEAD = '{"id":"chatcmpl-fanout","object":"chat.completion.chunk","model":"bench","choices":'


def _chunk(text: str) -> str:
    return _HEAD + '[{"index":0,"delta":{"content":"' + text + '"},"finish_reason":null}]}'


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- the bare relay --------------------------------------------------------


async def _relay(path: str) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, unix_serve

    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.startswith("/push"):
            async for frame in ws:
                broadcast(subscribers, frame)
        else:
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)

    # Per-message compression off, as warpd has it: same bytes on the wire.
    async with unix_serve(handler, path, max_size=2**20, compression=None):
        print("ready", flush=True)
        await asyncio.Future()


# -- subscriber workers ----------------------------------------------------


async def _worker(path: str, uri: str, connections: int, expect: int, timeout: float) -> None:
    from websockets.asyncio.client import unix_connect

    latencies = array.array("q")
    counts: list[int] = []
    last = [0]

    async def subscriber(ws: Any) -> None:
        seen = 0
        newest = 0
        async for frame in ws:
            now = time.monotonic_ns()
            data = frame.encode() if isinstance(frame, str) else frame
            for match in _TIMESTAMP.finditer(data):
                sent = int(match.group(1))
                if sent > newest:
                    newest = sent
                    seen += 1
                    latencies.append(now - sent)
                    last[0] = max(last[0], now)
            if seen >= expect:
                break
        counts.append(seen)

    sockets = [
        await unix_connect(path, uri, max_size=2**24, compression=None) for _ in range(connections)
    ]
    print("ready", flush=True)
    tasks = [asyncio.ensure_future(subscriber(ws)) for ws in sockets]
    await asyncio.wait(tasks, timeout=timeout)
    for task in tasks:
        task.cancel()
    counts.extend([0] * (connections - len(counts)))
    sys.stdout.write(json.dumps({"counts": counts, "last": last[0]}) + "\n")
    sys.stdout.flush()
    sys.stdout.buffer.write(latencies.tobytes())
    sys.stdout.flush()
    for ws in sockets:
        await ws.close()


# -- the producer and one measurement --------------------------------------


async def _produce(path: str, uri: str, count: int, rate: float | None) -> int:
    """Push ``count`` events (paced at ``rate``/s, or as fast as possible); return first send ns."""
    from websockets.asyncio.client import unix_connect

    async with unix_connect(path, uri, max_size=2**24, compression=None) as ws:
        first = time.monotonic_ns()
        start = time.monotonic()
        for i in range(count):
            if rate is not None:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(_chunk(f"t{time.monotonic_ns()}|"))
        await ws.send(_HEAD + '[{"index":0,"delta":{},"finish_reason":"stop"}]}')
        await ws.send("[DONE]")
        # Give the daemon time to send the stream's final message before closing.
        await asyncio.sleep(0.2)
    return first


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )


def _wait_ready(process: subprocess.Popen[bytes], what: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != b"ready":
        raise SystemExit(f"bench fanout: {what} did not start (said {line!r})")


def measure(
    path: str, session: str, subscribers: int, count: int, rate: float | None, timeout: float
) -> dict[str, Any]:
    """One phase against the server at ``path``: returns deliveries/s and latencies (µs)."""
    workers = min(WORKERS, subscribers)
    shares = [subscribers // workers + (i < subscribers % workers) for i in range(workers)]
    sub_uri = f"ws://localhost/subscribe?session={session}"
    procs = [
        _start(["-m", "bench.fanout", "worker", path, sub_uri, str(n), str(count), str(timeout)])
        for n in shares
    ]
    for proc in procs:
        _wait_ready(proc, "a subscriber worker")
    push_uri = f"ws://localhost/push?session={session}&format=openai"
    first = _run_loop(_produce(path, push_uri, count, rate))
    return collect_workers(procs, timeout, first, subscribers * count)


def collect_workers(
    procs: list[subprocess.Popen[bytes]], timeout: float, first: int, expected: int
) -> dict[str, Any]:
    """Wait for the subscriber workers: deliveries/s since ``first`` (ns), latency percentiles."""
    received = 0
    last = 0
    latencies = array.array("q")
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout + 30)
        head, _, body = out.partition(b"\n")
        summary = json.loads(head)
        received += sum(summary["counts"])
        last = max(last, summary["last"])
        latencies.frombytes(body[: len(body) // 8 * 8])
    values = sorted(latencies)

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))] / 1e3 if values else 0.0

    return {
        "received": received,
        "expected": expected,
        "deliveries_per_s": received / (max(last - first, 1) / 1e9),
        "p50": pct(50),
        "p99": pct(99),
        "p999": pct(99.9),
    }


class Server:
    """A warpd daemon or the bare relay, as a process on a fresh Unix socket."""

    def __init__(self, kind: str, directory: str) -> None:
        self.kind = kind
        self.path = os.path.join(directory, f"{kind}.sock")
        if kind == "warpd":
            config = Path(directory, "config.toml")
            # The history file (on, as by default) in the run's directory.
            history = Path(directory, "history.sqlite3")
            config.write_text(f'[log]\nlevel = "WARNING"\n[history]\npath = "{history}"\n')
            args = [
                "-m",
                "warpd",
                "serve",
                "--config",
                str(config),
                "--listen",
                f"unix:{self.path}",
            ]
            self.process = subprocess.Popen(
                [sys.executable, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 20
            while not os.path.exists(self.path):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench fanout: warpd serve did not start")
                time.sleep(0.05)
        else:
            self.process = _start(["-m", "bench.fanout", "relay", self.path])
            _wait_ready(self.process, "the relay")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run(quick: bool = False, subscriber_counts: tuple[int, ...] | None = None) -> None:
    counts = subscriber_counts or ((1, 10) if quick else (1, 10, 100))
    burst = 500 if quick else 2000
    paced = 250 if quick else 1000
    print("## Fan-out")
    print(
        f"1 producer → N subscribers over a Unix socket; subscribers in up to {WORKERS} worker "
        f"processes. Throughput: {burst} events pushed as fast as possible. Latency: {paced} "
        f"events paced at {PACED_RATE}/s, push→receive on CLOCK_MONOTONIC.\n"
    )
    rows: list[list[object]] = []
    results: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="warpd-bench-") as directory:
        servers = {kind: Server(kind, directory) for kind in ("warpd", "relay")}
        try:
            for n in counts:
                for kind, server in servers.items():
                    timeout = 30 + n * burst / 5000
                    phases = {
                        "burst": measure(server.path, f"burst{n}", n, burst, None, timeout),
                        "paced": measure(server.path, f"paced{n}", n, paced, PACED_RATE, timeout),
                    }
                    results[(kind, n)] = phases
        finally:
            for server in servers.values():
                server.stop()
    for n in counts:
        relay = results[("relay", n)]["burst"]["deliveries_per_s"]
        for kind in ("warpd", "relay"):
            burst_r, paced_r = results[(kind, n)]["burst"], results[(kind, n)]["paced"]
            rows.append(
                [
                    n,
                    kind,
                    f"{burst_r['deliveries_per_s']:,.0f}",
                    f"{burst_r['deliveries_per_s'] / relay:.2f}×",
                    f"{burst_r['received']}/{burst_r['expected']}",
                    f"{paced_r['p50']:,.0f}",
                    f"{paced_r['p99']:,.0f}",
                    f"{paced_r['p999']:,.0f}",
                    f"{paced_r['received']}/{paced_r['expected']}",
                ]
            )
    print(
        table(
            [
                "subscribers",
                "server",
                "deliveries/s",
                "÷ relay",
                "received",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "received (paced)",
            ],
            rows,
        )
    )
    if 100 in counts:
        warpd, relay_r = results[("warpd", 100)], results[("relay", 100)]
        ratio = warpd["burst"]["deliveries_per_s"] / relay_r["burst"]["deliveries_per_s"]
        p99_ms = warpd["paced"]["p99"] / 1000
        print(
            f"Targets at 100 subscribers: throughput ≥ 0.8× the relay: {ratio:.2f}× "
            f"({verdict(ratio >= 0.8)}); p99 ≤ 5 ms at {PACED_RATE} events/s: {p99_ms:.1f} ms "
            f"({verdict(p99_ms <= 5)})"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    sub = parser.add_subparsers(dest="role", required=True)
    relay = sub.add_parser("relay")
    relay.add_argument("path")
    worker = sub.add_parser("worker")
    worker.add_argument("path")
    worker.add_argument("uri")
    worker.add_argument("connections", type=int)
    worker.add_argument("expect", type=int)
    worker.add_argument("timeout", type=float)
    bench = sub.add_parser("run")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--subscribers", type=int, nargs="+")
    args = parser.parse_args(argv)
    if args.role == "relay":
        _run_loop(_relay(args.path))
    elif args.role == "worker":
        _run_loop(_worker(args.path, args.uri, args.connections, args.expect, args.timeout))
    else:
        run(args.quick, tuple(args.subscribers) if args.subscribers else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
