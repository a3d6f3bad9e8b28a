"""HistoryStore: every block message the hub publishes, written to the history file.

The hub calls :meth:`HistoryStore.record` for each message it publishes; that
only appends to a queue (a lock, a list append: no I/O), so a publish never
waits on the disk. One writer thread takes what is queued, writes it in one
transaction and commits, at most :data:`COMMIT_INTERVAL` after the first of
them was queued (while the disk keeps up), then prunes the file by size and
age, oldest streams first. The schema and the reads are in :mod:`warpd.history`.

The queue is bounded (:data:`QUEUE_BYTES`, :data:`QUEUE_MESSAGES`): when the
disk cannot keep up, further messages are not stored (counted, logged once per
episode, shown by ``warpd status``) rather than held in memory without bound.
A stream whose final message was not stored is completed as aborted at the
next start, like one cut off by a crash.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec
from loguru import logger

from warpd.broker.mirror import StreamMirror
from warpd.config import HistoryConfig
from warpd.errors import StoreError
from warpd.history import (
    SCHEMA,
    SCHEMA_VERSION,
    SEQ_BITS,
    HistoryReader,
    connect,
    message_key,
    open_private,
    skip_numbers,
    small_cache,
)
from warpd.protocol import BlocksMessage, StreamMessage, decode_server_message

# The writer commits at most this long after a message was queued (seconds).
COMMIT_INTERVAL = 0.08
# What the queue holds at most while the disk lags: beyond, messages are not stored.
QUEUE_BYTES = 64 * 1024 * 1024
QUEUE_MESSAGES = 100_000
# Seconds between pruning by age (pruning by size follows every commit).
AGE_PRUNE_INTERVAL = 60.0
# Pruning by size deletes down to this fraction of [history] disk_bytes, so
# it runs now and then rather than after every commit.
PRUNE_TO = 0.9
# Streams deleted per statement while pruning.
PRUNE_BATCH = 500
# Name → row id caches of the writer are emptied past this many entries.
CACHE_LIMIT = 10_000


class StreamEnd(NamedTuple):
    """What ``warpd log`` shows of a completed stream, taken from its final message."""

    model: str | None
    outcome: str
    usage: str | None  # JSON
    text: str


_T = TypeVar("_T")

# How much of the answer ``warpd log`` shows (characters).
TEXT_CHARS = 200


def stream_end(message: StreamMessage) -> StreamEnd:
    """What the history file keeps about a stream from its final message."""
    if message.aborted:
        outcome = f"aborted: {message.abort_reason or 'no reason given'}"
    else:
        outcome = message.finish_reason or "complete"
    text = ""
    for block in message.blocks:
        if block.type == "text" and block.text:
            text = block.text
            break
    if not text:
        for block in message.blocks:
            if block.type == "tool_call" and block.tool is not None:
                function = block.tool.function
                text = f"{function.name}({function.arguments})"
                break
            if block.type == "error" and block.error is not None:
                text = f"error: {block.error.message}"
                break
    usage = msgspec.json.encode(message.usage).decode() if message.usage else None
    return StreamEnd(message.model, outcome, usage, text[:TEXT_CHARS])


def unfinished_finals(reader: HistoryReader, reason: str) -> list[BlocksMessage]:
    """The aborted final message of each stream the file holds no end of, from its messages.

    Every block whole and complete, those cut short marked ``truncated``
    (see :meth:`StreamMirror.aborted`); in the order the streams started.
    Each one's ``seq`` is that of the stream's last stored message.
    """
    finals = []
    for session, stream in reader.unfinished():
        mirror = StreamMirror()
        last = 0
        for seq, _, data in reader.stream_messages(stream):
            message = decode_server_message(data)
            if isinstance(message, StreamMessage):
                mirror.apply(message)
                last = seq
        if not last:
            continue
        final = mirror.aborted(session, stream, reason)
        final.seq = last
        finals.append(final)
    return finals


# A queued message: (session, seq, streams the session started, stream, data,
# received, the stream's start, its end if this is its final message). A plain
# tuple: building it is part of every publish.
_Record = tuple[str, int, int, str, bytes, float, float, StreamEnd | None]


class HistoryStore:
    """The daemon's side of the history file: one writer thread, one reader.

    :meth:`open` creates or opens the file (StoreError if it cannot be used);
    ``epoch`` and ``seq_floor`` come from it. Use :meth:`record` from the event
    loop; ``reader`` (a connection of its own) for the few reads the hub needs
    (session state, resume, replay, recovery). :meth:`close` drains the queue,
    commits and stops the thread.
    """

    def __init__(self, path: Path, config: HistoryConfig, db: sqlite3.Connection,
                 lock_fd: int) -> None:
        self.path = path
        self.config = config
        self._db = db
        meta = HistoryReader(db).meta()
        self.epoch = meta["epoch"]
        # New sessions start their seq here: above every seq of a session
        # whose record was pruned, so a since from its old life means nothing.
        self.seq_floor = int(meta.get("seq_floor", "0"))
        self.reader = HistoryReader(connect(path, readonly=True))
        # The queue: appended to by the event loop, emptied by the writer.
        # deque.append and popleft are atomic, so neither side takes a lock;
        # each counter below is written by one side only.
        self._queue: deque[_Record] = deque()
        self._bytes_in = 0  # the loop's
        self._bytes_out = 0  # the writer's
        self._stop = threading.Event()
        # Tickets: the nth record queued has ticket n; committed is the last
        # done with (on disk, or failed to be).
        self.queued = 0
        self.committed = 0
        self.dropped = 0
        self._dropping = False
        self.last_error: str | None = None
        self.commits = 0
        self._sessions: dict[str, int] = {}
        # Live stream → (session row id, stream row id).
        self._streams: dict[str, tuple[int, int]] = {}
        self.stored_bytes = self._stored()
        self._last_age_prune = 0.0
        self._lock_fd = lock_fd  # see open
        self._thread = threading.Thread(target=self._run, name="warpd-history", daemon=True)

    @classmethod
    def open(cls, path: Path, config: HistoryConfig, *, own_dir: bool) -> HistoryStore:
        """Open (creating if needed: 0700 directory, 0600 file) and start the writer.

        The file is this daemon's alone until :meth:`close` (a lock: see
        :func:`~warpd.history.open_private`).
        """
        fd = open_private(path, own_dir=own_dir)
        try:
            store = cls._open_locked(path, config, fd)
        except BaseException:
            # Closed last: closing any descriptor of the file drops SQLite's locks on it.
            os.close(fd)
            raise
        store._thread.start()
        return store

    @classmethod
    def _open_locked(cls, path: Path, config: HistoryConfig, fd: int) -> HistoryStore:
        db = connect(path, readonly=False)
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot use the history file {path}: WAL mode refused")
            db.execute("PRAGMA synchronous = NORMAL")
            small_cache(db)
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is not None and int(version[0]) != SCHEMA_VERSION:
                db.execute("ROLLBACK")
                raise StoreError(f"{path} has history schema {version[0]}, "
                                 f"this warpd writes {SCHEMA_VERSION}")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (secrets.token_hex(8),))
            if db.execute("SELECT 1 FROM meta WHERE key = 'running'").fetchone():
                # The last run did not close the file (a crash, or messages it could
                # not store): it may have numbered up to a full queue unstored.
                skip_numbers(db, QUEUE_MESSAGES + 1)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('running', ?)", (str(os.getpid()),))
            db.execute("COMMIT")
            return cls(path, config, db, fd)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"cannot use the history file {path}: {exc}") from None
        except BaseException:
            db.close()
            raise

    # -- the event loop's side ---------------------------------------------------------

    def record(
        self,
        session: str,
        seq: int,
        streams: int,
        stream: str,
        data: bytes,
        started: float | None,
        end: StreamEnd | None,
    ) -> int:
        """Queue one published message; its ticket (0 if the queue is full and it was not)."""
        size = len(data)
        if (self._bytes_in - self._bytes_out + size > QUEUE_BYTES
                or self.queued - self.committed >= QUEUE_MESSAGES):
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                logger.warning("the history file {} cannot keep up: messages are not "
                               "being stored (warpd status counts them)", self.path)
            return 0
        if self._dropping:
            self._dropping = False
            logger.info("the history file keeps up again ({} messages not stored so far)",
                        self.dropped)
        now = time.time()
        self._queue.append((session, seq, streams, stream, data, now, started or now, end))
        self._bytes_in += size
        self.queued += 1
        return self.queued

    # Reads for the hub, on the reader's own connection (WAL: never waits for
    # the writer). A failing read is logged and taken as "not in the file".

    def session_state(self, name: str) -> tuple[int, int] | None:
        """A session's last seq and stream count in the file, or None."""
        try:
            return self.reader.session_state(name)
        except sqlite3.Error as exc:
            return self._read_failed(exc, None)

    def messages_after(
        self, session: str, after: int, before: int, max_bytes: int
    ) -> list[tuple[int, bytes]] | None:
        """See :meth:`HistoryReader.messages_after`."""
        try:
            return self.reader.messages_after(session, after, before, max_bytes)
        except sqlite3.Error as exc:
            return self._read_failed(exc, None)

    def finals(self, session: str, count: int, before: int) -> list[tuple[int, bytes]]:
        """See :meth:`HistoryReader.finals`."""
        try:
            return self.reader.finals(session, count, before)
        except sqlite3.Error as exc:
            return self._read_failed(exc, [])

    def _read_failed(self, exc: sqlite3.Error, fallback: _T) -> _T:
        logger.error("cannot read the history file {}: {}", self.path, exc)
        return fallback

    def status(self) -> dict[str, Any]:
        """For ``warpd status``: the file, what it holds, how the writer is doing."""
        return {
            "path": str(self.path),
            "stored_bytes": self.stored_bytes,
            "queued_messages": self.queued - self.committed,
            "queued_bytes": self._bytes_in - self._bytes_out,
            "not_stored": self.dropped,
            "commits": self.commits,
            "last_error": self.last_error,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, commit, stop the writer and close the file."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("the history writer did not finish within {}s", timeout)
            return
        if not self.dropped:
            # All published is stored: the next start need not skip numbers.
            try:
                self._db.execute("DELETE FROM meta WHERE key = 'running'")
            except sqlite3.Error as exc:
                logger.error("cannot write the history file {}: {}", self.path, exc)
        self.reader.db.close()
        self._db.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        self._prune(time.time())
        queue = self._queue
        while True:
            stopping = self._stop.is_set()
            batch = [queue.popleft() for _ in range(len(queue))]
            if batch:
                self._write(batch)
                self._bytes_out += sum(len(r[4]) for r in batch)
                self._prune(time.time())
            elif stopping:
                return
            if not stopping:
                # Let a batch gather (fewer, larger transactions cost the event
                # loop less); the queue is looked at again within this interval.
                self._stop.wait(COMMIT_INTERVAL)

    def _write(self, batch: list[_Record]) -> None:
        db = self._db
        try:
            db.execute("BEGIN")
            rows = []
            sessions: dict[int, tuple[int, int, float]] = {}
            sizes: dict[int, list[int]] = {}
            ends = []
            known = self._streams
            # The per-message part of the writer's work: kept to dict look-ups.
            for record in batch:
                session, seq, streams, stream, data, received, _, end = record
                ids = known.get(stream) or self._ids(session, stream, seq, received, record[6])
                session_id, stream_id = ids
                rows.append(((session_id << SEQ_BITS) | seq, stream_id, received, data))
                sessions[session_id] = (seq, streams, received)
                size = sizes.get(stream_id)
                if size is None:
                    size = sizes[stream_id] = [0, 0]
                size[0] += len(data)
                size[1] += 1
                if end is not None:
                    ends.append((received, seq, end.model, end.outcome, end.usage, end.text,
                                 stream_id))
                    known.pop(stream, None)
            db.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?)", rows)
            db.executemany("UPDATE sessions SET seq = ?, streams = ?, used = ? WHERE id = ?",
                           [(*state, sid) for sid, state in sessions.items()])
            db.executemany("UPDATE streams SET bytes = bytes + ?, messages = messages + ?"
                           " WHERE id = ?", [(b, n, sid) for sid, (b, n) in sizes.items()])
            db.executemany("UPDATE streams SET ended = ?, final_seq = ?, model = ?, outcome = ?,"
                           " usage = ?, text = ? WHERE id = ?", ends)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(exc, len(batch))
            return
        self.stored_bytes += sum(b for b, _ in sizes.values())
        self.committed += len(batch)
        self.commits += 1
        if self.last_error is not None:
            logger.info("the history file is written again")
            self.last_error = None

    def _failed(self, exc: sqlite3.Error, count: int) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        # Row ids cached during the failed transaction may not exist.
        self._sessions.clear()
        self._streams.clear()
        self.dropped += count
        self.committed += count
        if self.last_error is None:
            logger.error("cannot write the history file {}: {} ({} messages not stored)",
                         self.path, exc, count)
        self.last_error = str(exc)

    def _session_id(self, name: str, now: float) -> int:
        known = self._sessions.get(name)
        if known is not None:
            return known
        if len(self._sessions) > CACHE_LIMIT:
            self._sessions.clear()
        self._db.execute("INSERT OR IGNORE INTO sessions (name, seq, streams, used)"
                         " VALUES (?, 0, 0, ?)", (name, now))
        (session_id,) = self._db.execute(
            "SELECT id FROM sessions WHERE name = ?", (name,)).fetchone()
        self._sessions[name] = session_id
        return int(session_id)

    def _ids(self, session: str, stream: str, seq: int, received: float,
             started: float) -> tuple[int, int]:
        """The session's and the stream's row ids, the stream's row made on its first message."""
        session_id = self._session_id(session, received)
        if len(self._streams) > CACHE_LIMIT:
            self._streams.clear()
        row = self._db.execute("SELECT id FROM streams WHERE stream = ?", (stream,)).fetchone()
        if row is None:
            cursor = self._db.execute(
                "INSERT INTO streams (stream, session_id, started, first_seq) VALUES (?, ?, ?, ?)",
                (stream, session_id, started, seq))
            stream_id = int(cursor.lastrowid or 0)
        else:
            stream_id = int(row[0])
        ids = self._streams[stream] = (session_id, stream_id)
        return ids

    # -- pruning -----------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        """Delete the oldest completed streams while over disk_bytes, or older than max_age."""
        config = self.config
        try:
            if now - self._last_age_prune >= AGE_PRUNE_INTERVAL:
                self._last_age_prune = now
                self._delete_streams("started < ?", (now - config.max_age,))
                self._forget_sessions(now - config.max_age)
                self.stored_bytes = self._stored()
            if self.stored_bytes > config.disk_bytes:
                # Counted again first: `warpd log --clear` deletes behind our back.
                self.stored_bytes = self._stored()
            if self.stored_bytes > config.disk_bytes:
                target = int(config.disk_bytes * PRUNE_TO)
                while self.stored_bytes > target:
                    if not self._delete_streams("1", (), until=target):
                        break
        except sqlite3.Error as exc:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            logger.error("cannot prune the history file {}: {}", self.path, exc)
            self.last_error = str(exc)

    def _stored(self) -> int:
        """Bytes of messages the file holds, counted."""
        return int(self._db.execute("SELECT coalesce(sum(bytes), 0) FROM streams").fetchone()[0])

    def _delete_streams(self, where: str, params: tuple[Any, ...],
                        until: int | None = None) -> int:
        """Delete completed streams matching ``where``, oldest first; how many were."""
        deleted = 0
        while True:
            rows = self._db.execute(
                "SELECT id, session_id, first_seq, final_seq, bytes FROM streams"
                f" WHERE ended IS NOT NULL AND {where} ORDER BY id LIMIT {PRUNE_BATCH}",
                params).fetchall()
            if until is not None:
                keep, total = [], self.stored_bytes
                for row in rows:
                    if total <= until:
                        break
                    keep.append(row)
                    total -= row[4]
                rows = keep
            if not rows:
                return deleted
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM messages WHERE key BETWEEN ? AND ? AND stream_id = ?",
                [(message_key(r[1], r[2]), message_key(r[1], r[3]), r[0]) for r in rows])
            self._db.executemany("DELETE FROM streams WHERE id = ?", [(r[0],) for r in rows])
            self._db.execute("COMMIT")
            self.stored_bytes -= sum(r[4] for r in rows)
            deleted += len(rows)
            if until is not None and self.stored_bytes <= until:
                return deleted

    def _forget_sessions(self, before: float) -> None:
        """Delete sessions unused since ``before`` with no stream left, raising seq_floor."""
        db = self._db
        condition = ("used < ? AND NOT EXISTS (SELECT 1 FROM streams s"
                     " WHERE s.session_id = sessions.id)")
        db.execute("BEGIN")
        (highest,) = db.execute(f"SELECT max(seq) FROM sessions WHERE {condition}",
                                (before,)).fetchone()
        if highest is None:
            db.execute("COMMIT")
            return
        floor = max(self.seq_floor, int(highest))
        db.execute(f"DELETE FROM sessions WHERE {condition}", (before,))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (str(floor),))
        db.execute("COMMIT")
        self.seq_floor = floor
        self._sessions.clear()
