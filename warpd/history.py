"""The history file: its SQLite schema and the queries that read it.

The daemon writes the file (:class:`warpd.daemon.history_store.HistoryStore`,
one writer thread); ``warpd log`` and ``warpd show`` read it directly, with a
read-only connection, whether a daemon is running or not. Both sides need the
schema, so it lives here, below both.

Tables (schema version 1)::

    meta      key → value: schema, epoch, seq_floor
    sessions  id, name, seq (its last), streams (started so far), used (Unix time)
    streams   id (arrival order), stream ("SESSION/N"), session_id, started,
              ended (NULL while live), first_seq, final_seq, model, outcome,
              usage (JSON), text (the start of the answer), bytes, messages
    messages  key (session_id << 40 | seq), stream_id, received, data

A message's key is its session's id and its seq in one integer: the table is
one B-tree in (session, seq) order with no index beside it, so a message
costs one insert, and a session's messages from a seq on are one range.
``messages.data`` is a block message exactly as subscribers got it (JSON
bytes). ``streams`` is what ``warpd log`` needs, filled in when a stream
completes, so listing 100,000 streams reads one small table. Times are Unix
seconds. The file is in WAL mode: readers never wait for the writer, and a
reader sees the last committed transaction.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from warpd.errors import StoreError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL,
    streams INTEGER NOT NULL,
    used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL UNIQUE,
    session_id INTEGER NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    first_seq INTEGER NOT NULL,
    final_seq INTEGER,
    model TEXT,
    outcome TEXT,
    usage TEXT,
    text TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS streams_by_session ON streams (session_id, id);
CREATE INDEX IF NOT EXISTS streams_by_start ON streams (started);
CREATE INDEX IF NOT EXISTS streams_live ON streams (id) WHERE ended IS NULL;
CREATE TABLE IF NOT EXISTS messages (
    key INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL,
    received REAL NOT NULL,
    data BLOB NOT NULL
);
"""

# A message's key: its session's id above SEQ_BITS, its seq below.
SEQ_BITS = 40
SEQ_MASK = (1 << SEQ_BITS) - 1


def message_key(session_id: int, seq: int) -> int:
    """The ``messages.key`` of ``seq`` in the session whose row id is ``session_id``."""
    return (session_id << SEQ_BITS) | seq

# The largest integer SQLite takes (a bigger LIMIT means "all" anyway).
SQLITE_INT_MAX = 2**63 - 1

# How long a reader waits for a writer's lock (only `--clear` and schema
# creation take one; WAL readers otherwise never wait), in milliseconds.
BUSY_TIMEOUT_MS = 5000


class StreamRow(msgspec.Struct):
    """One stored stream, as ``warpd log --json`` prints it.

    Every field is always there (``null`` when unknown).
    ``started``/``ended`` are Unix times (``ended`` is None while live, or
    for a stream whose daemon stopped before it was completed and not yet
    restarted); ``outcome`` is ``stop``-like (the provider's finish reason),
    ``aborted: REASON``, ``complete`` or ``live``; ``usage`` is the
    provider's, as reported; ``text`` the first characters of the answer.
    """

    stream: str
    session: str
    started: float
    ended: float | None = None
    model: str | None = None
    outcome: str = "live"
    usage: dict[str, Any] | None = None
    text: str = ""
    messages: int = 0
    bytes: int = 0


_usage_decoder = msgspec.json.Decoder(dict[str, Any])
# Each connection's page cache, KiB.
CACHE_KIB = 256


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """An autocommit connection to the history file; StoreError if it cannot be opened.

    A read-only connection still needs the directory to be writable when the
    file is in WAL mode and no daemon has it open (SQLite creates the
    ``-shm`` index beside it); the user's own state directory always is.
    """
    if readonly and not path.exists():
        raise StoreError(f"no history at {path} (nothing stored yet, or [history] persist = false)")
    # Percent-encoded: in a URI, '?', '#' and '%' in the path would name another file.
    uri = f"file:{quote(str(path))}?mode={'ro' if readonly else 'rwc'}"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None,
                                     check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if readonly:
            version = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema'"
            ).fetchone()
            if version is None or int(version[0]) != SCHEMA_VERSION:
                raise StoreError(f"{path} has history schema {version and version[0]}, "
                                 f"this warpd reads {SCHEMA_VERSION}")
            small_cache(connection)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read the history at {path}: {exc}") from None
    return connection


