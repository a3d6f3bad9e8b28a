"""warpd's data in Redis: a thin asyncio client of its keys, its Lua publish and its channels.

Layout, for ``key_prefix = "warpd"`` and a session ``NAME``:

==============================  ====================================================
``warpd:epoch``                 the cluster's history epoch (SET NX by the first daemon)
``warpd:sessions``              set of every session name ever published to
``warpd:s:NAME:seq``            the session's last seq (INCR)
``warpd:s:NAME:log``            stream: every message, entry id ``SEQ-1``, field ``d``
                                (bounded with ``XADD MAXLEN ~ stream_maxlen``)
``warpd:s:NAME:finals``         stream: the final messages of completed streams only
                                (bounded by ``history.completed_streams``), for replay
``warpd:s:NAME:live``           hash: live stream id → seq of its first message seen
``warpd:m:NAME``                pub/sub channel: each message's bytes, as subscribers get them
``warpd:node:NODE``             a daemon's liveness key, refreshed while it is connected
                                (expires ``liveness_ttl`` seconds after its last refresh)
``warpd:gone:STREAM``           tombstone of a stream ended as aborted because its daemon
                                stopped answering (expires after :data:`TOMBSTONE_TTL`)
==============================  ====================================================

:meth:`RedisBroker.publish` sends messages encoded ONCE with a placeholder
seq, split around its digits (:func:`split_at_seq`); the Lua script
:data:`PUBLISH_LUA` numbers each one atomically (INCR), joins the bytes around
the number, appends them to the log and publishes them, so producers on any
daemon get one order per session and the bytes published are the bytes every
subscriber receives. The script refuses (returns -1) when the epoch in Redis
is not the caller's: Redis lost its data, and seq numbers start afresh.

Everything raises :class:`RedisUnavailable` when Redis cannot be reached or a
command fails; the caller (the hub's Redis broker) decides what to do: serve
locally, back off, reconnect, catch up with :meth:`RedisBroker.history_after`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from warpd.config import BrokerConfig, redacted_url

# The script that gives a message its seq and makes it visible everywhere at once.
# KEYS: epoch, seq, log, finals, live, sessions, the stream's tombstone.
# ARGV: epoch, channel, head, tail, maxlen, finals maxlen, stream, kind, session,
# tombstone ttl.
# kind: "delta" (a streaming message), "final" (a stream's last message),
# "snapshot" (a stream's whole state, republished after an outage) or "abort"
# (the final message another daemon publishes for a stream whose daemon stopped
# answering). Returns the seq, -1 for a wrong epoch, -2 when the message is
# refused: an "abort" of a stream no longer live (someone completed it first:
# the HDEL is the cluster-wide claim), or any other message of a stream
# already ended by an "abort" (its tombstone exists).
PUBLISH_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if ARGV[8] == 'abort' then
  if redis.call('HDEL', KEYS[5], ARGV[7]) == 0 then
    return -2
  end
  redis.call('SET', KEYS[7], '1', 'EX', ARGV[10])
elseif redis.call('EXISTS', KEYS[7]) == 1 then
  return -2
end
local seq = redis.call('INCR', KEYS[2])
local data = ARGV[3] .. seq .. ARGV[4]
local added = redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], seq .. '-1', 'd', data)
if type(added) == 'table' and added.err then
  -- The counter is behind the log (it was deleted or evicted): continue after the log.
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  seq = tonumber(string.match(last[1][1], '^(%d+)')) + 1
  redis.call('SET', KEYS[2], seq)
  data = ARGV[3] .. seq .. ARGV[4]
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], seq .. '-1', 'd', data)
end
if ARGV[8] == 'final' or ARGV[8] == 'abort' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], seq .. '-1', 'd', data)
  redis.call('HDEL', KEYS[5], ARGV[7])
elseif ARGV[8] == 'snapshot' then
  redis.call('HSET', KEYS[5], ARGV[7], seq)
else
  redis.call('HSETNX', KEYS[5], ARGV[7], seq)
end
redis.call('SADD', KEYS[6], ARGV[9])
redis.call('PUBLISH', ARGV[2], data)
return seq
"""

