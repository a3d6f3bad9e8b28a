"""History file: what writing every message to disk costs, and how fast `warpd log` reads it.

``python -m bench history [--quick]`` (or ``python -m bench.history``).

1. **Publish with the file on vs off**, in the same run: two ``warpd serve``
   processes, one with ``[history] persist = true`` (the default), one with
   ``persist = false``, measured in alternating rounds. In each round one
   producer pushes token-sized OpenAI chat events over a raw WebSocket and one
   subscriber reads them, in this process:
   - *throughput*: the producer sends a stream's events as fast as the socket
     takes them; events/s = events ÷ (subscriber's receipt of the final − first send);
   - *latency*: the producer paces 1,000 events/s; push → subscriber receipt,
     p50 and p99 (each event's text carries ``time.monotonic_ns()``).
2. **Bytes per stored message**: the file's size (with its WAL) over the
   messages it holds, after the runs.
3. **`warpd log` over 100,000 stored streams**: a file filled through the
   daemon's own writer (HistoryStore), then the wall time of the real command
   (``python -m warpd log``, a new process each time, median of 5), beside
   ``python -c pass`` (the interpreter's own start-up).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from websockets.asyncio.client import unix_connect

from bench.timing import machine, table, verdict

_HEAD = {"object": "chat.completion.chunk", "model": "gpt-bench"}


def _event(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    return json.dumps({**_HEAD, "choices": [{"index": 0, "delta": delta,
                                               "finish_reason": finish}]}).encode()


class _Daemon:
    def __init__(self, directory: Path, name: str, persist: bool) -> None:
        self.directory = directory
        self.sock = directory / f"{name}.sock"
        self.file = directory / f"{name}.sqlite3"
        config = directory / f"{name}.toml"
        config.write_text(f'[log]\nlevel = "WARNING"\n[history]\npersist = {str(persist).lower()}'
                          f'\npath = "{self.file}"\n')
        self.process = subprocess.Popen(
            [sys.executable, "-m", "warpd", "serve", "--config", str(config),
             "--listen", f"unix:{self.sock}"], stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not self.sock.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench history: warpd serve did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


async def _round(daemon: _Daemon, session: str, events: int, rate: float | None
                 ) -> tuple[float, list[int]]:
    """One stream through ``daemon``: (events/s, latencies in ns)."""
    latencies: list[int] = []
    seen: set[str] = set()
    sub = await unix_connect(str(daemon.sock), uri=f"ws://localhost/subscribe?session={session}",
                             max_size=None)
    await sub.recv()  # hello
    done = asyncio.get_running_loop().create_future()

    async def read() -> None:
        while True:
            message = msgspec.json.decode(await sub.recv(decode=False))
            now = time.monotonic_ns()
            if message.get("complete") and not message.get("streaming"):
                done.set_result(time.monotonic())
                return
            for block in message.get("blocks", ()):
                # A message may carry several events' fragments (and a block's
                # completing message all of them): each timestamp counts once.
                for stamp in (block.get("text") or "").split("t")[1:]:
                    if stamp not in seen:
                        seen.add(stamp)
                        latencies.append(now - int(stamp))

    reader = asyncio.ensure_future(read())
    async with unix_connect(str(daemon.sock),
                            uri=f"ws://localhost/push?session={session}") as ws:
        await ws.send(_event(""))
        start = time.monotonic()
        interval = 1 / rate if rate else 0.0
        for i in range(events):
            await ws.send(_event(f"t{time.monotonic_ns()}"))
            if interval:
                await asyncio.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
        await ws.send(_event(finish="stop"))
        await ws.send(b"[DONE]")
        await ws.send(b'{"warpd": "end"}')
        end = await asyncio.wait_for(done, 60)
        while msgspec.json.decode(await ws.recv(decode=False))["type"] != "end":
            pass
    await reader
    await sub.close()
    return events / (end - start), latencies


def _publish(directory: Path, quick: bool) -> tuple[_Daemon, dict[str, dict[str, float]]]:
    daemons = {"on": _Daemon(directory, "on", True), "off": _Daemon(directory, "off", False)}
    rounds = 3 if quick else 7
    events = 5_000 if quick else 20_000
    paced = 1_000 if quick else 5_000
    through: dict[str, list[float]] = {"on": [], "off": []}
    lat: dict[str, list[int]] = {"on": [], "off": []}
    try:
        for kind in daemons:  # warm-up, untimed
            asyncio.run(_round(daemons[kind], "warm", 2_000, None))
        for r in range(rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            for kind in order:
                rate, _ = asyncio.run(_round(daemons[kind], f"t{r}", events, None))
                through[kind].append(rate)
                _, latencies = asyncio.run(_round(daemons[kind], f"l{r}", paced, 1000.0))
                lat[kind].extend(latencies)
    finally:
        daemons["off"].stop()
        daemons["on"].stop()
    figures = {}
    for kind in daemons:
        ordered = sorted(lat[kind])
        figures[kind] = {
            "events/s": statistics.median(through[kind]),
            "p50 ms": ordered[len(ordered) // 2] / 1e6,
            "p99 ms": ordered[int(len(ordered) * 0.99)] / 1e6,
        }
    return daemons["on"], figures


def _bytes_per_message(daemon: _Daemon) -> tuple[int, int, float]:
    db = daemon.file
    size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    from warpd.history import HistoryReader, connect

    reader = HistoryReader(connect(db, readonly=True))
    streams, messages, stored = reader.counts()
    reader.db.close()
    return messages, size, size / max(1, messages)


def _fill(path: Path, streams: int) -> float:
    """``streams`` streams of 3 messages each, through the daemon's writer; seconds taken."""
    from warpd.config import HistoryConfig
    from warpd.daemon.history_store import HistoryStore, StreamEnd

    store = HistoryStore.open(path, HistoryConfig(), own_dir=False)
    start = time.monotonic()
    seq = 0
    for n in range(streams):
        session = f"agent{n % 50}"
        stream = f"{session}/{n // 50 + 1}"
        for piece in range(3):
            seq += 1
            final = piece == 2
            data = msgspec.json.encode({
                "type": "blocks", "session": session, "stream": stream, "seq": seq,
                "streaming": not final, "complete": final, "model": "gpt-bench",
                "blocks": [{"id": f"{stream}/0", "index": 0, "type": "text",
                            "text": f"answer {n} piece {piece}", "streaming": not final,
                            "complete": final}]})
            end = StreamEnd("gpt-bench", "stop", '{"total_tokens": 42}', f"answer {n}") \
                if final else None
            while store.queued - store.committed > 50_000:
                time.sleep(0.01)  # let the writer catch up rather than fill its queue
            store.record(session, seq, n // 50 + 1, stream, data, None, end)
    store.close(timeout=120)
    return time.monotonic() - start


def _wall(argv: list[str], env: dict[str, str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _log_speed(directory: Path, quick: bool) -> list[list[object]]:
    count = 10_000 if quick else 100_000
    path = directory / "log.sqlite3"
    filled = _fill(path, count)
    print(f"filled {count} streams ({3 * count} messages) in {filled:.1f} s "
          f"({3 * count / filled:,.0f} messages/s through the writer)")
    config = directory / "log.toml"
    config.write_text(f'[history]\npath = "{path}"\n')
    env = {**os.environ, "XDG_CONFIG_HOME": str(directory / "none")}
    base = [sys.executable, "-m", "warpd"]
    rows: list[list[object]] = []
    python = _wall([sys.executable, "-c", "pass"], env)
    rows.append(["python -c pass", f"{python:.3f}", ""])
    for label, args in [
        ("warpd log", ["log"]),
        ("warpd log --session agent7", ["log", "--session", "agent7"]),
        ("warpd log -n 1000 --json", ["log", "-n", "1000", "--json"]),
        ("warpd log --grep 'answer 99'", ["log", "--grep", "answer 99"]),
    ]:
        seconds = _wall([*base, *args, "--config", str(config)], env)
        rows.append([label, f"{seconds:.3f}", verdict(seconds < 0.5) if label == "warpd log"
                     else ""])
    return rows


def run(quick: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="warpd-bench-history-") as tmp:
        directory = Path(tmp)
        on, figures = _publish(directory, quick)
        rows = [[kind, f"{f['events/s']:,.0f}", f"{f['p50 ms']:.2f}", f"{f['p99 ms']:.2f}"]
                for kind, f in figures.items()]
        print(table(["history file", "events/s (median)", "p50 ms", "p99 ms"], rows))
        slower = 1 - figures["on"]["events/s"] / figures["off"]["events/s"]
        print(f"\nthroughput with the file: {slower:+.1%} slower (target ≤ 10%: "
              f"{verdict(slower <= 0.10)}); p99 {figures['on']['p99 ms']:.2f} ms vs "
              f"{figures['off']['p99 ms']:.2f} ms")
        messages, size, per = _bytes_per_message(on)
        print(f"\nthe file: {size:,} bytes for {messages:,} messages: {per:.0f} bytes per "
              "stored message (each message's JSON is ~230 bytes here)\n")
        print(table(["command", "seconds (median of 5)", "< 0.5 s"], _log_speed(directory, quick)))


def main(argv: list[str]) -> int:
    print(f"machine: {machine()}\n")
    run(quick="--quick" in argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