def small_cache(connection: sqlite3.Connection) -> None:
    """Keep ``connection``'s page cache to :data:`CACHE_KIB`.

    SQLite's default (2 MB a connection) is memory no history figure counts;
    the daemon's reads and writes are appends and key ranges, which need little.
    """
    connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")


def tokens(usage: dict[str, Any] | None) -> int | None:
    """Total tokens of a provider's usage (OpenAI, Anthropic or Ollama names), if given."""
    if not usage:
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    counted = [
        value
        for key in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                    "prompt_eval_count", "eval_count")
        if isinstance(value := usage.get(key), int)
    ]
    return sum(counted) if counted else None


def ascii_lower(text: str) -> str:
    """``text`` with its ASCII letters lowered, and only those (as SQLite's lower())."""
    return "".join(c.lower() if c.isascii() else c for c in text)


_final_decoder = msgspec.json.Decoder(dict[str, Any])


def answer_has(data: bytes | None, start: str | None, needle: str) -> bool:
    """Whether a stream's answer holds ``needle`` (ASCII-lowered), ASCII letters in any case.

    ``data``: the stream's final message (JSON), whose blocks' text, tool names
    and arguments and error messages are the answer; None for a stream still
    live, whose ``start`` of the answer is all there is.
    """
    if data is None:
        return needle in ascii_lower(start or "")
    parts: list[str] = []
    for block in _final_decoder.decode(data).get("blocks") or ():
        parts.append(block.get("text") or "")
        function = (block.get("tool") or {}).get("function") or {}
        parts += (function.get("name") or "", function.get("arguments") or "")
        parts.append((block.get("error") or {}).get("message") or "")
    return needle in ascii_lower("\n".join(parts))


