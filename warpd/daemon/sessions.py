"""Sessions and what they keep in memory: history, kept finals, the global budget.

A session is kept while in use (a live stream or a subscriber of its own)
and, once idle, until what it holds has been evicted, it has been idle for
``history.max_age`` seconds, or room is needed for a new session (the least
recently used idle one goes). ``limits.max_sessions`` counts every kept
session, but refuses a new one only when all of them are in use. A session
that is not in memory starts where the history file left it (or, memory
only, above every seq a forgotten session used, so an old ``since`` or
stream id never names a new message).

History (for resume) and kept finals (for resync and replay) are bounded per
session by count and bytes, and all sessions together by
``history.total_bytes``, evicting the oldest across all sessions first. What
is counted is what a kept message costs in memory: its bytes plus
:data:`KEPT_OVERHEAD`.
"""

from __future__ import annotations

import itertools
import secrets
import sys
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from warpd.blocks import BlockAssembler
from warpd.config import Config
from warpd.daemon.outbox import Subscriber

if TYPE_CHECKING:
    from warpd.daemon.history_store import HistoryStore

# What keeping one message costs beyond its length: the bytes object's header,
# its slot in the session's history and in the hub's arrival order, and the
# allocator's rounding (measured: tests/test_history.py, the RSS ratio).
KEPT_OVERHEAD = sys.getsizeof(b"") + 2 * 8 + 8
# A kept final also has a (seq, bytes) tuple and the seq's int.
FINAL_OVERHEAD = KEPT_OVERHEAD + sys.getsizeof((0, b"")) + sys.getsizeof(2**40)


class HubLimitError(Exception):
    """A configured limit refuses the request; the message says which."""


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


class SessionTable:
    """The sessions a daemon keeps and what each keeps in memory, within bounds.

    The base of :class:`~warpd.daemon.hub.Hub`, which publishes and serves
    subscribers; this part decides what is kept and what is forgotten.
    ``store``: the history file, or None to keep everything in memory only.
    Not thread-safe: use from the event loop only.
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
        state = store.session_state(name)
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
