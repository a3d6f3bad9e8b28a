"""Hubs sharing sessions through a real Redis, in one process (no sockets but Redis's).

Each "daemon" is a Hub with its RedisLink, as ``warpd serve`` wires them;
subscribers are the hub's own Subscriber objects, drained like the server's
writer does. The end-to-end tests with real daemon processes are in
test_redis_daemons.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from tests.conftest import TIMEOUT_UNIT, fixture_files
from tests.ingest_streams import HAND_MADE
from tests.redis_server import RedisServer
from warpd.blocks import BlockAssembler, is_final
from warpd.broker.hub import RedisHub
from warpd.config import BrokerConfig, Config
from warpd.daemon.hub import Hub, Subscriber
from warpd.ingest.convert import convert
from warpd.protocol import BlocksMessage

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 12 * TIMEOUT_UNIT)

    return asyncio.run(bounded())


def config_for(server: RedisServer) -> Config:
    return Config(broker=BrokerConfig(url=server.url, timeout=1.0, reconnect_min=0.05,
                                      reconnect_max=0.2))


@asynccontextmanager
async def daemon(server: RedisServer) -> AsyncIterator[RedisHub]:
    hub = RedisHub(config_for(server))
    await hub.link.start()
    try:
        yield hub
    finally:
        await hub.link.stop()


class Reader:
    """A subscriber drained as the server's writer drains it."""

    def __init__(self, hub: Hub, name: str, sessions: list[str], **options: Any) -> None:
        self.hub = hub
        self.woken = asyncio.Event()
        self.subscriber: Subscriber = hub.subscribe(name, sessions, self.woken.set, **options)
        self.messages: list[dict[str, Any]] = []
        self.raw: list[bytes] = []

    async def until(self, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        while not done(self.messages):
            await asyncio.wait_for(self.woken.wait(), 2 * TIMEOUT_UNIT)
            self.woken.clear()
            if self.subscriber.outbox.behind:
                self.hub.resync(self.subscriber)
            for session, seq, data in self.subscriber.outbox.take():
                self.raw.append(data)
                self.messages.append(msgspec.json.decode(data))
                self.hub.note_sent(self.subscriber, session, seq)
        return self.messages

    async def finals(self, count: int) -> list[dict[str, Any]]:
        return await self.until(lambda ms: sum(_is_final(m) for m in ms) >= count)


def _is_final(message: dict[str, Any]) -> bool:
    return bool(message["type"] == "blocks" and message["complete"] and not message["streaming"])


def stream_of(data: bytes, format: str, hub: Hub, session: str = "default"
              ) -> list[BlocksMessage]:
    return list(convert([data], format=format, session=session, errors="message",
                        on_start=hub.stream_started))


async def publish_all(hub: RedisHub, messages: list[BlocksMessage]) -> None:
    for message in messages:
        if is_final(message):
            await hub.publish_reply(message)
        else:
            hub.publish(message)


def blocks_only(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in ("seq", "epoch")}


CASES = [*fixture_files("*.sse", "*.jsonl", "*.ndjson"), *sorted(HAND_MADE)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_stream_pushed_on_a_reaches_b_and_c_with_the_same_seq(
    redis_server: RedisServer, case: Path | str
) -> None:
    if isinstance(case, Path):
        data, format = case.read_bytes(), "auto"
    else:
        format, data = HAND_MADE[case]

    async def main() -> None:
        async with daemon(redis_server) as a, daemon(redis_server) as b, \
                daemon(redis_server) as c:
            readers = [Reader(hub, f"r{i}", ["default"]) for i, hub in enumerate((a, b, c))]
            messages = stream_of(data, format, a)
            expected = [msgspec.json.decode(msgspec.json.encode(m)) for m in messages]
            await publish_all(a, messages)
            finals = sum(is_final(m) for m in messages)
            got = [await r.finals(finals) for r in readers]
            # hello first, then the messages, numbered 1.. by Redis, the same bytes everywhere.
            assert [m["type"] for m in got[0][:1]] == ["hello"]
            assert readers[1].raw[1:] == readers[0].raw[1:] == readers[2].raw[1:]
            assert [m["seq"] for m in got[1][1:]] == list(range(1, len(messages) + 1))
            assert {m["epoch"] for m in got[1][1:]} == {a.epoch} == {b.epoch}
            assert [blocks_only(m) for m in got[2][1:]] == [blocks_only(m) for m in expected]

    run(main)


def test_a_late_joiner_on_b_gets_a_snapshot_of_a_stream_live_on_a(
    redis_server: RedisServer,
) -> None:
    format, data = HAND_MADE["anthropic_thinking_tool"]

    async def main() -> None:
        async with daemon(redis_server) as a, daemon(redis_server) as b:
            assemblers: list[BlockAssembler] = []

            def started(assembler: BlockAssembler) -> None:
                assemblers.append(assembler)
                a.stream_started(assembler)

            live: list[BlocksMessage] = []
            snapshots = []
            for message in convert([data], format=format, on_start=started):
                if is_final(message):
                    break
                live.append(message)
                snapshots.append(msgspec.json.encode(assemblers[-1].snapshot()))
            early = Reader(b, "early", ["default"])
            await publish_all(a, live)
            await early.until(lambda ms: len(ms) == len(live) + 1)
            late = Reader(b, "late", ["default"])
            [hello, snapshot] = await late.until(lambda ms: len(ms) == 2)
            assert hello["seq"] == {"default": len(live)}
            assert snapshot["type"] == "snapshot" and snapshot["seq"] == len(live)
            # The snapshot A's own assembler gives (usage aside: never sent live).
            expected = msgspec.json.decode(snapshots[-1])
            expected.pop("usage", None)
            assert blocks_only(snapshot) == blocks_only(expected)

    run(main)


def test_resume_on_b_of_a_stream_produced_on_a(redis_server: RedisServer) -> None:
    format, data = HAND_MADE["responses_mixed"]

    async def main() -> None:
        async with daemon(redis_server) as a:
            messages = stream_of(data, format, a)
            reader = Reader(a, "r", ["default"])
            await publish_all(a, messages[:3])
            seen = list(await reader.until(lambda ms: len(ms) == 4))
            await publish_all(a, messages[3:])
            everything = await reader.finals(1)
            # A daemon started afterwards resumes where the reader stopped at seq 3.
            async with daemon(redis_server) as b:
                assert b.epoch == a.epoch
                resumed = Reader(b, "r2", ["default"], since={"default": 3}, epoch=a.epoch)
                rest = await resumed.finals(1)
                assert "resume_failed" not in rest[0]
                assert [m["seq"] for m in rest[1:]] == list(range(4, len(messages) + 1))
                assert seen[1:] + rest[1:] == everything[1:]
                assert resumed.raw[1:] == reader.raw[4:]

    run(main)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 4 * TIMEOUT_UNIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_redis_killed_and_restarted_mid_stream_loses_no_stream(
    redis_server: RedisServer,
) -> None:
    """A keeps serving its producers; B gets what A's producers did once Redis is back."""
    span_format, span_data = HAND_MADE["anthropic_thinking_tool"]
    short_format, short_data = HAND_MADE["responses_mixed"]

    async def main() -> None:
        async with daemon(redis_server) as a, daemon(redis_server) as b:
            spanning = stream_of(span_data, span_format, a, session="long")
            during = stream_of(short_data, short_format, a, session="short")
            on_a = Reader(a, "ra", ["*"])
            on_b = Reader(b, "rb", ["long", "short"])
            await publish_all(a, spanning[:3])
            await on_b.until(lambda ms: len(ms) == 4)
            epoch = a.epoch

            redis_server.stop()
            await until(lambda: a.link.state == "unavailable", "A to notice")
            assert a.broker_status()["state"] == "unavailable"
            assert a.epoch != epoch  # local numbering, under a local epoch
            # A's producers go on: one stream completes entirely during the outage,
            # another goes on; A's own subscriber sees both.
            await publish_all(a, during)
            await publish_all(a, spanning[3:5])
            got = await on_a.until(lambda ms: sum(_is_final(m) for m in ms) == 1
                                   and len(ms) >= 1 + 3 + len(during) + 2)
            assert [m["seq"] for m in got if m.get("session") == "long"][-2:] == [4, 5]

            redis_server.start()  # empty: a new epoch
            await until(lambda: a.link.state == "connected" and b.link.state == "connected",
                        "both to reconnect")
            assert a.epoch == b.epoch != epoch
            await publish_all(a, spanning[5:])
            finals = await on_b.until(
                lambda ms: {m["stream"] for m in ms if _is_final(m)} >= {
                    spanning[-1].stream, during[-1].stream})
            by_stream = {m["stream"]: m for m in finals if _is_final(m)}
            for expected in (spanning[-1], during[-1]):
                wanted = msgspec.json.decode(msgspec.json.encode(expected))
                assert blocks_only(by_stream[expected.stream]) == blocks_only(wanted)
            # A late joiner on B sees nothing live any more; A's subscriber is
            # back under the cluster's epoch.
            late = Reader(b, "late", ["long"])
            [hello] = await late.until(lambda ms: len(ms) == 1)
            assert hello["epoch"] == b.epoch
            await on_a.until(lambda ms: ms[-1].get("epoch") == a.epoch)
            assert a.broker_status()["outages"] == 1

    run(main)
