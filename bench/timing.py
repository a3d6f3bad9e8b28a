"""Timing and reporting helpers shared by the benchmarks."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# CPU time of this process: on a shared 2-core machine, time spent waiting for
# a core while a neighbour runs is not the code's cost. (Single-threaded code
# only; the fan-out benchmark measures wall-clock latency instead.)
clock = time.process_time


def time_once(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds one call of ``fn`` takes, and its result.

    A full collection runs first (untimed) so that no run pays for the garbage
    of the one before.
    """
    gc.collect()
    start = clock()
    result = fn()
    return clock() - start, result


def warm_up(fn: Callable[[], object], seconds: float) -> None:
    """Call ``fn`` at least once and for about ``seconds``, untimed.

    The first call pays for imports and caches; the first fraction of a second
    of a fresh code path is often slower on these VMs.
    """
    deadline = time.perf_counter() + seconds
    fn()
    while time.perf_counter() < deadline:
        fn()


def median_time(fn: Callable[[], T], runs: int) -> tuple[float, T]:
    """Median seconds per call of ``fn`` over ``runs`` calls, and the last result."""
    samples = []
    result: T
    for _ in range(runs):
        seconds, result = time_once(fn)
        samples.append(seconds)
    return statistics.median(samples), result


def repeat_for(fn: Callable[[], object], seconds: float) -> int:
    """How many calls of ``fn`` make one sample of about ``seconds`` (at least 1)."""
    once, _ = time_once(fn)
    return max(1, round(seconds / max(once, 1e-9)))


def sample(fn: Callable[[], object], repeat: int) -> float:
    """Seconds per call of ``fn``, averaged over ``repeat`` back-to-back calls."""
    gc.collect()
    start = clock()
    for _ in range(repeat):
        fn()
    return (clock() - start) / repeat


def interleaved_medians(
    contenders: dict[str, tuple[Callable[[], object], int]], rounds: dict[str, int]
) -> dict[str, float]:
    """Median seconds per call of each contender, sampled in interleaved rounds.

    ``contenders`` maps a name to ``(fn, repeat)``: one sample is ``repeat``
    back-to-back calls, so that a fast contender's sample lasts about as long as
    a slow one's. Round after round every contender takes one sample (A B C,
    A B C, …), so that a burst of load from a neighbour on this shared machine
    hits all of them alike; a contender stops after ``rounds[name]`` samples.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(max(rounds.values())):
        for name, (fn, repeat) in contenders.items():
            if r < rounds[name]:
                samples[name].append(sample(fn, repeat))
    return {name: statistics.median(values) for name, values in samples.items()}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads fine in a terminal and pastes into docs/benchmarks.md)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"]
    out.extend(line(row) for row in cells[1:])
    return "\n".join(out)


def machine() -> str:
    """One line naming the machine: cores, CPU model, Python."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for entry in f:
                if entry.startswith("model name"):
                    model = entry.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {model}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"