class HistoryReader:
    """Queries over a history file (``warpd log``, ``show``, and the daemon's resume).

    Works on any connection to the file; every method is one short read
    transaction and returns plain values.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    # -- warpd log ----------------------------------------------------------------

    def streams(
        self,
        *,
        session: str | None = None,
        since: float | None = None,
        grep: str | None = None,
        limit: int = 20,
    ) -> list[StreamRow]:
        """The last ``limit`` streams matching the filters, oldest first (0: all of them).

        ``grep`` matches the text of the stream's final message (every block
        whole), case-insensitively for ASCII letters; streams still live match
        on the start of their answer only.
        """
        where: list[str] = []
        params: list[Any] = []
        if session is not None:
            where.append("s.session_id = (SELECT id FROM sessions WHERE name = ?)")
            params.append(session)
        if since is not None:
            where.append("s.started >= ?")
            params.append(since)
        joined = ""
        if grep:
            # The message is JSON: look for the text as JSON would spell it.
            # SQLite's lower() changes ASCII letters only: so must the needle's.
            needle = ascii_lower(msgspec.json.encode(grep)[1:-1].decode())
            joined = ("LEFT JOIN messages m ON m.key = "
                      f"(s.session_id << {SEQ_BITS}) + s.final_seq")
            # instr() is the fast filter; it also matches the JSON around the
            # answer ("complete", field names), which answer_has() rules out.
            self.db.create_function("answer_has", 3, answer_has, deterministic=True)
            where.append("instr(lower(CAST(coalesce(m.data, s.text) AS TEXT)), ?) > 0"
                         " AND answer_has(m.data, s.text, ?)")
            params += [needle, ascii_lower(grep)]
        query = (
            "SELECT s.stream, n.name, s.started, s.ended, s.model, s.outcome, s.usage, s.text,"
            " s.messages, s.bytes FROM streams s JOIN sessions n ON n.id = s.session_id "
            f"{joined} {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY s.id DESC"
        )
        if limit > 0:
            query += " LIMIT ?"
            params.append(min(limit, SQLITE_INT_MAX))
        rows = [self._row(r) for r in self.db.execute(query, params)]
        rows.reverse()
        return rows

    @staticmethod
    def _row(r: tuple[Any, ...]) -> StreamRow:
        return StreamRow(
            stream=r[0], session=r[1], started=r[2], ended=r[3], model=r[4],
            outcome=r[5] or "live", usage=_usage_decoder.decode(r[6]) if r[6] else None,
            text=r[7] or "", messages=r[8], bytes=r[9],
        )

    def stream(self, stream: str) -> StreamRow | None:
        """One stream's row, or None if the history does not hold it."""
        row = self.db.execute(
            "SELECT s.stream, n.name, s.started, s.ended, s.model, s.outcome, s.usage, s.text,"
            " s.messages, s.bytes FROM streams s JOIN sessions n ON n.id = s.session_id"
            " WHERE s.stream = ?", (stream,),
        ).fetchone()
        return None if row is None else self._row(row)

    def stream_messages(self, stream: str) -> list[tuple[int, float, bytes]]:
        """Every stored message of ``stream``: (seq, received as Unix time, bytes), in seq
        order."""
        row = self.db.execute(
            "SELECT id, session_id, first_seq, coalesce(final_seq, 9223372036854775807)"
            " FROM streams WHERE stream = ?", (stream,),
        ).fetchone()
        if row is None:
            return []
        stream_id, session_id, first, last = row
        last = min(last, SEQ_MASK)
        return [
            (key & SEQ_MASK, received, bytes(data))
            for key, received, data in self.db.execute(
                "SELECT key, received, data FROM messages"
                " WHERE key BETWEEN ? AND ? AND stream_id = ?"
                " ORDER BY key",
                (message_key(session_id, first), message_key(session_id, last), stream_id),
            )
        ]

    # -- the daemon's side ----------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    def session_state(self, name: str) -> tuple[int, int] | None:
        """A session's last seq and how many streams it started, or None if unknown."""
        row = self.db.execute(
            "SELECT seq, streams FROM sessions WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def messages_after(
        self, session: str, after: int, before: int, max_bytes: int
    ) -> list[tuple[int, bytes]] | None:
        """Messages ``after`` < seq < ``before`` of ``session``, or None if not all are kept.

        None too when they would add up to more than ``max_bytes`` (a resume
        from that far back falls back to snapshots).
        """
        if before <= after + 1:
            return []
        row = self.db.execute("SELECT id FROM sessions WHERE name = ?", (session,)).fetchone()
        if row is None:
            return None
        out: list[tuple[int, bytes]] = []
        total = 0
        expected = after + 1
        for key, data in self.db.execute(
            "SELECT key, data FROM messages WHERE key > ? AND key < ? ORDER BY key",
            (message_key(row[0], after), message_key(row[0], before)),
        ):
            seq = key & SEQ_MASK
            total += len(data)
            if seq != expected or total > max_bytes:
                return None
            out.append((seq, bytes(data)))
            expected += 1
        return out if expected == before else None

    def finals(self, session: str, count: int, before: int) -> list[tuple[int, bytes]]:
        """The final messages of the last ``count`` streams of ``session`` that
        completed before seq ``before``: (seq, bytes), oldest first."""
        rows = self.db.execute(
            "SELECT s.final_seq, m.data FROM streams s JOIN sessions n ON n.id = s.session_id"
            f" JOIN messages m ON m.key = (s.session_id << {SEQ_BITS}) + s.final_seq"
            " WHERE n.name = ? AND s.final_seq < ? ORDER BY s.final_seq DESC LIMIT ?",
            (session, before, count),
        ).fetchall()
        return [(seq, bytes(data)) for seq, data in reversed(rows)]

    def unfinished(self) -> list[tuple[str, str]]:
        """Streams with no final message: (session, stream), in the order they started."""
        return list(self.db.execute(
            "SELECT n.name, s.stream FROM streams s JOIN sessions n ON n.id = s.session_id"
            " WHERE s.ended IS NULL ORDER BY s.id"
        ))

    def counts(self) -> tuple[int, int, int]:
        """(streams, messages, bytes of messages) stored."""
        streams, stored = self.db.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM streams"
        ).fetchone()
        (messages,) = self.db.execute("SELECT count(*) FROM messages").fetchone()
        return streams, messages, stored


