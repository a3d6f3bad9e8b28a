"""Soak: a real daemon under churn for a bounded time; its memory and fds must stay flat.

``python -m bench.soak [--seconds 120] [--churners 300] [--producers 20] [--sessions 10]``

One ``warpd serve`` process on a Unix socket in a temporary directory. In this
process (asyncio, raw WebSocket clients, so hundreds of them fit on a laptop):

- producers push synthetic OpenAI chat streams to their session, one after
  another, at a few hundred events per second each;
- churners subscribe to a random session, read for a random 0.2-4 s, and
  vanish — half close properly, half drop the socket — and are replaced at
  once, so about ``--churners`` are connected at any time;
- stayers (two readers and one slow reader per session) stay throughout and
  keep the final message of every stream.

At the end every stream a producer completed must have reached every stayer of
its session with the final message identical, byte for byte, to the one the
producer got back; the daemon's RSS in the last third of the run must not grow
by more than 10 % over its value at one third (history caps are lowered so they
are reached well before: growth after that is a leak), and once every client
has gone its open fds must be back to what they were before the first one came.
Figures are printed; the exit status is 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.timing import machine

_HEAD = {"object": "chat.completion.chunk", "model": "gpt-soak"}
_WORDS = "the quick brown fox jumps over the lazy dog café ✓ 東京 `code` **bold**\n".split(" ")


def _event(**delta: Any) -> bytes:
    finish = delta.pop("finish", None)
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps({**_HEAD, "choices": [choice]}).encode()


def _stream_events(rng: random.Random) -> list[bytes]:
    """One stream's SSE payloads: a role event, 20-300 content events, finish, [DONE]."""
    events = [_event(role="assistant", content="")]
    for _ in range(rng.randint(20, 300)):
        events.append(_event(content=" ".join(rng.choices(_WORDS, k=rng.randint(1, 8)))))
    events.append(_event(finish="stop"))
    events.append(b"[DONE]")
    return events


