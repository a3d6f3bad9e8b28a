"""Coverage-guided fuzzing of every upstream decoder with atheris (libFuzzer).

Not part of the test suite (``tests/test_ingest_fuzz.py`` is the hypothesis
version that is). Each input is decoded the way ``warpd convert`` and the
daemon's push handler decode a producer's bytes:

- byte 0 picks the format (``auto`` or one of the decoders), byte 1 the size
  of the chunks the rest is cut into (so framing is fuzzed too);
- the rest goes through :func:`warpd.ingest.convert.convert` (tolerant, and
  strict with ``errors="message"``), and, line by line, straight into a
  fresh decoder (tolerant, and strict).

A finding is any exception from the tolerant path (irregular input is
skipped or repaired there, never raised), any exception other than
:class:`warpd.errors.InputError` from the strict one, a stream left without
its final message, a tolerant stream aborted for bad input, or a message that
does not encode.

Run it bounded, from the project root::

    .venv/bin/pip install atheris            # or: pip install -e '.[fuzz]'
    .venv/bin/python bench/fuzz_decoders.py --runs 200000
    .venv/bin/python bench/fuzz_decoders.py --max-time 300

The seed corpus is the recorded fixtures in ../shared/fixtures/streams (when
present) plus the hand-written test streams, copied into a temporary
directory; pass ``--corpus DIR`` to keep and grow a corpus between runs.
Crash inputs are written to ``--artifacts`` (default ``.fuzz-artifacts/``);
replay one with ``python bench/fuzz_decoders.py --replay FILE``. Any other
arguments are passed to libFuzzer as they are (e.g. ``-max_len=4096``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "streams"


def _seeds() -> list[bytes]:
    """Inputs to start from: every recording and hand-made stream, as auto and as its format."""
    sys.path.insert(0, str(ROOT))
    from tests.ingest_streams import HAND_MADE
    from warpd.ingest import FORMATS

    streams: list[tuple[str, bytes]] = list(HAND_MADE.values())
    if FIXTURES.is_dir():
        streams += [
            ("auto", p.read_bytes()) for p in sorted(FIXTURES.glob("*.*")) if p.suffix != ".md"
        ]
    seeds = []
    for format, data in streams:
        for chunk_byte in (0, 7, 200):
            seeds.append(bytes([0, chunk_byte]) + data)
            seeds.append(bytes([FORMATS.index(format), chunk_byte]) + data)
    return seeds


def make_target() -> object:
    """The fuzz target: one input in, an exception out if it found a bug."""
    import atheris

    with atheris.instrument_imports():
        from warpd.blocks import is_final
        from warpd.errors import InputError
        from warpd.ingest import DECODERS, FORMATS
        from warpd.ingest.convert import convert
        from warpd.protocol import encode

    def target(data: bytes) -> None:
        if len(data) < 2:
            return
        format = FORMATS[data[0] % len(FORMATS)]
        size = data[1] or len(data)
        body = data[2:]
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        for strict in (False, True):
            final: dict[str, bool] = {}
            for message in convert(chunks, format=format, errors="message", strict=strict):
                encode(message)
                final[message.stream] = is_final(message)
                if not strict and message.aborted and "bad input" in (message.abort_reason or ""):
                    raise AssertionError(f"tolerant stream aborted: {message.abort_reason}")
            left_open = [stream for stream, done in final.items() if not done]
            if left_open:
                raise AssertionError(f"streams left open: {left_open}")
        decoder_class = DECODERS.get(format)
        if decoder_class is None:
            return
        lines = [body] if decoder_class.raw else body.splitlines()
        _feed(decoder_class(), lines)
        try:
            _feed(decoder_class(strict=True), lines)
        except InputError:
            pass

    def _feed(decoder: Any, lines: list[bytes]) -> None:
        for line in lines:
            if decoder.ended:
                break
            decoder.feed(line)
        decoder.end_of_input()

    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="stop after this many inputs")
    parser.add_argument("--max-time", type=int, help="stop after this many seconds")
    parser.add_argument("--corpus", type=Path, help="corpus directory to use and grow")
    parser.add_argument("--artifacts", type=Path, default=ROOT / ".fuzz-artifacts")
    parser.add_argument("--replay", type=Path, help="run one saved input and exit")
    args, libfuzzer_args = parser.parse_known_args()
    if args.runs is None and args.max_time is None and args.replay is None:
        parser.error("give --runs or --max-time (the fuzzer is bounded), or --replay")
    sys.path.insert(0, str(ROOT))
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: .venv/bin/pip install atheris", file=sys.stderr)
        return 2
    target = make_target()
    if args.replay is not None:
        target(args.replay.read_bytes())  # type: ignore[operator]
        print(f"{args.replay}: no finding")
        return 0
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix="warpd-fuzz-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(_seeds()):
        (corpus / f"seed-{n:03d}").write_bytes(seed)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], *libfuzzer_args, f"-artifact_prefix={args.artifacts}/"]
    if args.runs is not None:
        argv.append(f"-runs={args.runs}")
    if args.max_time is not None:
        argv.append(f"-max_total_time={args.max_time}")
    argv.append(str(corpus))
    atheris.Setup(argv, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
