"""Start-up: how long short ``warpd`` commands take, beside a bare interpreter.

Every command is a fresh process, timed by wall clock from spawn to exit, the
median of several runs; the runs of every command are interleaved round by
round so a noisy neighbour slows all of them alike. The baseline is
``python -c pass`` with the same interpreter, in the same run:

- ``warpd --version`` and ``warpd --help`` (targets: ``--version`` ≤ 2×);
- ``warpd push`` of a few lines of text to a real ``warpd serve`` on a
  temporary Unix socket (target ≤ 4×): what a script pays per push.

``python -m bench startup`` (``--quick``: fewer rounds).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.timing import machine

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"--version": 2.0, "small push": 4.0}
PUSH_TEXT = b"one line of text\nand a second one\nand a third\n"


def _environment(home: Path) -> dict[str, str]:
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LISTEN_", "NOTIFY_", "WARPD_", "XDG_", "PYTHON"))
    }
    env.update(
        XDG_RUNTIME_DIR=str(runtime),
        XDG_CONFIG_HOME=str(home / "config"),
        PYTHONPATH=str(ROOT),
        NO_COLOR="1",
    )
    return env


def _time_command(argv: list[str], env: dict[str, str], data: bytes | None = None) -> float:
    """Seconds from spawn to exit of ``argv``; it must exit 0."""
    start = time.perf_counter()
    result = subprocess.run(argv, input=data, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"bench startup: {' '.join(argv[1:])} failed: {result.stderr.decode()[-500:]}"
        )
    return elapsed


def _start_daemon(socket_path: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "warpd", "serve", "--listen", f"unix:{socket_path}"],
            stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env,
        )
    deadline = time.monotonic() + 20
    while "listening on" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"bench startup: warpd serve did not start:\n{log.read_text()}")
        time.sleep(0.02)
    return process


def run(quick: bool = False) -> None:
    rounds = 5 if quick else 21
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="warpd-bench-") as directory:
        home = Path(directory)
        env = _environment(home)
        socket_path = home / "runtime" / "bench.sock"
        daemon = _start_daemon(socket_path, env, home / "serve.log")
        warpd = [python, "-m", "warpd"]
        commands: dict[str, tuple[list[str], bytes | None]] = {
            "python -c pass": ([python, "-c", "pass"], None),
            "--version": ([*warpd, "--version"], None),
            "--help": ([*warpd, "--help"], None),
            "small push": (
                [*warpd, "push", "--connect", f"unix:{socket_path}", "--format", "text"],
                PUSH_TEXT,
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        try:
            for argv, data in commands.values():  # warm the page cache, untimed
                _time_command(argv, env, data)
            for _ in range(rounds):
                for name, (argv, data) in commands.items():
                    samples[name].append(_time_command(argv, env, data))
        finally:
            daemon.terminate()
            daemon.wait(timeout=20)
    base = statistics.median(samples["python -c pass"])
    print(f"Start-up: wall time from spawn to exit, median of {rounds} interleaved rounds")
    print(f"{'command':<16} {'ms':>8} {'× python -c pass':>18} {'target':>8}")
    for name, times in samples.items():
        median = statistics.median(times)
        target = f"≤ {TARGETS[name]:g}×" if name in TARGETS else ""
        print(f"{name:<16} {median * 1000:8.1f} {median / base:18.2f} {target:>8}")


if __name__ == "__main__":
    print(f"machine: {machine()}\n")
    run(quick="--quick" in sys.argv)