def _proc(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, args: argparse.Namespace, sock: Path, pid: int) -> None:
        self.args = args
        self.sock = sock
        self.pid = pid
        self.sessions = [f"soak{n}" for n in range(args.sessions)]
        self.deadline = 0.0
        # stream id -> the final message bytes the producer got back.
        self.produced: dict[str, bytes] = {}
        # stayer name -> session, and stream id -> final bytes it got.
        self.stayer_session: dict[str, str] = {}
        self.stayer_finals: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.churns = 0
        self.churn_messages = 0
        self.resyncs: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.samples: list[tuple[float, int, int]] = []
        self.mid_status: dict[str, Any] = {}
        self.handshake_failures: list[str] = []

    async def status(self) -> dict[str, Any]:
        ws = await self.connect("/status")
        try:
            raw: dict[str, Any] = msgspec.json.decode(await ws.recv(decode=False))
        finally:
            await ws.close()
        return raw

    async def connect(self, target: str) -> ClientConnection:
        return await unix_connect(
            str(self.sock), uri=f"ws://localhost{target}", max_size=None, open_timeout=30
        )

    async def producer(self, n: int) -> None:
        rng = random.Random(n)
        session = self.sessions[n % len(self.sessions)]
        ws = await self.connect(f"/push?session={session}&format=openai")
        replies = asyncio.ensure_future(self._producer_replies(ws))
        try:
            while time.monotonic() < self.deadline:
                for payload in _stream_events(rng):
                    await ws.send(payload)
                    await asyncio.sleep(rng.uniform(0, 0.006))
                await asyncio.sleep(rng.uniform(0, 0.3))
            await ws.send(b'{"warpd": "end"}')
            await asyncio.wait_for(replies, 30)
        finally:
            await ws.close()

    async def _producer_replies(self, ws: ClientConnection) -> None:
        async for frame in ws:
            data = frame.encode() if isinstance(frame, str) else frame
            message = msgspec.json.decode(data)
            if message["type"] == "blocks":
                self.produced[message["stream"]] = data
                if message.get("aborted"):
                    self.errors.append(f"{message['stream']} aborted: {message['abort_reason']}")
            elif message["type"] == "end":
                return
            else:
                self.errors.append(f"producer got {data[:200]!r}")

    async def stayer(self, name: str, session: str, slow: bool) -> None:
        self.stayer_session[name] = session
        finals = self.stayer_finals[name]
        ws = await self.connect(f"/subscribe?session={session}")
        count = 0
        try:
            while True:
                data = await ws.recv(decode=False)
                head = data[:300]
                if b'"type":"resync"' in head:
                    self.resyncs[name] += 1
                if b'"type":"blocks"' in head and b'"streaming":false,"complete":true' in head:
                    message = msgspec.json.decode(data)
                    finals[message["stream"]] = data
                count += 1
                if slow and count % 5 == 0:
                    await asyncio.sleep(0.05)  # at most ~100 messages a second
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code != 1000:
                self.errors.append(f"stayer {name} lost its connection: {exc}")
        except asyncio.CancelledError:
            await ws.close()
            raise

    async def churner(self, n: int) -> None:
        rng = random.Random(10_000 + n)
        while time.monotonic() < self.deadline:
            session = rng.choice(self.sessions)
            try:
                ws = await self.connect(f"/subscribe?session={session}")
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                # The daemon gives a handshake 10 s (websockets' open_timeout);
                # count the ones it abandoned under this load, and carry on.
                self.handshake_failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1)
                continue
            stop = time.monotonic() + rng.uniform(0.2, 4.0)
            try:
                while time.monotonic() < stop:
                    await asyncio.wait_for(ws.recv(decode=False), stop - time.monotonic())
                    self.churn_messages += 1
            except (TimeoutError, ConnectionClosed):
                pass
            if rng.random() < 0.5:
                await ws.close()
            else:
                ws.transport.abort()  # vanish without a goodbye
            self.churns += 1

    async def sampler(self) -> None:
        start = time.monotonic()
        while True:
            rss, fds = _proc(self.pid, "VmRSS"), _fds(self.pid)
            self.samples.append((time.monotonic() - start, rss, fds))
            await asyncio.sleep(2)

    async def run(self) -> None:
        args = self.args
        self.deadline = time.monotonic() + args.seconds
        sampler = asyncio.ensure_future(self.sampler())
        stayers = [
            asyncio.ensure_future(self.stayer(f"{session}:{kind}", session, kind == "slow"))
            for session in self.sessions for kind in ("a", "b", "slow")
        ]
        await asyncio.sleep(0.5)  # every stayer subscribed before the first stream
        churners = [asyncio.ensure_future(self.churner(n)) for n in range(args.churners)]
        producers = asyncio.gather(*(self.producer(n) for n in range(args.producers)))
        await asyncio.sleep(max(0.0, self.deadline - time.monotonic() - 1))
        self.mid_status = await self.status()
        await producers
        await asyncio.gather(*churners)
        # Let the slow stayers drain what is left (their outbox alone is up
        # to ~40 s of reading at their pace), then leave.
        await self._wait_stayers_have_all(timeout=120)
        for task in stayers:
            task.cancel()
        await asyncio.gather(*stayers, return_exceptions=True)
        sampler.cancel()

    async def _wait_stayers_have_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._missing(name) == [] for name in self.stayer_session):
                return
            await asyncio.sleep(0.2)

    def _missing(self, name: str) -> list[str]:
        session = self.stayer_session[name]
        have = self.stayer_finals[name]
        return [s for s in self.produced if s.startswith(session + "/") and s not in have]


# History caps low enough that every session reaches them in the first seconds:
# after that, memory that still grows is a leak, not history filling up.
SOAK_CONFIG = """\
[history]
messages = 2000
bytes = 1048576
"""


def _start_daemon(workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    sock = workdir / "warpd.sock"
    config = workdir / "config.toml"
    # The history file in the run's directory, not the user's state directory.
    history = workdir / "history.sqlite3"
    config.write_text(SOAK_CONFIG + f'path = "{history}"\n')
    log = (workdir / "daemon.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "warpd", "serve", "--listen", f"unix:{sock}",
         "--config", str(config), "--log-level", "WARNING"],
        stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(sock))
            return process, sock
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    process.kill()
    raise SystemExit("warpd serve did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long producers push")
    parser.add_argument("--churners", type=int, default=300, help="churning subscribers at a time")
    parser.add_argument("--producers", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--all-samples", action="store_true", help="print every 2 s sample")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="warpd-soak-", dir="/tmp"))
    process, sock = _start_daemon(workdir)
    try:
        time.sleep(0.3)
        fds_before = _fds(process.pid)
        soak = Soak(args, sock, process.pid)
        started = time.monotonic()
        asyncio.run(soak.run())
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # the daemon notices the last goodbyes
        fds_after = _fds(process.pid)
        rss_end = _proc(process.pid, "VmRSS")
        peak = _proc(process.pid, "VmHWM")
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "warpd", "status", "--json", "--connect", f"unix:{sock}"],
            capture_output=True, check=True).stdout)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    log = (workdir / "daemon.log").read_text(errors="replace")
    return _report(args, soak, elapsed, fds_before, fds_after, rss_end, peak, status, code, log,
                   workdir)