def clear(path: Path, session: str | None = None) -> tuple[int, int]:
    """Delete the completed streams stored (of ``session``, or all): (how many were
    deleted, how many live ones were kept).

    Live streams are kept: a running daemon goes on writing them (and one
    cut off by a crash is completed at the next start), so they can be
    cleared once completed. Sessions' seq counters and the epoch are kept,
    so a running daemon's numbering goes on. Safe while a daemon writes:
    SQLite serialises writers, and the daemon counts what the file holds
    again before pruning.
    """
    connection = connect(path, readonly=False)
    try:
        connection.execute("BEGIN IMMEDIATE")
        where, params = "", tuple[str, ...]()
        if session is not None:
            where, params = " AND session_id = (SELECT id FROM sessions WHERE name = ?)", (session,)
        rows = connection.execute(
            "SELECT id, session_id, first_seq, final_seq FROM streams"
            f" WHERE ended IS NOT NULL{where}", params).fetchall()
        connection.executemany(
            "DELETE FROM messages WHERE key BETWEEN ? AND ? AND stream_id = ?",
            [(message_key(r[1], r[2]), message_key(r[1], r[3]), r[0]) for r in rows])
        connection.executemany("DELETE FROM streams WHERE id = ?", [(r[0],) for r in rows])
        (live,) = connection.execute(
            f"SELECT count(*) FROM streams WHERE ended IS NULL{where}", params).fetchone()
        connection.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot clear the history at {path}: {exc}") from None
    finally:
        connection.close()
    return len(rows), int(live)


def skip_numbers(db: sqlite3.Connection, skip: int) -> None:
    """Make every session's seq and stream count, and the floor of new sessions,
    skip ``skip`` numbers (in the caller's transaction): after a run that may
    have used numbers it did not store, so none names a second message or stream."""
    db.execute("UPDATE sessions SET seq = seq + ?, streams = streams + ?", (skip, skip))
    row = db.execute("SELECT value FROM meta WHERE key = 'seq_floor'").fetchone()
    floor = int(row[0]) if row else 0
    db.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (str(floor + skip),))


def prepare_state_dir(directory: Path, *, own: bool) -> None:
    """Create ``directory`` (and parents) mode 0700.

    ``own``: it is warpd's own directory (the default one), so an existing
    one with group or other permissions is tightened to 0700; a directory
    the user configured is left as it is (the file itself is 0600 anyway).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if own and directory.stat().st_mode & 0o077:
        os.chmod(directory, 0o700)


def open_private(path: Path, *, own_dir: bool) -> int:
    """Create or open the history file for the daemon, 0600 in a 0700 directory (see
    :func:`prepare_state_dir`), locked: a descriptor to keep open while the file is
    in use, and to close only after SQLite's connections (closing any descriptor
    of a file drops the process's POSIX locks on it, SQLite's included).

    StoreError if it cannot be created, another user could reach it, or
    another daemon has it.
    """
    try:
        prepare_state_dir(path.parent, own=own_dir)
        _check_directories(path)
        # Created 0600 before SQLite opens it; SQLite gives its -wal and
        # -shm files the database file's mode.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the history file {path}: "
                         f"{exc.strerror or exc}") from None
    try:
        _check_file(path, fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"the history file {path} is in use by another warpd daemon (each "
            "daemon needs its own: set [history] path, or XDG_STATE_HOME)") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_directories(path: Path) -> None:
    """StoreError if another user can write to the directory holding ``path`` (or the
    one its symlink leads to): they could plant the file, or give SQLite a -wal or
    -shm file of theirs and read every message written to it."""
    for directory in {path.parent, Path(os.path.realpath(path)).parent}:
        info = directory.stat()
        # Group-writable is fine for the user's own group (user private groups).
        group_writable = info.st_mode & 0o020 and info.st_gid != os.getegid()
        if info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o002 or group_writable:
            raise StoreError(f"cannot use the history file {path}: other users can write to "
                             f"{directory} (choose a directory only you can write to)")


def _check_file(path: Path, fd: int) -> None:
    """StoreError unless the file is a regular file of ours; made 0600 if it was looser."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise StoreError(f"cannot use the history file {path}: "
                         "not a regular file owned by this user")
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o600)
