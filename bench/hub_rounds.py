"""Memory across identical load rounds: what the hub holds (tracemalloc) against what it counts.

``python -m bench.hub_rounds [--rounds 6]``

The hub alone, in this process, memory only (no sockets, no history file):
each round, 200 subscribers churn over 10 sessions (20 connected at a time,
each reading its outbox now and then) while 200 synthetic OpenAI chat streams
(20-300 token-sized events, the soak's shapes) are published, the soak's
lowered history caps in force. After each round: the bytes Python holds
(``tracemalloc``, after a collection) beside ``history.total`` (what ``warpd
status`` reports as history), and at the end the allocation sites that grew
between the second round and the last. Flat traced memory once the kept
history has reached its caps means no Python-level leak: any RSS growth past
that is the allocator's.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import tracemalloc

from warpd.config import Config, HistoryConfig
from warpd.daemon.hub import Hub
from warpd.ingest.convert import convert

_WORDS = "the quick brown fox jumps over the lazy dog café ✓ 東京 `code` **bold**\n".split(" ")


def _stream(rng: random.Random) -> bytes:
    def event(delta: dict[str, str], finish: str | None = None) -> str:
        chunk = {"object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(chunk)}\n\n"

    events = [event({"role": "assistant", "content": ""})]
    for _ in range(rng.randint(20, 300)):
        events.append(event({"content": " ".join(rng.choices(_WORDS, k=rng.randint(1, 8)))}))
    events.append(event({}, "stop"))
    return "".join(events).encode() + b"data: [DONE]\n\n"


def main(argv: list[str]) -> int:
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 6
    rng = random.Random(1)
    streams = [_stream(rng) for _ in range(40)]
    hub = Hub(Config(history=HistoryConfig(messages=2000, bytes=1048576, persist=False)))

    def one_round(number: int) -> None:
        subscribers = []
        for i in range(200):
            session = f"s{i % 10}"
            subscribers.append(hub.subscribe(f"c{number}-{i}", [session], lambda: None))
            for message in convert([streams[i % 40]], session=session):
                hub.publish(message)
            for subscriber in subscribers[-5:]:
                subscriber.outbox.take()
            if len(subscribers) > 20:
                hub.unsubscribe(subscribers.pop(0))
        for subscriber in subscribers:
            hub.unsubscribe(subscriber)

    tracemalloc.start(8)
    snapshots = []
    print("| round | traced KiB | history.total KiB | traced ÷ counted |")
    print("|---:|---:|---:|---:|")
    for number in range(rounds):
        one_round(number)
        gc.collect()
        snapshots.append(tracemalloc.take_snapshot())
        traced = tracemalloc.get_traced_memory()[0]
        print(f"| {number + 1} | {traced // 1024} | {hub.history_total // 1024} |"
              f" {traced / hub.history_total:.2f} |")
    print("\ngrowth from round 2 to the last, by allocation site:")
    for stat in snapshots[-1].compare_to(snapshots[1], "lineno")[:5]:
        print(f"  {stat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
