"""RedisLink: a hub's sessions shared through Redis with every daemon that uses it.

With ``[broker] url`` set, the server gives its :class:`~warpd.daemon.hub.Hub` a
RedisLink. Then:

- **Publishing.** ``Hub.publish`` hands each message to :meth:`RedisLink.send`:
  it is encoded once with a placeholder seq and queued; one sender task
  publishes what is queued in one pipelined round trip
  (:meth:`RedisBroker.publish`), where a Lua script numbers each message.
  The producer's reply (its final message) waits for that number.
- **Delivering.** One listener task receives every daemon's messages from
  pub/sub (this daemon's own included: one path, one order) and hands them
  to ``Hub.deliver`` in seq order per session; a gap (messages lost while the
  subscription was down) is filled from the session's log first.
- **Snapshots** of streams assembled elsewhere come from the hub's
  :class:`~warpd.broker.mirror.StreamMirror`, which ``Hub.deliver`` keeps current.
- **Joining** (at startup and after every outage): each session's recent
  history, kept finals and live streams are loaded from Redis into the hub,
  so resume (``since``) and replay work on any daemon, across restarts.

Redis unavailable (at startup or later): the hub numbers and delivers its own
producers' messages locally, under a local epoch — subscribers of this daemon
keep seeing the streams pushed to it, not those of other daemons — while the
link reconnects with backoff. Nothing a producer pushes is lost: once Redis is
back, the final messages of streams that completed meanwhile are published,
in order, then a snapshot of each stream still live here, and every
subscriber of this daemon is resynchronised (a ``resync`` notice per session,
the finals of streams that completed meanwhile on any daemon, snapshots of
the live streams), back under the cluster's epoch. See docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec
from loguru import logger

from warpd.blocks import BlockAssembler, is_final
from warpd.broker.redis import (
    REFUSED,
    EpochChanged,
    MessageKind,
    Outgoing,
    RedisBroker,
    RedisUnavailable,
    split_at_seq,
)
from warpd.protocol import BlocksMessage, SnapshotMessage, StreamMessage, encode

if TYPE_CHECKING:
    from warpd.broker.hub import RedisHub

# Messages published per round trip at most (one pipeline).
BATCH = 512

_stream_decoder: msgspec.json.Decoder[BlocksMessage | SnapshotMessage] = msgspec.json.Decoder(
    BlocksMessage | SnapshotMessage
)


# The abort_reason of a stream ended by another daemon than the one assembling it.
DEAD_NODE_REASON = "the daemon assembling it stopped answering"


def node_of(stream: str) -> str | None:
    """The daemon (NODE) that assembles ``stream`` (``SESSION/N.NODE``), if the id names one."""
    _, dot, node = stream.rpartition("/")[2].rpartition(".")
    return node if dot else None


def decode_stream_message(data: bytes) -> BlocksMessage | SnapshotMessage:
    """A message read from Redis (always one this code published)."""
    return _stream_decoder.decode(data)


class _Pending:
    __slots__ = ("message", "item", "future")

    def __init__(
        self, message: StreamMessage, item: Outgoing, future: asyncio.Future[bytes] | None
    ) -> None:
        self.message = message
        self.item = item
        self.future = future


class RedisLink:
    """The hub's connection to the other daemons through Redis.

    Call ``await start()`` once the event loop runs (it tries to connect
    once, then keeps trying in the background) and ``await stop()`` at
    shutdown, after the last publish (it flushes what is queued). The hub
    calls :meth:`send` while :attr:`connected`, :meth:`note_local` for each
    message it numbered itself otherwise, and :meth:`stream_started` /
    :meth:`stream_done` around each of its producers' streams.
    """

    def __init__(self, hub: RedisHub) -> None:
        config = hub.config
        self.hub = hub
        self.broker = RedisBroker(config.broker, finals_kept=config.history.completed_streams)
        self.where = self.broker.where
        self.connected = False
        self.state = "connecting"
        self.state_since = time.time()
        self.last_error: str | None = None
        self.outages = 0
        # The cluster's epoch while connected (the hub's epoch then).
        self.cluster_epoch: str | None = None
        # This daemon's producers' live streams, for snapshots after an outage.
        self._local: dict[str, BlockAssembler] = {}
        # Final messages of local streams completed while Redis was unavailable.
        self._backlog: deque[BlocksMessage] = deque()
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._sessions_at_outage: dict[str, int] = {}
        # The last seq Redis gave each session's message published from here.
        self._published: dict[str, int] = {}
        # This daemon's streams Redis refused (ended as aborted by the others
        # while this daemon did not answer): their messages reach no one now.
        self._refused: set[str] = set()
        # Streams of dead daemons whose aborted final this daemon queued.
        self._aborting: set[str] = set()

    # -- what the hub calls ------------------------------------------------------

    def stream_started(self, assembler: BlockAssembler) -> None:
        self._local[assembler.stream] = assembler

    def send(self, message: StreamMessage, *, reply: bool = False) -> asyncio.Future[bytes] | None:
        """Queue a message for Redis (encoded once, seq left to Redis).

        With ``reply``, returns a future of the bytes as numbered (for the
        producer's reply); it resolves once Redis has numbered the message.
        """
        item = self._outgoing(message)
        if item.kind == "final":
            self._local.pop(message.stream, None)
        future = asyncio.get_running_loop().create_future() if reply else None
        self._queue.append(_Pending(message, item, future))
        self._wake.set()
        return future

    def _outgoing(self, message: StreamMessage, kind: MessageKind | None = None) -> Outgoing:
        """The message encoded once, under the cluster's epoch, split around its seq."""
        message.seq = 0
        message.epoch = self.cluster_epoch or ""
        head, tail = split_at_seq(encode(message))
        if kind is None:
            kind = (
                "snapshot"
                if isinstance(message, SnapshotMessage)
                else "final"
                if is_final(message)
                else "delta"
            )
        return Outgoing(message.session, message.stream, kind, head, tail)

    def note_local(self, message: BlocksMessage) -> None:
        """The hub numbered ``message`` itself (Redis unavailable): remember what Redis must get."""
        if is_final(message):
            self._local.pop(message.stream, None)
            self._backlog.append(message)
            limit = self.hub.config.history.total_bytes
            # Bounded like the hub's own history: drop the oldest beyond it.
            while len(self._backlog) > max(1, limit // 4096):
                lost = self._backlog.popleft()
                logger.error(
                    "Redis unavailable for long: final message of {} will not reach it",
                    lost.stream,
                )

    def status(self) -> dict[str, Any]:
        """What ``warpd status`` shows about the broker."""
        return {
            "kind": "redis",
            "url": self.where,
            "node": self.hub.node,
            "state": self.state,
            "since": round(self.state_since, 3),
            "epoch": self.cluster_epoch,
            "last_error": self.last_error,
            "outages": self.outages,
            "queued": len(self._queue),
            "backlog": len(self._backlog),
        }

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect (once; on failure serve locally and keep trying in the background)."""
        first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(first))
        await first

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until what is queued is published and delivered here."""
        deadline = time.monotonic() + timeout
        sessions = self.hub.sessions
        while self.connected and time.monotonic() < deadline and (
            self._queue
            or any(sessions[name].seq < seq for name, seq in self._published.items()
                   if name in sessions)
        ):
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Publish what is queued (within the timeout; else deliver it here), then disconnect."""
        self._stopping = True
        await self.flush(self.hub.config.broker.timeout)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.broker.close()
        self._deliver_queued_locally()

    # -- the connection's life -------------------------------------------------------

    async def _run(self, first: asyncio.Future[None]) -> None:
        config = self.hub.config.broker
        delay = config.reconnect_min
        while not self._stopping:
            try:
                await self._connected_session(first)
                delay = config.reconnect_min
            except (RedisUnavailable, EpochChanged) as exc:
                self._outage(str(exc))
            except Exception as exc:  # a bug must not leave the daemon without Redis for good
                logger.exception("Redis link failed; reconnecting")
                self._outage(f"internal error: {exc!r}")
            if not first.done():
                first.set_result(None)
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(config.reconnect_max, delay * 2)

    async def _connected_session(self, first: asyncio.Future[None]) -> None:
        """Connect, join the cluster, then publish and deliver until Redis fails."""
        await self.broker.close()
        epoch = await self.broker.connect()
        listener = self.broker.listen(poll=0.5)
        try:
            # Subscribed before joining, so nothing published meanwhile is missed:
            # it waits in the subscription, and what was loaded is skipped by seq.
            await listener.__anext__()
            await self._join(epoch)
            self._set_state("connected")
            logger.info("Redis at {}: connected, epoch {}", self.where, epoch)
            if not first.done():
                first.set_result(None)

            async def deliver() -> None:
                async for session, data in listener:
                    await self._receive(session, data)

            tasks = [
                asyncio.create_task(deliver()),
                asyncio.create_task(self._sender()),
                asyncio.create_task(self._liveness()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # raises what ended it
        finally:
            self.connected = False
            await listener.aclose()

    def _outage(self, reason: str) -> None:
        """Redis is gone: number locally under a local epoch until it is back."""
        self.connected = False
        self.last_error = reason
        if self.state != "unavailable":
            self.outages += self.state == "connected"
            logger.warning(
                "Redis unavailable ({}): serving this daemon's streams locally, reconnecting",
                reason,
            )
            self._set_state("unavailable")
            self._sessions_at_outage = {name: s.seq for name, s in self.hub.sessions.items()}
            self.hub.epoch = secrets.token_hex(8)
        self._aborting.clear()
        self._deliver_queued_locally()

    def _deliver_queued_locally(self) -> None:
        """What was queued but not published is numbered and delivered here."""
        queued, self._queue = self._queue, deque()
        for pending in queued:
            message = pending.message
            if isinstance(message, SnapshotMessage) or pending.item.kind == "abort":
                # An abort is for Redis only (it claims the stream there); the
                # daemon tries again once connected, if the stream is still live.
                continue
            assert isinstance(message, BlocksMessage)
            data = self.hub.publish_locally(message)
            self.note_local(message)
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(data)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_since = time.time()

    async def _join(self, epoch: str) -> None:
        """Catch up with the cluster: publish the backlog, load every session, resync."""
        hub = self.hub
        returning = self.state == "unavailable"
        renewed = self.cluster_epoch is not None and self.cluster_epoch != epoch
        if renewed:
            logger.warning("Redis at {} lost its data: new epoch {}", self.where, epoch)
        # From here on the hub's producers' messages queue for Redis, after
        # what this daemon's producers did meanwhile: the finals, in order,
        # then a snapshot of each stream still live here, taken at this moment.
        self.cluster_epoch = epoch
        self.connected = True
        # Alive before anything of ours is published, so no daemon takes our
        # streams for a dead daemon's.
        await self.broker.heartbeat(self.hub.node, hub.config.broker.liveness_ttl)
        backlog = [self._outgoing(m) for m in self._backlog]
        backlog += [self._outgoing(a.snapshot()) for a in self._local.values() if not a.done]
        seqs = await self.broker.publish(backlog)
        for item, seq in zip(backlog, seqs, strict=True):
            if seq == REFUSED:
                self._note_refused(item)
        self._backlog.clear()
        hub.epoch = epoch
        names = set(await self.broker.sessions()) | set(hub.sessions)
        for name in sorted(names):
            await self._load_session(name)
        if returning or renewed:
            # Seq numbers of a new epoch start afresh: bring subscribers from 0.
            hub.resync_everyone({} if renewed else self._sessions_at_outage)

    async def _load_session(self, name: str) -> None:
        """Replace the hub's view of a session with what Redis holds."""
        config = self.hub.config
        broker = self.broker
        live = await broker.live_streams(name)
        last = (await broker.last_seqs([name]))[name]
        keep = config.history.messages
        start = min([*live.values(), max(1, last - keep + 1)])
        # If the log was trimmed past a live stream's start, take what it has:
        # that stream's snapshots then lack its beginning.
        entries = await broker.history_after(name, start - 1, strict=False) if last else []
        assert entries is not None
        finals = await broker.finals(name, config.history.completed_streams)
        messages = [(seq, data, decode_stream_message(data)) for seq, data in entries]
        self.hub.load_session(name, last, messages, finals)

    async def _receive(self, session: str, data: bytes) -> None:
        """One message from pub/sub: deliver it in order, filling a gap from the log first."""
        try:
            message = decode_stream_message(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Not written by warpd (another program using our prefix): never deliver it.
            logger.error("session {}: skipped a message in Redis that is not warpd's: {}",
                         session, exc)
            return
        seq = message.seq
        known = self.hub.session(session).seq
        if seq <= known:
            return  # already delivered (caught up from the log)
        if seq > known + 1:
            missed = await self.broker.history_after(session, known)
            if missed is None:
                logger.warning(
                    "session {}: messages {}..{} are gone from Redis; resynchronising",
                    session, known + 1, seq - 1,
                )
                await self._load_session(session)
                self.hub.resync_everyone({session: known})
                return
            for missed_seq, missed_data in missed:
                if missed_seq < seq:
                    self.hub.deliver(decode_stream_message(missed_data), missed_data)
        self.hub.deliver(message, data)

    async def _sender(self) -> None:
        """Publish what is queued, in order, one pipelined round trip per batch."""
        queue = self._queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [queue[i] for i in range(min(BATCH, len(queue)))]
            seqs = await self.broker.publish([p.item for p in batch])
            published = self._published
            for pending, seq in zip(batch, seqs, strict=True):
                queue.popleft()
                if seq == REFUSED:
                    self._note_refused(pending.item)
                    if pending.future is not None and not pending.future.done():
                        # The producer gets its final as assembled here, unnumbered:
                        # the cluster has another final for that stream.
                        pending.future.set_result(pending.item.numbered(0))
                    continue
                published[pending.item.session] = seq
                if pending.future is not None and not pending.future.done():
                    pending.future.set_result(pending.item.numbered(seq))

    # -- liveness ------------------------------------------------------------------

    def _note_refused(self, item: Outgoing) -> None:
        """Redis refused ``item``: say so once per stream of ours (an abort refused is normal)."""
        stream = item.stream
        if item.kind == "abort":
            return  # another daemon ended that stream first
        if item.kind == "final":
            self._refused.discard(stream)
        elif stream in self._refused:
            return
        else:
            self._refused.add(stream)
        logger.warning(
            "stream {} was ended as aborted by another daemon while this one did not answer "
            "Redis; its messages from here on reach only this daemon's producer",
            stream,
        )

    async def _liveness(self) -> None:
        """Keep this daemon's liveness key fresh; end the live streams of dead daemons."""
        ttl = self.hub.config.broker.liveness_ttl
        while True:
            await self.broker.heartbeat(self.hub.node, ttl)
            await self._abort_streams_of_dead_nodes()
            await asyncio.sleep(ttl / 3)

    async def _abort_streams_of_dead_nodes(self) -> None:
        """Publish an aborted final, built from the mirror, of each live stream of a dead daemon.

        Every daemon does this; the publish script lets exactly one abort per
        stream through (the others are refused), and everyone then gets that
        final like any other message.
        """
        hub = self.hub
        by_node: dict[str, list[tuple[str, str]]] = {}
        for session in hub.sessions.values():
            for stream in session.live:
                node = node_of(stream)
                if node is not None and node != hub.node:
                    by_node.setdefault(node, []).append((session.name, stream))
        candidates = {stream for streams in by_node.values() for _, stream in streams}
        self._aborting &= candidates
        if not by_node:
            return
        alive = await self.broker.alive(sorted(by_node))
        for node, streams in by_node.items():
            if node in alive:
                continue
            for name, stream in streams:
                if stream in self._aborting:
                    continue  # queued already; its final has not come back yet
                try:
                    final = hub.mirror.aborted(name, stream, DEAD_NODE_REASON)
                except KeyError:
                    continue
                logger.warning("stream {}: its daemon {} stopped answering; ending it as aborted",
                               stream, node)
                self._aborting.add(stream)
                item = self._outgoing(final, "abort")
                self._queue.append(_Pending(final, item, None))
                self._wake.set()
