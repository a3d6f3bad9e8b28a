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
``history.total_bytes``, evicting the oldest across all sessions first. What
is counted is what a kept message costs in memory: its bytes plus
:data:`KEPT_OVERHEAD` (the bytes object's header and the slots that hold it).

Sessions are kept while in use (a live stream or a subscriber of their own)
and, once idle, until what they hold has been evicted, they have been idle for
``history.max_age`` seconds, or room is needed for a new session (the least
recently used idle one goes). ``limits.max_sessions`` counts every kept
session, but refuses a new one only when all of them are in use.

With a :class:`~warpd.history_store.HistoryStore` (``[history] persist``),
every published message is also queued for the history file, the epoch and
each session's seq come from it (so they go on across restarts), and resume
and replay reach into it when memory no longer holds what they need.
"""

from __future__ import annotations

import itertools
import re
import secrets
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from loguru import logger

from warpd.blocks import BlockAssembler, is_final
from warpd.config import Config
from warpd.daemon.outbox import SubscriberOutbox
from warpd.protocol import (
    BlocksMessage,
    HelloMessage,
    ResyncMessage,
    StreamMessage,
    encode,
)

if TYPE_CHECKING:
    from warpd.history_store import HistoryStore

# What keeping one message costs beyond its length: the bytes object's header,
# its slot in the session's history and in the hub's arrival order, and the
# allocator's rounding (measured: tests/test_history.py, the RSS ratio).
KEPT_OVERHEAD = sys.getsizeof(b"") + 2 * 8 + 8
# A kept final also has a (seq, bytes) tuple and the seq's int.
FINAL_OVERHEAD = KEPT_OVERHEAD + sys.getsizeof((0, b"")) + sys.getsizeof(2**40)
# --replay reaches at most this many streams back per session.
MAX_REPLAY = 1000

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

    def __init__(self, name: str, seq: int = 0, streams_started: int = 0) -> None:
        self.name = name
        self.seq = seq
        self.streams_started = streams_started
        self.live: dict[str, BlockAssembler] = {}
        self.subscribers: set[Subscriber] = set()
        # Recent messages as sent, for resume (since=SEQ): consecutive seqs,
        # the first being history_start. Only the bytes are kept per message.
        self.history: deque[bytes] = deque()
        self.history_start = 0
        self.history_bytes = 0
        # Final messages of completed streams: (seq, bytes), for resync and replay.
        self.completed: deque[tuple[int, bytes]] = deque()
        self.completed_bytes = 0
        # Snapshots of the live streams, encoded once per (seq, resync flag)
        # and shared by every subscriber that joins or resyncs meanwhile.
        self.snapshot_cache: dict[bool, tuple[int, list[bytes]]] = {}
        # When it was last used (monotonic), and the history file's ticket of
        # its last message.
        self.used = time.monotonic()
        self.ticket = 0
        # History messages it evicted by itself whose entries are still in
        # the hub's arrival order (they come first among its entries there).
        self.stale_arrivals = 0

    @property
    def oldest(self) -> int:
        """The seq of the oldest message in history (seq + 1 when it is empty)."""
        return self.history_start if self.history else self.seq + 1

    def history_after(self, after: int) -> Iterable[tuple[int, bytes]]:
        """(seq, bytes) of the history messages after seq ``after``."""
        start = max(0, after + 1 - self.history_start)
        return zip(itertools.count(self.history_start + start),
                   itertools.islice(self.history, start, None), strict=False)


# An entry of the hub's arrival order: a session (its oldest history message
# still counted there) or (session, seq) for a kept final.
_Arrival = Session | tuple[Session, int]


def _final_kept(session: Session, seq: int) -> bool:
    """Whether a session still keeps the final message ``seq``."""
    # Each session evicts from the front only, so what is kept is a suffix.
    return bool(session.completed) and session.completed[0][0] <= seq


class Hub:
    """All sessions of one daemon. Not thread-safe: use from the event loop only.

    ``store``: the history file, or None to keep everything in memory only.
    """

    # Whether a session that becomes idle holding nothing is forgotten at once
    # (it can be re-created as it was: from the history file, or above the seq floor).
    forget_empty = True

    def __init__(self, config: Config, store: HistoryStore | None = None) -> None:
        self.config = config
        self.store = store
        # One epoch per history: the history file's (seq numbers go on across
        # restarts), else a new one per daemon start.
        self.epoch = store.epoch if store is not None else secrets.token_hex(8)
        self.sessions: dict[str, Session] = {}
        # Sessions in use by nothing (no live stream, no subscriber of their
        # own), least recently used first.
        self._idle: dict[str, None] = {}
        # A forgotten session's seq and stream count, until its last message
        # is in the history file (where a new session of that name finds them).
        self._unsaved: dict[str, tuple[int, int, int]] = {}
        # New sessions start above every forgotten one (memory only), so a
        # since= or a stream id from an old life of a name means nothing.
        self._seq_floor = 0
        self._wildcard: set[Subscriber] = set()
        self.subscriber_count = 0
        self.messages_published = 0
        # Bytes held by every session's history and kept finals together, and
        # the order they arrived in across sessions, for evicting the oldest
        # first when over history.total_bytes. Entries already evicted by a
        # session's own bounds are skipped when they come up.
        self.history_total = 0
        self._arrivals: deque[_Arrival] = deque()
        self._kept_count = 0

    # -- sessions and streams -----------------------------------------------

    def session(self, name: str) -> Session:
        """The session called ``name``, created on first use (within the limit).

        Raises HubLimitError when ``limits.max_sessions`` are kept and every
        one of them is in use; otherwise the least recently used idle session
        makes room.
        """
        session = self.sessions.get(name)
        if session is None:
            limit = self.config.limits.max_sessions
            while len(self.sessions) >= limit:
                if not self._idle:
                    raise HubLimitError(
                        f"too many sessions in use ({limit}, limits.max_sessions)"
                    )
                self.forget(self.sessions[next(iter(self._idle))])
            seq, streams = self._known_state(name)
            session = self.sessions[name] = Session(name, seq, streams)
            self._idle[name] = None
        return session

    def _known_state(self, name: str) -> tuple[int, int]:
        """Where a session that is not in memory starts: (seq, streams started)."""
        unsaved = self._unsaved.get(name)
        if unsaved is not None:
            return unsaved[0], unsaved[1]
        store = self.store
        if store is None:
            return self._seq_floor, self._seq_floor
        try:
            state = store.reader.session_state(name)
        except sqlite3.Error as exc:
            logger.error("cannot read the history file: {}", exc)
            state = None
        if state is None:
            floor = max(store.seq_floor, self._seq_floor)
            return floor, floor
        return state

    def _mark(self, session: Session) -> None:
        """Note that a session was used; it goes (back) to the idle list if nothing holds it."""
        session.used = time.monotonic()
        name = session.name
        self._idle.pop(name, None)
        if not session.live and not session.subscribers and name in self.sessions:
            if session.history or session.completed or not self.forget_empty:
                self._idle[name] = None
            else:
                # Nothing to keep it for (e.g. a subscriber came and went).
                self.forget(session)

    def forget(self, session: Session) -> None:
        """Drop an idle session from memory; the history file (if any) still has it."""
        while session.history:
            self._evict_history(session)
        while session.completed:
            self._evict_final(session)
        name = session.name
        del self.sessions[name]
        self._idle.pop(name, None)
        self._seq_floor = max(self._seq_floor, session.seq, session.streams_started)
        store = self.store
        if store is not None and session.ticket > store.committed:
            self._unsaved[name] = (session.seq, session.streams_started, session.ticket)

    def expire(self) -> None:
        """Forget sessions idle for longer than ``history.max_age``; call now and then."""
        cutoff = time.monotonic() - self.config.history.max_age
        while self._idle:
            session = self.sessions[next(iter(self._idle))]
            if session.used > cutoff:
                break
            self.forget(session)
        if self._unsaved and self.store is not None:
            committed = self.store.committed
            self._unsaved = {k: v for k, v in self._unsaved.items() if v[2] > committed}

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
        from warpd.history_store import stream_end

        assert self.store is not None
        ticket = self.store.record(
            session.name, message.seq, session.streams_started, message.stream, data,
            message.created, stream_end(message) if final else None,
        )
        if ticket:
            session.ticket = ticket

    def _remember(self, session: Session, seq: int, data: bytes) -> None:
        history = session.history
        if history and seq != session.history_start + len(history):
            # Not the next seq (a broker reload): nothing before it can be
            # resumed across the gap.
            while history:
                self._evict_history(session)
        if not history:
            session.history_start = seq
        history.append(data)
        cost = len(data) + KEPT_OVERHEAD
        session.history_bytes += cost
        self.history_total += cost
        self._kept_count += 1
        self._arrivals.append(session)
        limits = self.config.history
        while history and (
            len(history) > limits.messages or session.history_bytes > limits.bytes
        ):
            self._evict_history(session)
        self._within_total()

    def _keep_final(self, session: Session, seq: int, data: bytes) -> None:
        session.completed.append((seq, data))
        cost = len(data) + FINAL_OVERHEAD
        session.completed_bytes += cost
        self.history_total += cost
        self._kept_count += 1
        self._arrivals.append((session, seq))
        while len(session.completed) > self.config.history.completed_streams:
            self._evict_final(session)
        self._within_total()

    def _evict_history(self, session: Session, *, stale: bool = True) -> None:
        """Drop the session's oldest history message.

        ``stale``: its entry in the arrival order stays behind (the session
        evicts by its own bounds); False when that entry is what is evicting.
        """
        old = session.history.popleft()
        session.history_start += 1
        cost = len(old) + KEPT_OVERHEAD
        session.history_bytes -= cost
        self.history_total -= cost
        self._kept_count -= 1
        session.stale_arrivals += stale

    def _evict_final(self, session: Session) -> None:
        _, old = session.completed.popleft()
        cost = len(old) + FINAL_OVERHEAD
        session.completed_bytes -= cost
        self.history_total -= cost
        self._kept_count -= 1

    def _within_total(self) -> None:
        """Evict the oldest history messages and kept finals, across sessions, while over."""
        total = self.config.history.total_bytes
        arrivals = self._arrivals
        emptied: list[Session] = []
        while self.history_total > total and arrivals:
            entry = arrivals.popleft()
            if isinstance(entry, Session):
                if entry.stale_arrivals:
                    entry.stale_arrivals -= 1
                    continue
                self._evict_history(entry, stale=False)
                session = entry
            else:
                session, seq = entry
                if not (session.completed and session.completed[0][0] == seq):
                    continue
                self._evict_final(session)
            if not session.history and not session.completed:
                emptied.append(session)
        # Idle sessions left with nothing are forgotten.
        for session in emptied if self.forget_empty else ():
            if session.name in self._idle and self.sessions.get(session.name) is session:
                self.forget(session)
        # Stale entries (messages a session already evicted by itself) are
        # dropped when they outnumber the live ones, so the order stays
        # proportional to what is kept (amortised O(1) per message).
        if len(arrivals) > 2 * self._kept_count + 64:
            kept: deque[_Arrival] = deque()
            for entry in arrivals:
                if isinstance(entry, Session):
                    if entry.stale_arrivals:
                        entry.stale_arrivals -= 1
                        continue
                elif not _final_kept(*entry):
                    continue
                kept.append(entry)
            self._arrivals = kept

    def recover(self) -> list[str]:
        """Complete as aborted the streams the history file holds no end of.

        Call once at start-up, before serving: they were live when the
        daemon stopped without ending them (a crash, SIGKILL, power loss).
        Each gets its final message from what reached the file, published
        like any other. Messages sent after the last commit were lost, so
        each such session's seq skips ahead past any number they could have
        used. Returns the ids of the streams completed.
        """
        from warpd.history_store import QUEUE_MESSAGES, unfinished_finals

        if self.store is None:
            return []
        done = []
        skipped: set[str] = set()
        for final in unfinished_finals(self.store.reader, "the daemon stopped"):
            session = self.session(final.session)
            if final.session not in skipped:
                skipped.add(final.session)
                session.seq += QUEUE_MESSAGES + 1
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
        try:
            return self.store.reader.messages_after(
                session.name, after, before, self.config.history.bytes
            )
        except sqlite3.Error as exc:
            logger.error("cannot read the history file: {}", exc)
            return None

    def _last_finals(self, session: Session, count: int) -> list[tuple[int, bytes]]:
        """The final messages of the session's last ``count`` completed streams, oldest first."""
        kept = list(session.completed)[-count:]
        if len(kept) >= count or self.store is None:
            return kept
        before = kept[0][0] if kept else session.seq + 1
        try:
            older = self.store.reader.finals(session.name, count - len(kept), before)
        except sqlite3.Error as exc:
            logger.error("cannot read the history file: {}", exc)
            older = []
        return older + kept

    def _finals_since(self, session: Session, after: int) -> list[tuple[int, bytes]]:
        """Finals of streams that completed after seq ``after`` (memory, then the file)."""
        kept = [(q, d) for q, d in session.completed if q > after]
        oldest_kept = session.completed[0][0] if session.completed else session.seq + 1
        if self.store is None or oldest_kept <= after + 1:
            return kept
        try:
            older = self.store.reader.finals(session.name, MAX_REPLAY, oldest_kept)
        except sqlite3.Error as exc:
            logger.error("cannot read the history file: {}", exc)
            older = []
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

    def summary(self) -> dict[str, Any]:
        """What the hub keeps, for ``warpd status``: sessions, history in memory, the file."""
        return {
            "sessions": len(self.sessions),
            "sessions_in_use": len(self.sessions) - len(self._idle),
            "max_sessions": self.config.limits.max_sessions,
            "messages": self._kept_count,
            "bytes": self.history_total,
            "total_bytes": self.config.history.total_bytes,
            "store": self.store.status() if self.store is not None else None,
        }

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