MessageKind = Literal["delta", "final", "snapshot", "abort"]

# Seconds a stream's tombstone outlives its abort: a daemon cut from Redis for
# longer than this, whose stream was ended by the others meanwhile, could
# publish that stream again when it comes back.
TOMBSTONE_TTL = 7 * 24 * 3600

# What publish returns for a message Redis refused (see PUBLISH_LUA).
REFUSED = 0

_SEQ_PLACEHOLDER = b'"seq":0'


class RedisUnavailable(Exception):
    """Redis cannot be reached, or a command failed; the message says what and where."""


class EpochChanged(Exception):
    """Redis's epoch is not the one this client published under: its history was lost.

    ``epoch`` is the epoch Redis holds now (call :meth:`RedisBroker.ensure_epoch`
    again to learn or create it).
    """


def split_at_seq(data: bytes) -> tuple[bytes, bytes]:
    """Split an encoded stream message whose seq is 0 around the seq's digit.

    The message must be encoded with ``seq = 0``: ``head + str(seq) + tail``
    is then the same message numbered ``seq``. The first ``"seq":`` is the
    field: the ``type``, ``session`` and ``stream`` fields before it cannot
    contain a quote (session names and stream ids are restricted).
    """
    at = data.find(_SEQ_PLACEHOLDER)
    if at < 0 or data[at + len(_SEQ_PLACEHOLDER) : at + len(_SEQ_PLACEHOLDER) + 1] not in (
        b",",
        b"}",
    ):
        raise ValueError("the message must be encoded with seq 0")
    cut = at + len(_SEQ_PLACEHOLDER) - 1
    return data[:cut], data[cut + 1 :]


@dataclass(slots=True)
class Outgoing:
    """One message to publish: its session, stream, kind and bytes split by :func:`split_at_seq`."""

    session: str
    stream: str
    kind: MessageKind
    head: bytes
    tail: bytes

    def numbered(self, seq: int) -> bytes:
        """The message's bytes with its seq, as subscribers receive them."""
        return b"%s%d%s" % (self.head, seq, self.tail)


