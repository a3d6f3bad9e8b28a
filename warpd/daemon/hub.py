"""The hub: sessions, sequence numbers, history, subscribers and their outboxes.

The hub does no I/O and never awaits: :meth:`Hub.publish` numbers a message,
encodes it once and puts the same bytes in every subscriber's outbox; the
server's writer task per subscriber drains the outbox to its socket.

Slow-subscriber policy: an outbox is bounded in bytes. When a message would
take it past the bound, everything queued is dropped and the subscriber is
marked behind; further messages are not queued for it. When its writer next
drains the outbox it calls :meth:`Hub.resync`, which queues a ``resync``
message per session, the final messages of streams that completed since the
last message it was sent, and a snapshot of every live stream — so it ends
with the same final blocks as everyone else, and its memory cost stays
bounded whatever it does.

That resync material is queued outside the bound (it is state the hub keeps
anyway: the kept finals, and snapshots encoded once per session seq and shared
by every subscriber that needs them), so the first live message after a big
snapshot does not throw the subscriber behind again. Nothing in an outbox is
a per-subscriber copy: every entry is a reference to bytes the hub encoded once.

History (for resume) and kept finals (for resync and replay) are bounded per
session by count and bytes, and all sessions together by
``history.total_bytes``, evicting the oldest across all sessions first.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from warpd.blocks import BlockAssembler
from warpd.config import Config
from warpd.daemon.outbox import SubscriberOutbox
from warpd.protocol import (
    BlocksMessage,
    HelloMessage,
    ResyncMessage,
    StreamMessage,
    encode,
)

_SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")


def check_session_name(name: str) -> str | None:
    """Return why ``name`` is not a valid session name, or None if it is."""
    if _SESSION_NAME.fullmatch(name):
        return None
    return (
        f"invalid session name {name[:80]!r}: use 1-128 letters, digits and . _ : @ + -, "
        "starting with a letter or digit"
    )


class HubLimitError(Exception):
    """A configured limit refuses the request; the message says which."""


class Subscriber:
    """One subscribe connection: the sessions it follows and its outbox."""

    def __init__(self, conn_id: str, sessions: frozenset[str], outbox: SubscriberOutbox) -> None:
        self.conn_id = conn_id
        self.sessions = sessions
        self.wildcard = "*" in sessions
        self.outbox = outbox
        # The seq of the last message handed to the writer, per session: what
        # a resync must make up for.
        self.sent_seq: dict[str, int] = {}
        self.resyncs = 0
        self.catchups = 0
        self.connected_at = time.monotonic()

    def follows(self, session: str) -> bool:
        return self.wildcard or session in self.sessions


class Session:
    """A named session: its seq counter, live streams, history and subscribers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seq = 0
        self.streams_started = 0
        self.live: dict[str, BlockAssembler] = {}
        self.subscribers: set[Subscriber] = set()
        # Recent messages as sent, for resume (since=SEQ): (seq, bytes).
        self.history: deque[tuple[int, bytes]] = deque()
        self.history_bytes = 0
        # Final messages of completed streams: (seq, bytes), for resync and replay.
        self.completed: deque[tuple[int, bytes]] = deque()
        self.completed_bytes = 0
        # Snapshots of the live streams, encoded once per (seq, resync flag)
        # and shared by every subscriber that joins or resyncs meanwhile.
        self.snapshot_cache: dict[bool, tuple[int, list[bytes]]] = {}


def _still_kept(session: Session, seq: int, final: bool) -> bool:
    """Whether a session still holds the message ``seq`` (history or kept final)."""
    kept = session.completed if final else session.history
    # Each session evicts from the front only, so what is kept is a suffix.
    return bool(kept) and kept[0][0] <= seq


