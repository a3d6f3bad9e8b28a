"""RedisBroker against a real redis-server: the Lua publish, epoch, history, pub/sub, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import pytest

from tests.conftest import TIMEOUT_UNIT
from tests.redis_server import RedisServer
from warpd.broker.redis import (
    EpochChanged,
    MessageKind,
    Outgoing,
    RedisBroker,
    RedisUnavailable,
    split_at_seq,
)
from warpd.config import BrokerConfig
from warpd.protocol import Block, BlocksMessage, decode_server_message, encode

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 6 * TIMEOUT_UNIT)

    return asyncio.run(bounded())


def message(session: str, stream: str, text: str, *, final: bool = False) -> BlocksMessage:
    return BlocksMessage(
        session=session,
        stream=stream,
        seq=0,
        streaming=not final,
        complete=final,
        blocks=[
            Block(id=f"{stream}/0", index=0, type="text", streaming=not final,
                  complete=final, text=text)
        ],
        epoch="e",
    )


def outgoing(msg: BlocksMessage, kind: MessageKind = "delta") -> Outgoing:
    head, tail = split_at_seq(encode(msg))
    return Outgoing(msg.session, msg.stream, kind, head, tail)


def broker_for(server: RedisServer, **options: object) -> RedisBroker:
    return RedisBroker(
        BrokerConfig(url=server.url, timeout=TIMEOUT_UNIT / 5, **options),  # type: ignore[arg-type]
        finals_kept=3,
    )


# -- split_at_seq (no Redis) ----------------------------------------------------------


@pytest.mark.parametrize("seq", [1, 9, 10, 12345678901])
def test_the_split_bytes_numbered_are_the_message_encoded_with_that_seq(seq: int) -> None:
    msg = message("agent", "agent/x.1", 'text with "seq":0 inside')
    item = outgoing(msg)
    msg.seq = seq
    assert item.numbered(seq) == encode(msg)
    decoded = decode_server_message(item.numbered(seq))
    assert decoded == msg


def test_split_refuses_a_message_not_numbered_zero() -> None:
    msg = message("agent", "agent/1", "hi")
    msg.seq = 5
    with pytest.raises(ValueError, match="seq 0"):
        split_at_seq(encode(msg))


# -- against Redis ---------------------------------------------------------------------


def test_daemons_sharing_redis_share_the_epoch_until_redis_loses_it(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        a, b = broker_for(redis_server), broker_for(redis_server)
        epoch = await a.connect()
        assert await b.connect() == epoch
        assert [await a.publish([outgoing(message("s", "s/1", "x"))])] == [[1]]
        await a.client.flushall()
        # The data is gone: whoever asks first makes a new epoch, the others learn it.
        with pytest.raises(EpochChanged):
            await b.publish([outgoing(message("s", "s/1", "y"))])
        new = await b.ensure_epoch()
        assert new != epoch
        assert await a.ensure_epoch() == new
        assert await a.publish([outgoing(message("s", "s/1", "z"))]) == [1]
        await a.close()
        await b.close()

    run(main)


def test_concurrent_publishers_get_one_order_and_every_listener_the_same_bytes(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        a, b, listener = (broker_for(redis_server) for _ in range(3))
        for broker in (a, b, listener):
            await broker.connect()
        received: list[tuple[str, bytes]] = []
        subscribed = asyncio.Event()

        async def listen() -> None:
            async for session, data in listener.listen(poll=0.05):
                if not session:
                    subscribed.set()
                    continue
                received.append((session, data))
                if len(received) == 200:
                    return

        task = asyncio.create_task(listen())
        await subscribed.wait()

        async def produce(broker: RedisBroker, name: str) -> list[tuple[int, bytes]]:
            out = []
            for batch in range(10):
                items = [outgoing(message("shared", f"shared/{name}", f"{name}{batch}.{i}"))
                         for i in range(10)]
                seqs = await broker.publish(items)
                out += [(seq, item.numbered(seq)) for seq, item in zip(seqs, items, strict=True)]
            return out

        sent_a, sent_b = await asyncio.gather(produce(a, "a"), produce(b, "b"))
        await task
        # One order: seqs 1..200, each given once, each producer's in its own order.
        assert sorted(s for s, _ in sent_a + sent_b) == list(range(1, 201))
        assert [s for s, _ in sent_a] == sorted(s for s, _ in sent_a)
        # What listeners get: the published bytes, in seq order.
        assert [session for session, _ in received] == ["shared"] * 200
        assert [data for _, data in received] == [data for _, data in sorted(sent_a + sent_b)]
        history = await a.history_after("shared", 0)
        assert history == sorted(sent_a + sent_b)
        for broker in (a, b, listener):
            await broker.close()

    run(main)


def test_history_after_resumes_exactly_and_says_when_the_window_is_past(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        broker = broker_for(redis_server, stream_maxlen=10)
        await broker.connect()
        assert await broker.history_after("s", 0) == []
        items = [outgoing(message("s", "s/1", str(i))) for i in range(1000)]
        seqs = await broker.publish(items)
        assert seqs == list(range(1, 1001))
        # MAXLEN ~ trims whole nodes: roughly the last 10 (at most a node more) remain.
        tail = await broker.history_after("s", 995)
        assert tail == [(seq, items[seq - 1].numbered(seq)) for seq in range(996, 1001)]
        assert await broker.history_after("s", 1000) == []
        assert await broker.history_after("s", 3) is None
        assert await broker.last_seqs(["s", "never"]) == {"s": 1000, "never": 0}
        await broker.close()

    run(main)


def test_finals_live_streams_and_sessions_are_tracked(redis_server: RedisServer) -> None:
    async def main() -> None:
        broker = broker_for(redis_server)
        await broker.connect()
        batch = [
            outgoing(message("s", "s/1", "a")),
            outgoing(message("s", "s/2", "b")),
            outgoing(message("s", "s/1", "a!", final=True), "final"),
            outgoing(message("t", "t/1", "c")),
        ]
        seqs = await broker.publish(batch)
        assert seqs == [1, 2, 3, 1]
        assert await broker.live_streams("s") == {"s/2": 2}
        assert await broker.live_streams("t") == {"t/1": 1}
        assert await broker.sessions() == ["s", "t"]
        assert await broker.finals("s", 10) == [(3, batch[2].numbered(3))]
        # A snapshot republished after an outage is where a mirror starts again.
        await broker.publish([outgoing(message("s", "s/2", "b"), "snapshot")])
        assert await broker.live_streams("s") == {"s/2": 4}
        # Only finals_kept (3) finals are asked for; XADD MAXLEN ~ may keep a few more.
        for i in range(5):
            await broker.publish([outgoing(message("s", f"s/f{i}", "x", final=True), "final")])
        finals = await broker.finals("s", 3)
        assert [seq for seq, _ in finals] == [7, 8, 9]
        await broker.close()

    run(main)


def test_a_lost_counter_continues_after_the_log(redis_server: RedisServer) -> None:
    async def main() -> None:
        broker = broker_for(redis_server)
        await broker.connect()
        await broker.publish([outgoing(message("s", "s/1", str(i))) for i in range(5)])
        await broker.client.delete(broker.key("s", "seq"))
        assert await broker.publish([outgoing(message("s", "s/1", "next"))]) == [6]
        # Redis forgetting the script (SCRIPT FLUSH, a restart) is handled too.
        await broker.client.script_flush()
        assert await broker.publish([outgoing(message("s", "s/1", "more"))]) == [7]
        await broker.close()

    run(main)


def test_redis_gone_is_reported_not_hung(redis_server: RedisServer) -> None:
    async def main() -> None:
        broker = broker_for(redis_server)
        await broker.connect()
        errors: list[str] = []

        async def listen() -> None:
            try:
                async for _ in broker.listen(poll=0.05):
                    pass
            except RedisUnavailable as exc:
                errors.append(str(exc))

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.2)
        redis_server.stop()
        await task
        assert errors and "lost" in errors[0]
        with pytest.raises(RedisUnavailable, match=redis_server.url):
            await broker.publish([outgoing(message("s", "s/1", "x"))])
        await broker.close()
        with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
            await broker.connect()
        # Back (empty, as after a restart without persistence): a new epoch.
        redis_server.start()
        epoch = await broker.connect()
        assert epoch and await broker.publish([outgoing(message("s", "s/1", "x"))]) == [1]
        await broker.close()

    run(main)


@pytest.fixture
def redis_with_password(redis_server: RedisServer) -> RedisServer:
    redis_server.stop()
    redis_server.password = "s3cret-pass"
    redis_server.url = f"redis://:s3cret-pass@127.0.0.1:{redis_server.port}/0"
    redis_server.start()
    return redis_server


def test_passwords_work_and_never_appear_in_errors(redis_with_password: RedisServer) -> None:
    async def main() -> None:
        good = broker_for(redis_with_password)
        assert await good.connect()
        await good.close()
        wrong_url = redis_with_password.url.replace("s3cret-pass", "wrong-pass")
        wrong = RedisBroker(BrokerConfig(url=wrong_url, timeout=1.0))
        with pytest.raises(RedisUnavailable) as caught:
            await wrong.connect()
        assert "wrong-pass" not in str(caught.value)
        assert ":***@127.0.0.1" in str(caught.value)

    run(main)


def test_the_log_entries_are_the_published_bytes(redis_server: RedisServer) -> None:
    async def main() -> None:
        broker = broker_for(redis_server)
        await broker.connect()
        msg = message("s", "s/1", "héllo \u2028 \x1b[31m")
        item = outgoing(msg)
        [seq] = await broker.publish([item])
        [(logged_seq, data)] = await broker.history_after("s", 0) or []
        assert logged_seq == seq == 1
        assert data == item.numbered(1)
        assert msgspec.json.decode(data)["blocks"][0]["text"] == "héllo \u2028 \x1b[31m"
        assert msgspec.json.decode(data)["seq"] == 1
        await broker.close()

    run(main)