class RedisBroker:
    """A connection to the Redis that holds warpd's sessions.

    Call :meth:`connect` first (it also learns the epoch), then publish,
    read history and :meth:`listen`; :meth:`close` at the end. After a
    :class:`RedisUnavailable`, call :meth:`close` and :meth:`connect` again
    (after a backoff): the client does no reconnecting of its own, so that
    every outage is seen and caught up with.
    """

    def __init__(self, config: BrokerConfig, *, finals_kept: int = 50) -> None:
        self.config = config
        self.prefix = config.key_prefix
        self.finals_kept = finals_kept
        self.where = redacted_url(config.url)
        self.epoch: str | None = None
        self._client: aioredis.Redis | None = None
        self._sha: str | None = None

    # -- keys ---------------------------------------------------------------------

    def key(self, session: str, what: str) -> str:
        """The key of ``what`` (seq, log, finals, live) of ``session``."""
        return f"{self.prefix}:s:{session}:{what}"

    def channel(self, session: str) -> str:
        return f"{self.prefix}:m:{session}"

    @property
    def epoch_key(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def sessions_key(self) -> str:
        return f"{self.prefix}:sessions"

    def node_key(self, node: str) -> str:
        """The liveness key of the daemon whose stream ids end in ``.NODE``."""
        return f"{self.prefix}:node:{node}"

    def tombstone_key(self, stream: str) -> str:
        return f"{self.prefix}:gone:{stream}"

    # -- connection -----------------------------------------------------------------

    async def connect(self) -> str:
        """Connect, load the publish script, and return the epoch (creating it if absent)."""
        timeout = self.config.timeout
        try:
            client = aioredis.from_url(
                self.config.url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # Errors must surface: the caller reconnects and catches up itself.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=max(1.0, timeout),
            )
        except (ValueError, RedisError) as exc:
            raise RedisUnavailable(f"bad Redis URL {self.where}: {exc}") from None
        self._client = client
        try:
            self._sha = _text(await client.script_load(PUBLISH_LUA))
        except (RedisError, OSError) as exc:
            await self.close()
            raise RedisUnavailable(f"cannot reach Redis at {self.where}: {exc}") from None
        return await self.ensure_epoch()

    async def close(self) -> None:
        """Drop the connection (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except (RedisError, OSError):
                pass

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RedisUnavailable(f"not connected to Redis at {self.where}")
        return self._client

    async def ensure_epoch(self) -> str:
        """The cluster's epoch: the one in Redis, or a new one if Redis has none (lost data)."""
        try:
            await self.client.set(self.epoch_key, secrets.token_hex(8), nx=True)
            value = await self.client.get(self.epoch_key)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
        if value is None:
            raise RedisUnavailable(f"Redis at {self.where} lost the epoch just set")
        self.epoch = _text(value)
        return self.epoch

    # -- publishing ---------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[int]:
        """Number and publish ``batch`` in order, in one round trip; return their seqs.

        A message Redis refused (an ``abort`` someone else did first, or a
        message of a stream already ended by an ``abort``) gets
        :data:`REFUSED` instead of a seq: it reached no one.

        Raises :class:`EpochChanged` if Redis's epoch is not :attr:`epoch`
        (nothing of the batch was published then, or only a prefix of it
        before the change: the caller republishes under the new epoch), and
        :class:`RedisUnavailable` on connection errors (some of the batch may
        have been published: the caller learns which when it catches up).
        """
        if not batch:
            return []
        if self.epoch is None or self._sha is None:
            raise RedisUnavailable(f"not connected to Redis at {self.where}")
        try:
            return await self._publish(batch)
        except NoScriptError:
            # Redis restarted behind our back and forgot the script.
            try:
                self._sha = _text(await self.client.script_load(PUBLISH_LUA))
            except (RedisError, OSError) as exc:
                raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
            return await self._publish(batch)

    async def _publish(self, batch: Sequence[Outgoing]) -> list[int]:
        assert self.epoch is not None and self._sha is not None
        maxlen = str(self.config.stream_maxlen)
        finals = str(self.finals_kept)
        try:
            pipe = self.client.pipeline(transaction=False)
            for item in batch:
                name = item.session
                pipe.evalsha(
                    self._sha,
                    7,
                    self.epoch_key,
                    self.key(name, "seq"),
                    self.key(name, "log"),
                    self.key(name, "finals"),
                    self.key(name, "live"),
                    self.sessions_key,
                    self.tombstone_key(item.stream),
                    self.epoch,
                    self.channel(name),
                    item.head,
                    item.tail,
                    maxlen,
                    finals,
                    item.stream,
                    item.kind,
                    name,
                    TOMBSTONE_TTL,
                )
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"publishing to Redis at {self.where}: {exc}") from None
        seqs: list[int] = []
        for result in results:
            if isinstance(result, NoScriptError):
                raise result
            if isinstance(result, Exception):
                raise RedisUnavailable(f"publishing to Redis at {self.where}: {result}")
            if result == -1:
                raise EpochChanged(f"the epoch in Redis at {self.where} is no longer {self.epoch}")
            seqs.append(REFUSED if result == -2 else int(result))
        return seqs

    # -- liveness -------------------------------------------------------------------

    async def heartbeat(self, node: str, ttl: float) -> None:
        """Say that ``node`` is alive for the next ``ttl`` seconds."""
        try:
            await self.client.set(self.node_key(node), "1", px=max(1, round(ttl * 1000)))
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None

    async def alive(self, nodes: Sequence[str]) -> set[str]:
        """Which of ``nodes`` have refreshed their liveness key within its TTL."""
        if not nodes:
            return set()
        try:
            pipe = self.client.pipeline(transaction=False)
            for node in nodes:
                pipe.exists(self.node_key(node))
            found = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
        return {node for node, there in zip(nodes, found, strict=True) if there}

    # -- reading --------------------------------------------------------------------

    async def last_seqs(self, sessions: Sequence[str]) -> dict[str, int]:
        """Each session's last seq in Redis (0 for a session never published to)."""
        if not sessions:
            return {}
        try:
            values = await self.client.mget([self.key(name, "seq") for name in sessions])
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
        return {name: int(value or 0) for name, value in zip(sessions, values, strict=True)}

    async def sessions(self) -> list[str]:
        """Every session ever published to under this prefix, sorted."""
        try:
            members = await self.client.smembers(self.sessions_key)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
        return sorted(_text(m) for m in members)

    async def live_streams(self, session: str) -> dict[str, int]:
        """The session's live streams: stream id → seq of the first of its messages in the log."""
        try:
            entries = await self.client.hgetall(self.key(session, "live"))
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
        return {_text(k): int(v) for k, v in entries.items()}

    async def history_after(
        self, session: str, after: int, *, limit: int | None = None, strict: bool = True
    ) -> list[tuple[int, bytes]] | None:
        """The messages of ``session`` with seq > ``after``, oldest first: (seq, bytes).

        None when the log no longer holds seq ``after + 1`` (trimmed: the
        resume window is past), unless not ``strict``: then whatever the log
        holds after ``after``. At most ``limit`` messages (default: the
        whole window). Messages published while this runs may or may not be
        included: the caller drops what it already has by seq.
        """
        count = limit or self.config.stream_maxlen * 2
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.xrange(self.key(session, "log"), f"({after}-1", "+", count=count)
            pipe.get(self.key(session, "seq"))
            entries, last = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
        out = _entries(entries)
        last_seq = int(last or 0)
        if not strict:
            return out
        if out and out[0][0] != after + 1:
            return None
        if not out and last_seq > after:
            return None
        return out

    async def finals(self, session: str, count: int) -> list[tuple[int, bytes]]:
        """The final messages of the last ``count`` completed streams, oldest first."""
        if count <= 0:
            return []
        try:
            entries = await self.client.xrevrange(
                self.key(session, "finals"), "+", "-", count=count
            )
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.where}: {exc}") from None
        return _entries(entries)[::-1]

    async def listen(self, poll: float = 1.0) -> AsyncGenerator[tuple[str, bytes], None]:
        """Every message published from now on, per session in seq order: (session, bytes).

        Raises :class:`RedisUnavailable` when the subscription is lost;
        messages published meanwhile are not lost from the logs: catch up
        with :meth:`last_seqs` and :meth:`history_after`. The subscription
        is active once the first iteration has started (the generator
        yields ``("", b"")`` once, right after subscribing, to say so).
        """
        prefix = f"{self.prefix}:m:"
        skip = len(prefix)
        pubsub: PubSub = self.client.pubsub()
        try:
            try:
                await pubsub.psubscribe(prefix + "*")
                # Wait for the confirmation, so that "subscribed" is true when we say so.
                reply = await pubsub.get_message(timeout=self.config.timeout)
                if reply is None or reply.get("type") != "psubscribe":
                    raise RedisUnavailable(f"Redis at {self.where} did not confirm PSUBSCRIBE")
            except (RedisError, OSError) as exc:
                raise RedisUnavailable(f"subscribing to Redis at {self.where}: {exc}") from None
            yield "", b""
            while True:
                try:
                    message: dict[str, Any] | None = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=poll
                    )
                except (RedisError, OSError) as exc:
                    raise RedisUnavailable(
                        f"subscription to Redis at {self.where} lost: {exc}"
                    ) from None
                if message is None or message.get("type") != "pmessage":
                    continue
                channel: bytes = message["channel"]
                yield channel[skip:].decode(), message["data"]
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except (RedisError, OSError):
                pass


def _text(value: Any) -> str:
    """A reply as text (the client returns bytes: decode_responses is off)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(entries: Any) -> list[tuple[int, bytes]]:
    """Log entries as (seq, bytes): the seq from the id ``SEQ-1``, the bytes from field ``d``."""
    return [(int(_text(entry_id).partition("-")[0]), fields[b"d"]) for entry_id, fields in entries]