class Hub:
    """All sessions of one daemon. Not thread-safe: use from the event loop only."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # A new epoch per daemon start: seq numbers of another epoch mean nothing here.
        self.epoch = secrets.token_hex(8)
        self.sessions: dict[str, Session] = {}
        self._wildcard: set[Subscriber] = set()
        self.subscriber_count = 0
        self.messages_published = 0
        # Bytes held by every session's history and kept finals together, and
        # the order they arrived in across sessions, for evicting the oldest
        # first when over history.total_bytes. Entries already evicted by a
        # session's own bounds are skipped when they come up.
        self.history_total = 0
        self._arrivals: deque[tuple[Session, int, bool]] = deque()
        self._kept_count = 0

    # -- sessions and streams -----------------------------------------------

    def session(self, name: str) -> Session:
        """The session called ``name``, created on first use (within the limit)."""
        session = self.sessions.get(name)
        if session is None:
            if len(self.sessions) >= self.config.limits.max_sessions:
                raise HubLimitError(
                    f"too many sessions ({self.config.limits.max_sessions}, limits.max_sessions)"
                )
            session = self.sessions[name] = Session(name)
        return session

    def new_stream_id(self, name: str) -> str:
        """A fresh stream id in session ``name`` (``name/N``), within the live-stream limit."""
        session = self.session(name)
        limit = self.config.limits.max_streams_per_session
        if len(session.live) >= limit:
            raise HubLimitError(
                f"session {name!r} already has {limit} live streams "
                "(limits.max_streams_per_session)"
            )
        session.streams_started += 1
        return f"{name}/{session.streams_started}"

    def stream_started(self, assembler: BlockAssembler) -> None:
        """Register a live stream, so late joiners get its snapshot."""
        self.session(assembler.session).live[assembler.stream] = assembler

    def publish(self, message: BlocksMessage) -> bytes:
        """Number, encode once, record and fan out a message; return its bytes."""
        session = self.session(message.session)
        session.seq += 1
        seq = message.seq = session.seq
        message.epoch = self.epoch
        data = encode(message)
        self.messages_published += 1
        self._remember(session, seq, data)
        if message.complete and not message.streaming:
            session.live.pop(message.stream, None)
            self._keep_final(session, seq, data)
        name = session.name
        for subscriber in session.subscribers:
            subscriber.outbox.put(name, seq, data)
        for subscriber in self._wildcard:
            subscriber.outbox.put(name, seq, data)
        return data

    def _remember(self, session: Session, seq: int, data: bytes) -> None:
        history = session.history
        history.append((seq, data))
        session.history_bytes += len(data)
        self.history_total += len(data)
        self._kept_count += 1
        self._arrivals.append((session, seq, False))
        limits = self.config.history
        while history and (
            len(history) > limits.messages or session.history_bytes > limits.bytes
        ):
            self._evict_history(session)
        self._within_total()

    def _keep_final(self, session: Session, seq: int, data: bytes) -> None:
        session.completed.append((seq, data))
        session.completed_bytes += len(data)
        self.history_total += len(data)
        self._kept_count += 1
        self._arrivals.append((session, seq, True))
        while len(session.completed) > self.config.history.completed_streams:
            self._evict_final(session)
        self._within_total()

    def _evict_history(self, session: Session) -> None:
        _, old = session.history.popleft()
        session.history_bytes -= len(old)
        self.history_total -= len(old)
        self._kept_count -= 1

    def _evict_final(self, session: Session) -> None:
        _, old = session.completed.popleft()
        session.completed_bytes -= len(old)
        self.history_total -= len(old)
        self._kept_count -= 1

    def _within_total(self) -> None:
        """Evict the oldest history messages and kept finals, across sessions, while over."""
        total = self.config.history.total_bytes
        arrivals = self._arrivals
        while self.history_total > total and arrivals:
            session, seq, final = arrivals.popleft()
            kept = session.completed if final else session.history
            if kept and kept[0][0] == seq:
                if final:
                    self._evict_final(session)
                else:
                    self._evict_history(session)
        # Entries of messages a session already evicted by itself are stale;
        # rebuild the index when they outnumber the live ones, so it stays
        # proportional to what is kept (amortised O(1) per message).
        if len(arrivals) > 2 * self._kept_count + 64:
            self._arrivals = deque(
                entry for entry in arrivals if _still_kept(*entry)
            )

    # -- subscribers ----------------------------------------------------------

    def subscribe(
        self,
        conn_id: str,
        names: Iterable[str],
        wake: Callable[[], None],
        *,
        since: dict[str, int] | None = None,
        epoch: str | None = None,
        replay: int = 0,
    ) -> Subscriber:
        """Add a subscriber and queue what it must see first.

        Its outbox gets a ``hello``, then (with ``replay``) the final messages
        of the last ``replay`` completed streams of each session, then per
        session either the messages after ``since[session]`` (or ``since["*"]``)
        from history — when ``epoch`` is this daemon's and history still holds
        them — or snapshots of the live streams (``hello.resume_failed`` says
        why a resume was not possible). Live messages follow with no gap and no
        duplicate, since nothing is published in between.
        """
        if self.subscriber_count >= self.config.limits.max_subscribers:
            raise HubLimitError(
                f"too many subscribers ({self.config.limits.max_subscribers}, "
                "limits.max_subscribers)"
            )
        wanted = frozenset(names)
        outbox = SubscriberOutbox(self.config.limits.outbox_bytes, wake)
        subscriber = Subscriber(conn_id, wanted, outbox)
        sessions = (
            list(self.sessions.values())
            if subscriber.wildcard
            else [self.session(name) for name in sorted(wanted)]
        )
        resume_failed: str | None = None
        same_epoch = epoch == self.epoch
        if since is not None and not same_epoch:
            # In the user's words: a different epoch means a restart.
            resume_failed = "the daemon restarted; history before it is gone"
        plan: list[tuple[Session, int | None]] = []
        for session in sessions:
            after = None if since is None else since.get(session.name, since.get("*"))
            if after is not None and resume_failed is None:
                oldest = session.history[0][0] if session.history else session.seq + 1
                if after > session.seq:
                    # Ahead of the session: seq numbers from another life of it.
                    resume_failed = (
                        f"session {session.name!r} has no message {after} "
                        f"(its last is {session.seq})"
                    )
                elif after < session.seq and oldest > after + 1:
                    resume_failed = (
                        f"the history of session {session.name!r} no longer reaches back "
                        f"to message {after} (it starts at {oldest})"
                    )
            plan.append((session, after))
        hello = HelloMessage(
            epoch=self.epoch,
            sessions=sorted(wanted),
            seq={s.name: s.seq for s in sessions},
            resume_failed=resume_failed,
        )
        outbox.put("", 0, encode(hello))
        for session, after in plan:
            resuming = after is not None and resume_failed is None
            finals: list[tuple[int, bytes]] = list(session.completed)[-replay:] if replay else []
            if resuming:
                # History replays what came after ``after``, finals included.
                finals = [(seq, data) for seq, data in finals if seq <= (after or 0)]
            elif after is not None and same_epoch:
                # History is too short, but the finals of streams that
                # completed since ``after`` may still be kept: send them, as a
                # resync would, so no stream's end goes missing.
                replayed = {seq for seq, _ in finals}
                missed = [(q, d) for q, d in session.completed if q > after and q not in replayed]
                finals = sorted(finals + missed, key=lambda final: final[0])
            for seq, data in finals:
                outbox.put(session.name, seq, data, force=True)
            if resuming:
                for seq, data in session.history:
                    if seq > (after or 0):
                        outbox.put(session.name, seq, data, force=True)
            else:
                for snapshot in self._snapshots(session, resync=False):
                    outbox.put(session.name, session.seq, snapshot, force=True)
            subscriber.sent_seq[session.name] = session.seq
        if subscriber.wildcard:
            self._wildcard.add(subscriber)
        else:
            for session in sessions:
                session.subscribers.add(subscriber)
        self.subscriber_count += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove a subscriber (idempotent)."""
        if subscriber.wildcard:
            if subscriber in self._wildcard:
                self._wildcard.discard(subscriber)
                self.subscriber_count -= 1
            return
        removed = False
        for name in subscriber.sessions:
            session = self.sessions.get(name)
            if session is not None and subscriber in session.subscribers:
                session.subscribers.discard(subscriber)
                removed = True
        if removed:
            self.subscriber_count -= 1

    def sessions_of(self, subscriber: Subscriber) -> list[Session]:
        """The sessions a subscriber follows now (for ``*``, every session)."""
        if subscriber.wildcard:
            return list(self.sessions.values())
        return [self.sessions[n] for n in sorted(subscriber.sessions) if n in self.sessions]

    def resync(self, subscriber: Subscriber) -> None:
        """Refill a behind subscriber's outbox with what makes up for the dropped messages.

        Call from its writer when ``outbox.behind`` is set, before taking more.
        Per session: when history still holds every message after the last one
        sent, those messages (a catch-up: nothing is lost, seq stays
        continuous); otherwise a ``resync`` notice, the finals of streams that
        completed meanwhile and snapshots of the live streams.
        """
        outbox = subscriber.outbox
        dropped, touched = outbox.dropped, outbox.dropped_sessions
        outbox.behind = False
        outbox.dropped_sessions = set()
        caught_up = resynced = False
        for session in self.sessions_of(subscriber):
            last = subscriber.sent_seq.get(session.name, 0)
            if last >= session.seq and session.name not in touched:
                continue
            name = session.name
            history = session.history
            if history and history[0][0] <= last + 1:
                # Seqs in history are consecutive: skip straight to last + 1.
                start = last + 1 - history[0][0]
                for seq, data in itertools.islice(history, start, None):
                    outbox.put(name, seq, data, force=True)
                caught_up = True
                continue
            resynced = True
            notice = ResyncMessage(session=name, seq=session.seq, dropped=dropped)
            outbox.put(name, 0, encode(notice), force=True)
            for seq, data in session.completed:
                if seq > last:
                    outbox.put(name, seq, data, force=True)
            for snapshot in self._snapshots(session, resync=True):
                outbox.put(name, session.seq, snapshot, force=True)
            subscriber.sent_seq[name] = session.seq
        subscriber.resyncs += resynced
        subscriber.catchups += caught_up and not resynced

    def _snapshots(self, session: Session, *, resync: bool) -> list[bytes]:
        """Snapshots of the session's live streams, encoded once per seq and shared."""
        cached = session.snapshot_cache.get(resync)
        if cached is not None and cached[0] == session.seq:
            return cached[1]
        encoded = []
        for assembler in session.live.values():
            snapshot: StreamMessage = assembler.snapshot()
            snapshot.seq = session.seq
            snapshot.epoch = self.epoch
            snapshot.resync = resync
            encoded.append(encode(snapshot))
        session.snapshot_cache = {resync: (session.seq, encoded)}
        return encoded

    def note_sent(self, subscriber: Subscriber, session: str, seq: int) -> None:
        """Record that the writer handed ``seq`` of ``session`` to the socket."""
        # Resync material interleaves older finals with newer snapshots, so
        # the record only moves forward.
        if seq > subscriber.sent_seq.get(session, 0):
            subscriber.sent_seq[session] = seq

    # -- status ----------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Per-session figures for ``warpd status``."""
        now = time.monotonic()
        rows = []
        for session in self.sessions.values():
            subscribers = [*session.subscribers, *self._wildcard]
            rows.append(
                {
                    "session": session.name,
                    "seq": session.seq,
                    "live_streams": sorted(session.live),
                    "streams_started": session.streams_started,
                    "history_messages": len(session.history),
                    "history_bytes": session.history_bytes,
                    "completed_kept": len(session.completed),
                    "completed_bytes": session.completed_bytes,
                    "subscribers": [
                        {
                            "id": s.conn_id,
                            "lag_messages": max(0, session.seq - s.sent_seq.get(session.name, 0)),
                            "queued_bytes": s.outbox.queued_bytes + s.outbox.forced_bytes,
                            "behind": s.outbox.behind,
                            "resyncs": s.resyncs,
                            "catchups": s.catchups,
                            "dropped": s.outbox.dropped,
                            "connected_for": round(now - s.connected_at, 1),
                        }
                        for s in subscribers
                    ],
                }
            )
        return rows
