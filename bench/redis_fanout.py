"""Fan-out through Redis: 1 producer on daemon A → N subscribers split over daemons A and B.

Beside it, in the same run, the single-daemon in-memory figure (the same N
subscribers on one daemon without a broker), measured the same way as
bench/fanout.py (its subscriber workers, producer and timestamps: push→receive
on CLOCK_MONOTONIC). Everything is on this machine: a redis-server started on
a free loopback port without persistence, daemons on Unix sockets.

Run: ``python -m bench.redis_fanout [--quick]`` (or ``python -m bench redis_fanout``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fanout import (
    PACED_RATE,
    WORKERS,
    _produce,
    _run_loop,
    _start,
    _wait_ready,
    collect_workers,
)
from bench.timing import table


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Redis:
    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(binary, os.X_OK):
            raise SystemExit("bench redis_fanout: redis-server is not installed")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("bench redis_fanout: redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Daemon:
    def __init__(self, directory: str, name: str, broker_url: str = "") -> None:
        self.path = os.path.join(directory, f"{name}.sock")
        config = Path(directory, f"{name}.toml")
        history = Path(directory, f"{name}.sqlite3")
        text = f'[log]\nlevel = "WARNING"\n[history]\npath = "{history}"\n'
        if broker_url:
            text += f'[broker]\nurl = "{broker_url}"\n'
        config.write_text(text)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "warpd", "serve", "--config", str(config),
             "--listen", f"unix:{self.path}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench redis_fanout: warpd serve did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(push_path: str, sub_paths: list[str], session: str, subscribers: int,
            count: int, rate: float | None, timeout: float) -> dict[str, Any]:
    """Push to ``push_path``; subscribers split evenly over ``sub_paths``."""
    per_daemon = [subscribers // len(sub_paths) + (i < subscribers % len(sub_paths))
                  for i in range(len(sub_paths))]
    procs = []
    workers_each = max(1, WORKERS // len(sub_paths))
    for path, n in zip(sub_paths, per_daemon, strict=True):
        workers = min(workers_each, n)
        shares = [n // workers + (i < n % workers) for i in range(workers)]
        uri = f"ws://localhost/subscribe?session={session}"
        procs += [
            _start(["-m", "bench.fanout", "worker", path, uri, str(k), str(count), str(timeout)])
            for k in shares
        ]
    for proc in procs:
        _wait_ready(proc, "a subscriber worker")
    # Let every daemon see the subscriptions before the first event.
    time.sleep(0.2)
    first = _run_loop(_produce(push_path, f"ws://localhost/push?session={session}&format=openai",
                               count, rate))
    return collect_workers(procs, timeout, first, subscribers * count)


async def _publish_ceiling(url: str, count: int, size: int) -> tuple[float, float]:
    """Messages/s and MB/s through the Lua publish alone (pipelined batches, one client)."""
    from warpd.broker.redis import Outgoing, RedisBroker, split_at_seq
    from warpd.config import BrokerConfig
    from warpd.protocol import Block, BlocksMessage, encode

    broker = RedisBroker(BrokerConfig(url=url, stream_maxlen=10_000))
    epoch = await broker.connect()
    message = BlocksMessage(
        session="ceiling", stream="ceiling/1", seq=0, streaming=True, complete=False,
        blocks=[Block(id="ceiling/1/0", index=0, type="text", streaming=True, complete=False,
                      text="x" * size)],
        epoch=epoch,
    )
    head, tail = split_at_seq(encode(message))
    items = [Outgoing("ceiling", "ceiling/1", "delta", head, tail) for _ in range(512)]
    start = time.perf_counter()
    done = 0
    while done < count:
        await broker.publish(items)
        done += len(items)
    seconds = time.perf_counter() - start
    await broker.close()
    return done / seconds, done * (len(head) + len(tail) + 4) / seconds / 1e6


def run(quick: bool = False) -> None:
    subscribers = 20 if quick else 100
    burst = 500 if quick else 2000
    paced = 250 if quick else 1000
    print("## Redis")
    print(
        f"1 producer on daemon A → {subscribers} subscribers, half on A and half on B, both "
        f"sharing sessions through one local redis-server (loopback TCP), beside the same "
        f"{subscribers} subscribers on one daemon in memory. Throughput: {burst} events as "
        f"fast as possible; latency: {paced} events paced at {PACED_RATE}/s.\n"
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="warpd-bench-") as directory:
        redis = Redis(directory)
        daemons: list[Daemon] = []
        try:
            memory = Daemon(directory, "memory")
            daemons.append(memory)
            a = Daemon(directory, "a", redis.url)
            b = Daemon(directory, "b", redis.url)
            daemons += [a, b]
            setups = {
                "one daemon, in memory": (memory.path, [memory.path]),
                "two daemons, Redis": (a.path, [a.path, b.path]),
            }
            ceiling = _run_loop(_publish_ceiling(redis.url, 20_000 if quick else 100_000, 40))
            timeout = 30 + subscribers * burst / 5000
            for name, (push, subs) in setups.items():
                results[name] = {
                    "burst": measure(push, subs, "burst", subscribers, burst, None, timeout),
                    "paced": measure(push, subs, "paced", subscribers, paced, PACED_RATE,
                                     timeout),
                }
        finally:
            for daemon in daemons:
                daemon.stop()
            redis.stop()
    rows = []
    for name, phases in results.items():
        burst_r, paced_r = phases["burst"], phases["paced"]
        rows.append([
            name,
            f"{burst_r['deliveries_per_s']:,.0f}",
            f"{burst_r['received']}/{burst_r['expected']}",
            f"{paced_r['p50']:,.0f}",
            f"{paced_r['p99']:,.0f}",
            f"{paced_r['p999']:,.0f}",
            f"{paced_r['received']}/{paced_r['expected']}",
        ])
    print(table(["setup", "deliveries/s", "received", "p50 µs", "p99 µs", "p99.9 µs",
                 "received (paced)"], rows))
    print(
        f"\nRedis's own ceiling for one session (the Lua publish: INCR, XADD MAXLEN ~, "
        f"PUBLISH; batches of 512 from one client, ~170-byte messages, both daemons "
        f"receiving them, no subscriber): "
        f"{ceiling[0]:,.0f} messages/s ({ceiling[1]:.1f} MB/s)."
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_fanout")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
