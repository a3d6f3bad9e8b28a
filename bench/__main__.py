"""``python -m bench [NAME ...] [--quick]``: run the named benchmarks, or all of them."""

from __future__ import annotations

import argparse
import importlib
import time

from bench.timing import machine

# Each benchmark is a module of this package with a ``run(quick: bool)`` function.
BENCHMARKS = {
    "capture": "bench.capture",
    "decode": "bench.decode",
    "fanout": "bench.fanout",
    "history": "bench.history",
    "memory": "bench.memory",
    "render": "bench.render",
    "startup": "bench.startup",
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}: expected one of {', '.join(BENCHMARKS)}")
    print(f"machine: {machine()}\n")
    for name in args.names or BENCHMARKS:
        start = time.perf_counter()
        importlib.import_module(BENCHMARKS[name]).run(quick=args.quick)
        print(f"\n({name}: {time.perf_counter() - start:.0f} s)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
