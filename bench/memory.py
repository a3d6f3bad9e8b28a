"""Memory: the daemon's RSS per idle subscriber and per live stream.

A fresh ``warpd serve`` on a Unix socket is warmed up (one stream pushed and
subscribed to, so that lazily imported code and first allocations are paid),
then its RSS (``VmRSS`` of /proc) is read before and after a worker process
opens N idle subscriber connections, then K producer connections that each
start a stream (one text fragment, no end) in a session of its own. The
figure is the RSS difference divided by N (or K). RSS moves in whole pages
and the allocator keeps freed memory, so only differences over many
connections mean anything. The same is measured for the bare relay's idle
subscribers, the floor: a ``websockets`` connection and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from typing import Any

from bench.fanout import Server, _chunk, _run_loop, _wait_ready
from bench.timing import table, verdict

IDLE_TARGET_KIB = 32


async def _hold(path: str, role: str, count: int) -> None:
    """Open ``count`` subscriber or producer connections, say ready, hold until stdin closes."""
    from websockets.asyncio.client import unix_connect

    sockets = []
    for i in range(count):
        if role == "subscribers":
            uri = f"ws://localhost/subscribe?session=idle{i % 10}"
            sockets.append(await unix_connect(path, uri, compression=None))
        else:
            uri = f"ws://localhost/push?session=live{i}&format=openai"
            ws = await unix_connect(path, uri, compression=None)
            await ws.send(_chunk("a live stream's first words, " * 4))
            sockets.append(ws)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for ws in sockets:
        await ws.close()


def _settled_rss(server: Server) -> int:
    time.sleep(0.5)
    return server.rss_kib()


def _per_connection(server: Server, role: str, count: int, held: list[Any]) -> float:
    """RSS growth per connection; the holder stays open (in ``held``) so that the next
    measurement cannot reuse the memory these connections would free."""
    before = _settled_rss(server)
    held.append(_start_holder(server.path, role, count))
    after = _settled_rss(server)
    return (after - before) / count


def _start_holder(path: str, role: str, count: int) -> Any:
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.memory", "hold", path, role, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    _wait_ready(proc, f"the {role} holder")
    return proc


def _release(proc: Any) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def _warm(server: Server) -> None:
    holder = _start_holder(server.path, "subscribers", 10)
    streams = _start_holder(server.path, "streams", 10)
    _release(streams)
    _release(holder)


def run(quick: bool = False) -> None:
    subscribers = 100 if quick else 500
    streams = 50 if quick else 200
    print("## Memory")
    print(
        f"RSS growth of the server process divided by the number of connections: "
        f"{subscribers} idle subscribers, {streams} live streams (one per session).\n"
    )
    rows: list[list[object]] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="warpd-bench-") as directory:
        for kind in ("warpd", "relay"):
            server = Server(kind, directory)
            held: list[Any] = []
            try:
                _warm(server)
                base = _settled_rss(server)
                idle = _per_connection(server, "subscribers", subscribers, held)
                figures[kind] = idle
                row: list[object] = [kind, f"{base:,}", f"{idle:.1f}"]
                if kind == "warpd":
                    row.append(f"{_per_connection(server, 'streams', streams, held):.1f}")
                else:
                    row.append("—")
                rows.append(row)
            finally:
                for holder in held:
                    _release(holder)
                server.stop()
    print(
        table(["server", "RSS at rest KiB", "KiB per idle subscriber", "KiB per live stream"], rows)
    )
    print(
        f"Target ≤ {IDLE_TARGET_KIB} KiB per idle subscriber: {figures['warpd']:.1f} KiB "
        f"({verdict(figures['warpd'] <= IDLE_TARGET_KIB)}); the bare relay: "
        f"{figures['relay']:.1f} KiB"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    sub = parser.add_subparsers(dest="role", required=True)
    hold = sub.add_parser("hold")
    hold.add_argument("path")
    hold.add_argument("kind", choices=("subscribers", "streams"))
    hold.add_argument("count", type=int)
    bench = sub.add_parser("run")
    bench.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "hold":
        _run_loop(_hold(args.path, args.kind, args.count))
    else:
        run(args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
