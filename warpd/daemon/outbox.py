"""A subscriber's outbox: encoded messages waiting for its socket, bounded in bytes.

The hub puts the same bytes, encoded once, in every subscriber's outbox; the
subscriber's writer drains it (:mod:`warpd.daemon.subscribers`). The
slow-subscriber policy this bound serves is told in :mod:`warpd.daemon.hub`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["Subscriber", "SubscriberOutbox"]


class SubscriberOutbox:
    """Encoded messages waiting for one subscriber's socket, bounded in bytes.

    The hub calls :meth:`put`; the subscriber's writer waits until woken, then
    calls :meth:`take` and sends what it gets. ``behind`` means messages were
    dropped: the writer must call :meth:`Hub.resync` before taking more.

    Only live messages count against ``limit``; forced entries (hello, replay,
    resync material) are never dropped and don't count, as they are bounded by
    what the hub keeps anyway.
    """

    def __init__(self, limit: int, wake: Callable[[], None]) -> None:
        self.limit = limit
        self._wake = wake
        # (session, seq, bytes, forced)
        self._queue: deque[tuple[str, int, bytes, bool]] = deque()
        self.queued_bytes = 0
        self.forced_bytes = 0
        self.behind = False
        self.behind_since = 0.0
        self.dropped = 0
        # Sessions whose messages were dropped since the last resync.
        self.dropped_sessions: set[str] = set()

    def put(self, session: str, seq: int, data: bytes, *, force: bool = False) -> None:
        """Queue a message, or start dropping if it would pass the bound.

        ``force`` queues it regardless (resync material, which must get through).
        """
        if force:
            self._queue.append((session, seq, data, True))
            self.forced_bytes += len(data)
            self._wake()
            return
        if self.behind:
            self.dropped += 1
            self.dropped_sessions.add(session)
            return
        size = len(data)
        if self.queued_bytes and self.queued_bytes + size > self.limit:
            kept = deque(entry for entry in self._queue if entry[3])
            for entry in self._queue:
                if not entry[3]:
                    self.dropped += 1
                    self.dropped_sessions.add(entry[0])
            self.dropped += 1
            self.dropped_sessions.add(session)
            self._queue = kept
            self.queued_bytes = 0
            self.behind = True
            self.behind_since = time.monotonic()
            self._wake()
            return
        self._queue.append((session, seq, data, False))
        self.queued_bytes += size
        self._wake()

    def take(self) -> list[tuple[str, int, bytes]]:
        """Everything queued, oldest first: (session, seq, bytes); seq 0 for control messages."""
        items = [(session, seq, data) for session, seq, data, _ in self._queue]
        self._queue.clear()
        self.queued_bytes = self.forced_bytes = 0
        return items

    def __len__(self) -> int:
        return len(self._queue)


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
