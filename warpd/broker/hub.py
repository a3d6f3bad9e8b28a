"""RedisHub: the hub of a daemon that shares its sessions through Redis (``[broker] url``).

The in-memory :class:`~warpd.daemon.hub.Hub` numbers, records and fans out each
message itself. A RedisHub hands its producers' messages to its
:class:`~warpd.broker.link.RedisLink` instead, and records and fans out the
messages the link delivers — every daemon's, numbered by Redis — with the same
history, kept finals, bounded outboxes and resync as the in-memory hub.

Live streams are known from their messages (a :class:`StreamMirror`), not
from assemblers, since most of them are assembled on other daemons: a
session's ``live`` holds a :class:`MirroredStream` per stream, whose
``snapshot()`` the hub's snapshot code calls as it would an assembler's.

While Redis is unavailable the hub works as the in-memory one for its own
producers (:meth:`RedisHub.publish_locally`), under a local epoch; the link
tells it when to reload sessions from Redis and resynchronise subscribers.
Like the Hub, it does no I/O and never awaits: use it from the event loop.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from warpd.blocks import BlockAssembler, is_final
from warpd.broker.link import RedisLink
from warpd.broker.mirror import StreamMirror
from warpd.config import Config
from warpd.daemon.hub import Hub, Session, Subscriber
from warpd.protocol import BlocksMessage, SnapshotMessage, StreamMessage, encode

if TYPE_CHECKING:
    from warpd.daemon.history_store import HistoryStore


class MirroredStream:
    """A live stream as its messages describe it: what a RedisHub session's ``live`` holds."""

    __slots__ = ("mirror", "session", "stream")

    def __init__(self, mirror: StreamMirror, session: str, stream: str) -> None:
        self.mirror = mirror
        self.session = session
        self.stream = stream

    def snapshot(self) -> SnapshotMessage:
        return self.mirror.snapshot(self.session, self.stream)