def _report(args: argparse.Namespace, soak: Soak, elapsed: float, fds_before: int,
            fds_after: int, rss_end: int, peak: int, status: dict[str, Any], code: int,
            log: str, workdir: Path) -> int:
    failures: list[str] = []
    missing = differ = checked = 0
    for name, session in soak.stayer_session.items():
        finals = soak.stayer_finals[name]
        for stream, data in soak.produced.items():
            if not stream.startswith(session + "/"):
                continue
            checked += 1
            if stream not in finals:
                missing += 1
                soak.errors.append(f"stayer {name} has no final of {stream}")
            elif finals[stream] != data:
                differ += 1
    if missing or differ:
        failures.append(f"of {checked} (stayer, stream) finals, {missing} missing, {differ} differ")
    mismatched = missing + differ
    failures += soak.errors[:10]
    samples = soak.samples
    warm = [s for s in samples if s[0] >= args.seconds / 3]
    first_rss = warm[0][1] if warm else samples[0][1]
    last_third = [s for s in samples if s[0] >= 2 * args.seconds / 3] or samples[-1:]
    late_rss = max(s[1] for s in last_third)
    if late_rss > first_rss * 1.10:
        failures.append(f"RSS grew from {first_rss} KiB to {late_rss} KiB in the last third")
    if fds_after != fds_before:
        failures.append(f"open fds {fds_before} before, {fds_after} after every client left")
    if code != 0 or "Traceback" in log:
        failures.append(f"daemon exit status {code}; log:\n{log[-2000:]}")
    subscribers = sum(len(row["subscribers"]) for row in status["sessions"])
    if subscribers:
        failures.append(f"{subscribers} subscribers still listed after every client left")

    print(f"machine: {machine()}")
    print(f"soak: {args.seconds:.0f}s of pushing, {elapsed:.0f}s in all;"
          f" {args.producers} producers, {args.sessions} sessions,"
          f" ~{args.churners} churning subscribers,"
          f" {len(soak.stayer_session)} stayers ({args.sessions} slow)")
    print(f"streams completed: {len(soak.produced)}; churns: {soak.churns}"
          f" ({soak.churn_messages} messages read by churners)")
    if soak.handshake_failures:
        print(f"churner connections that failed in the handshake: {len(soak.handshake_failures)}"
              f" (first: {soak.handshake_failures[0]})")
    print(f"finals checked at stayers: {checked}, identical: {checked - mismatched}")
    rows = [s for row in soak.mid_status.get("sessions", []) for s in row["subscribers"]]
    print(f"near the end: {len(rows)} subscribers connected; over all of them"
          f" {sum(r['dropped'] for r in rows)} messages dropped from outboxes,"
          f" {sum(r['catchups'] for r in rows)} catch-ups from history,"
          f" {sum(r['resyncs'] for r in rows)} resyncs; resync notices at stayers:"
          f" {sum(soak.resyncs.values())}")
    print("daemon RSS (KiB) / open fds over time:")
    for t, rss, fds in samples[:: 1 if args.all_samples else max(1, len(samples) // 12)]:
        print(f"  t={t:6.1f}s  rss={rss:8d}  fds={fds:5d}")
    print(f"RSS after warm-up {first_rss} KiB, max in the last third {late_rss} KiB,"
          f" at the end {rss_end} KiB, peak {peak} KiB")
    print(f"open fds: {fds_before} before the first client, {fds_after} after the last left")
    for failure in failures:
        print("FAIL:", failure)
    print("OK" if not failures else f"{len(failures)} check(s) failed (logs in {workdir})")
    if not failures:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
