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

What sessions keep in memory (history for resume, kept finals for resync
and replay), within which bounds, and when a session is forgotten, is the
base class's business: :class:`~warpd.daemon.sessions.SessionTable`.

With a :class:`~warpd.daemon.history_store.HistoryStore` (``[history] persist``),
every published message is also queued for the history file, the epoch and
each session's seq come from it (so they go on across restarts), and resume
and replay reach into it when memory no longer holds what they need.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

from warpd.blocks import BlockAssembler, is_final
from warpd.daemon.history_store import stream_end, unfinished_finals
from warpd.daemon.outbox import Subscriber, SubscriberOutbox
from warpd.daemon.sessions import (
    FINAL_OVERHEAD,
    KEPT_OVERHEAD,
    HubLimitError,
    Session,
    SessionTable,
)
from warpd.protocol import (
    BlocksMessage,
    HelloMessage,
    ResyncMessage,
    StreamMessage,
    encode,
)

__all__ = [
    "FINAL_OVERHEAD",
    "KEPT_OVERHEAD",
    "Hub",
    "HubLimitError",
    "Session",
    "Subscriber",
    "SubscriberOutbox",
]

# --replay reaches at most this many streams back per session.
MAX_REPLAY = 1000


class Hub(SessionTable):
    """All sessions of one daemon: publishing and subscribers. Not thread-safe:
    use from the event loop only.

    ``store``: the history file, or None to keep everything in memory only.
    """

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
        session = self.session(assembler.session)
        session.live[assembler.stream] = assembler
        self._mark(session)

    def publish(self, message: BlocksMessage) -> bytes:
        """Number, encode once, record and fan out a message; return its bytes."""
        session = self.session(message.session)
        session.seq += 1
        seq = message.seq = session.seq
        message.epoch = self.epoch
        data = encode(message)
        self.messages_published += 1
        final = is_final(message)
        if self.store is not None:
            self._store(session, message, data, final)
        self._remember(session, seq, data)
        if final:
            session.live.pop(message.stream, None)
            self._keep_final(session, seq, data)
            self._mark(session)
        name = session.name
        for subscriber in session.subscribers:
            subscriber.outbox.put(name, seq, data)
        for subscriber in self._wildcard:
            subscriber.outbox.put(name, seq, data)
        return data

    def _store(self, session: Session, message: StreamMessage, data: bytes, final: bool) -> None:
        """Queue a published message for the history file (never waits on the disk)."""
        assert self.store is not None
        ticket = self.store.record(
            session.name, message.seq, session.streams_started, message.stream, data,
            message.created, stream_end(message) if final else None,
        )
        if ticket:
            session.ticket = ticket

    def recover(self) -> list[str]:
        """Complete as aborted the streams the history file holds no end of.

        Call once at start-up, before serving: they were live when the
        daemon stopped without ending them (a crash, SIGKILL, power loss).
        Each gets its final message from what reached the file, published
        like any other. Messages sent after the last commit were lost; the
        store made every session's seq skip past any number they could have
        used when it opened the file. Returns the ids of the streams completed.
        """
        if self.store is None:
            return []
        done = []
        for final in unfinished_finals(self.store.reader, "the daemon stopped"):
            self.publish(final)
            done.append(final.stream)
        return done

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
        plan: list[tuple[Session, int | None, list[tuple[int, bytes]]]] = []
        for session in sessions:
            after = None if since is None else since.get(session.name, since.get("*"))
            stored: list[tuple[int, bytes]] = []
            if after is not None and resume_failed is None:
                oldest = session.oldest
                if after > session.seq:
                    # Ahead of the session: seq numbers from another life of it.
                    resume_failed = (
                        f"session {session.name!r} has no message {after} "
                        f"(its last is {session.seq})"
                    )
                elif after < session.seq and oldest > after + 1:
                    found = self._stored_after(session, after, oldest)
                    if found is None:
                        resume_failed = (
                            f"the history of session {session.name!r} no longer reaches back "
                            f"to message {after} (it starts at {oldest})"
                        )
                    else:
                        stored = found
            plan.append((session, after, stored))
        hello = HelloMessage(
            epoch=self.epoch,
            sessions=sorted(wanted),
            seq={s.name: s.seq for s in sessions},
            resume_failed=resume_failed,
        )
        outbox.put("", 0, encode(hello))
        replay = min(replay, MAX_REPLAY)
        for session, after, stored in plan:
            resuming = after is not None and resume_failed is None
            finals = self._last_finals(session, replay) if replay else []
            if resuming:
                # History replays what came after ``after``, finals included.
                finals = [(seq, data) for seq, data in finals if seq <= (after or 0)]
            elif after is not None and same_epoch:
                # History is too short, but the finals of streams that
                # completed since ``after`` may still be kept: send them, as a
                # resync would, so no stream's end goes missing.
                replayed = {seq for seq, _ in finals}
                missed = [(q, d) for q, d in self._finals_since(session, after)
                          if q not in replayed]
                finals = sorted(finals + missed, key=lambda final: final[0])
            for seq, data in finals:
                outbox.put(session.name, seq, data, force=True)
            if resuming:
                for seq, data in itertools.chain(stored, session.history_after(after or 0)):
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
                self._mark(session)
        self.subscriber_count += 1
        return subscriber

    def _stored_after(
        self, session: Session, after: int, before: int
    ) -> list[tuple[int, bytes]] | None:
        """The messages between ``after`` and ``before`` from the history file, if all are there.

        Bounded by ``history.bytes``, like what memory keeps of a session.
        """
        if self.store is None:
            return None
        return self.store.messages_after(session.name, after, before, self.config.history.bytes)

    def _last_finals(self, session: Session, count: int) -> list[tuple[int, bytes]]:
        """The final messages of the session's last ``count`` completed streams, oldest first."""
        kept = list(session.completed)[-count:]
        if len(kept) >= count or self.store is None:
            return kept
        before = kept[0][0] if kept else session.seq + 1
        return self.store.finals(session.name, count - len(kept), before) + kept

    def _finals_since(self, session: Session, after: int) -> list[tuple[int, bytes]]:
        """Finals of streams that completed after seq ``after`` (memory, then the file)."""
        kept = [(q, d) for q, d in session.completed if q > after]
        oldest_kept = session.completed[0][0] if session.completed else session.seq + 1
        if self.store is None or oldest_kept <= after + 1:
            return kept
        older = self.store.finals(session.name, MAX_REPLAY, oldest_kept)
        return [(q, d) for q, d in older if q > after] + kept

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
                self._mark(session)
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
            if session.history and session.history_start <= last + 1:
                for seq, data in session.history_after(last):
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
                    "idle": session.name in self._idle,
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