class RedisHub(Hub):
    """A Hub whose sessions are shared through Redis by every daemon using it.

    After construction, ``await hub.link.start()`` (connects, or serves
    locally and keeps trying) and at shutdown ``await hub.link.stop()`` after
    the last publish. Producers' final messages are numbered by Redis: await
    :meth:`publish_reply` for the bytes to send back to the producer.
    """

    def __init__(self, config: Config, store: HistoryStore | None = None) -> None:
        super().__init__(config, store)
        self.mirror = StreamMirror()
        # Stream ids must be unique among every daemon sharing the sessions.
        self.node = secrets.token_hex(3)
        self._own = f".{self.node}"
        self.link = RedisLink(self)

    # A session's seq comes from Redis, loaded when the daemon (re)joins: one
    # forgotten here would come back at seq 0 until its next message. So
    # idle sessions go only when room is needed, or after history.max_age.
    forget_empty = False

    def _known_state(self, name: str) -> tuple[int, int]:
        # Seq numbers come from Redis (load_session), never from the history file.
        return 0, 0

    def recover(self) -> list[str]:
        """End, in the history file only, the streams it holds no end of.

        In the cluster, the other daemons ended them when this one stopped
        answering (see docs/scaling.md); here they are only marked aborted,
        so ``warpd log`` does not show them live forever.
        """
        from warpd.daemon.history_store import stream_end, unfinished_finals

        if self.store is None:
            return []
        finals = unfinished_finals(self.store.reader, "the daemon stopped")
        for final in finals:
            # Numbered like the stream's last stored message (which it takes the
            # place of): Redis gave that seq to this stream and never gives it again.
            self.store.record(final.session, final.seq, 0, final.stream, encode(final),
                              final.created, stream_end(final))
        return [final.stream for final in finals]

    # -- producers' side -------------------------------------------------------------

    def new_stream_id(self, name: str) -> str:
        """A fresh stream id, ``name/N.NODE``: unique across the daemons sharing ``name``."""
        return f"{super().new_stream_id(name)}.{self.node}"

    def stream_started(self, assembler: BlockAssembler) -> None:
        # Its snapshots come from the mirror, like every stream's; the link
        # keeps the assembler for a snapshot to publish after an outage.
        self.session(assembler.session)
        self.link.stream_started(assembler)

    def publish(self, message: BlocksMessage) -> bytes:
        """Queue a message for Redis (or, while Redis is unavailable, publish it here).

        Returns the message's bytes when numbered here; when queued for Redis,
        the bytes as encoded with seq 0 (use :meth:`publish_reply` when the
        numbered bytes are needed).
        """
        if self.link.connected:
            self.link.send(message)
            return encode(message)
        return self._publish_during_outage(message)

    async def publish_reply(self, message: BlocksMessage) -> bytes:
        """Publish and return the bytes as every subscriber gets them (seq included)."""
        if self.link.connected:
            future = self.link.send(message, reply=True)
            assert future is not None
            return await future
        return self._publish_during_outage(message)

    def _publish_during_outage(self, message: BlocksMessage) -> bytes:
        data = self.publish_locally(message)
        self.link.note_local(message)
        return data

    def publish_locally(self, message: BlocksMessage) -> bytes:
        """Number, record and fan out a message here, as the in-memory hub does."""
        data = super().publish(message)
        session = self.session(message.session)
        self.mirror.apply(message)
        if not is_final(message):
            self._track_live(session, message.stream)
        return data

    # -- what the link delivers ---------------------------------------------------------

    def deliver(self, message: StreamMessage, data: bytes) -> None:
        """Record and fan out a message numbered by Redis (``message`` decoded from ``data``)."""
        session = self.session(message.session)
        seq = session.seq = message.seq
        self.messages_published += 1
        final = is_final(message)
        if self.store is not None and message.stream.endswith(self._own):
            # Each daemon's history file keeps the streams pushed to it.
            self._store(session, message, data, final)
        self._remember(session, seq, data)
        self.mirror.apply(message)
        if final:
            session.live.pop(message.stream, None)
            self._keep_final(session, seq, data)
            self._mark(session)
        else:
            self._track_live(session, message.stream)
        name = session.name
        for subscriber in session.subscribers:
            subscriber.outbox.put(name, seq, data)
        for subscriber in self._wildcard:
            subscriber.outbox.put(name, seq, data)

    def load_session(
        self,
        name: str,
        last: int,
        messages: Sequence[tuple[int, bytes, StreamMessage]],
        finals: Sequence[tuple[int, bytes]],
    ) -> None:
        """Replace what the hub holds of a session with what Redis holds.

        ``last`` is the session's last seq; ``messages`` its log from the
        start of its oldest live stream (or of the history window); ``finals``
        the kept final messages. Subscribers are not told: see
        :meth:`resync_everyone`.
        """
        session = self.session(name)
        while session.history:
            self._evict_history(session)
        while session.completed:
            self._evict_final(session)
        for stream in self.mirror.live(name):
            self.mirror.discard(name, stream)
        session.live.clear()
        oldest_kept = last - self.config.history.messages + 1
        for seq, data, message in messages:
            self.mirror.apply(message)
            if seq >= oldest_kept:
                self._remember(session, seq, data)
        for stream in self.mirror.live(name):
            self._track_live(session, stream)
        for seq, data in finals:
            self._keep_final(session, seq, data)
        session.seq = last
        session.snapshot_cache = {}
        self._mark(session)

    def resync_everyone(self, sent: dict[str, int]) -> None:
        """Make every subscriber catch up (or resync) from ``sent[session]`` (0 if absent).

        Their writers call :meth:`resync` next, as for a subscriber that fell
        behind: history from there if it is still kept, else a resync notice,
        finals and snapshots.
        """
        subscribers: set[Subscriber] = set(self._wildcard)
        for session in self.sessions.values():
            subscribers.update(session.subscribers)
        for subscriber in subscribers:
            names = [session.name for session in self.sessions_of(subscriber)]
            for name in names:
                subscriber.sent_seq[name] = sent.get(name, 0)
            outbox = subscriber.outbox
            outbox.dropped_sessions.update(names)
            if not outbox.behind:
                outbox.behind = True
                outbox.behind_since = time.monotonic()
            # The writer must wake to resync even if nothing else arrives.
            outbox._wake()

    def _track_live(self, session: Session, stream: str) -> None:
        if stream not in session.live:
            # session.live is typed for assemblers; a MirroredStream has the
            # one method the hub calls on them, snapshot().
            session.live[stream] = cast(Any, MirroredStream(self.mirror, session.name, stream))
            self._mark(session)

    def broker_status(self) -> dict[str, Any]:
        """The link's state, for ``warpd status``."""
        return self.link.status()


def make_hub(config: Config, store: HistoryStore | None = None) -> Hub:
    """The hub ``config`` asks for: in memory, or shared through Redis (``[broker] url``)."""
    return RedisHub(config, store) if config.broker.url else Hub(config, store)

