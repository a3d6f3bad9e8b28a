"""The history file on its own: writer thread, reads, pruning, modes, bad files.

The daemon's use of it (restart, crash, resume, ``warpd log``) is tested with
real processes in test_history.py.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import msgspec
import pytest

from warpd.config import HistoryConfig
from warpd.daemon.history_store import HistoryStore, StreamEnd
from warpd.errors import StoreError
from warpd.history import HistoryReader, connect


def _message(session: str, stream: str, seq: int, text: str, final: bool = False) -> bytes:
    return msgspec.json.encode({
        "type": "blocks", "session": session, "stream": stream, "seq": seq,
        "streaming": not final, "complete": final,
        "blocks": [{"id": f"{stream}/0", "index": 0, "type": "text", "text": text,
                    "streaming": not final, "complete": final}],
    })


def _push(store: HistoryStore, session: str, number: int, seq: int, pieces: int,
          started: float | None = None, size: int = 10) -> int:
    """Record one stream of ``pieces`` messages and its final; the next seq."""
    stream = f"{session}/{number}"
    for _ in range(pieces):
        store.record(session, seq, number, stream, _message(session, stream, seq, "x" * size),
                     started, None)
        seq += 1
    end = StreamEnd("gpt-x", "stop", '{"total_tokens": 7}', f"answer {number}")
    store.record(session, seq, number, stream,
                 _message(session, stream, seq, "x" * size * pieces, final=True), started, end)
    return seq + 1


def _open(path: Path, **config: object) -> HistoryStore:
    return HistoryStore.open(path, HistoryConfig(**config), own_dir=True)  # type: ignore[arg-type]


def test_messages_survive_reopening_with_the_same_epoch(tmp_path: Path) -> None:
    path = tmp_path / "state" / "warpd" / "history.sqlite3"
    store = _open(path)
    epoch = store.epoch
    _push(store, "a", 1, 1, 3)
    store.record("a", 5, 2, "a/2", _message("a", "a/2", 5, "live"), None, None)
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    again = _open(path)
    try:
        assert again.epoch == epoch
        reader = again.reader
        assert reader.session_state("a") == (5, 2)
        (done, live) = reader.streams()
        assert (done.stream, done.outcome, done.model, done.text) == ("a/1", "stop", "gpt-x",
                                                                      "answer 1")
        assert done.usage == {"total_tokens": 7} and done.messages == 4 and done.ended
        assert live.stream == "a/2" and live.outcome == "live" and live.ended is None
        assert [seq for seq, _, _ in reader.stream_messages("a/1")] == [1, 2, 3, 4]
        assert reader.unfinished() == [("a", "a/2")]
        assert [seq for seq, _ in reader.messages_after("a", 1, 5, 10**6) or []] == [2, 3, 4]
        assert reader.messages_after("a", 0, 7, 10**6) is None  # 6 was never stored
        assert reader.messages_after("a", 0, 5, 50) is None  # over the byte bound
        assert [seq for seq, _ in reader.finals("a", 5, 100)] == [4]
    finally:
        again.close()


def test_log_filters_by_session_time_and_text(tmp_path: Path) -> None:
    store = _open(tmp_path / "h.sqlite3")
    seq = _push(store, "a", 1, 1, 1, started=1000.0)
    _push(store, "b", 1, 1, 1, started=2000.0)
    _push(store, "a", 2, seq, 1, size=3)
    store.close()
    reader = HistoryReader(connect(tmp_path / "h.sqlite3", readonly=True))
    assert [r.stream for r in reader.streams()] == ["a/1", "b/1", "a/2"]
    assert [r.stream for r in reader.streams(limit=2)] == ["b/1", "a/2"]
    assert [r.stream for r in reader.streams(session="a")] == ["a/1", "a/2"]
    assert [r.stream for r in reader.streams(since=1500.0)] == ["b/1", "a/2"]
    assert [r.stream for r in reader.streams(grep="XXXXXXXXXX")] == ["a/1", "b/1"]
    assert reader.streams(session="nobody") == []


def test_pruning_by_size_deletes_the_oldest_streams_first(tmp_path: Path) -> None:
    store = _open(tmp_path / "h.sqlite3", disk_bytes=20_000)
    seq = 1
    for number in range(1, 41):
        seq = _push(store, "s", number, seq, 4, size=200)
    store.close()
    reader = HistoryReader(connect(tmp_path / "h.sqlite3", readonly=True))
    kept = [r.stream for r in reader.streams(limit=0)]
    streams, messages, stored = reader.counts()
    assert stored <= 20_000 and 0 < streams < 40
    assert kept == [f"s/{n}" for n in range(41 - streams, 41)]
    assert messages == 5 * streams


def test_pruning_by_age_at_start(tmp_path: Path) -> None:
    store = _open(tmp_path / "h.sqlite3")
    seq = _push(store, "old", 1, 1, 2, started=time.time() - 1000)
    _push(store, "new", 1, 1, 2)
    store.close()
    store = _open(tmp_path / "h.sqlite3", max_age=500.0)
    store.close()
    reader = HistoryReader(connect(tmp_path / "h.sqlite3", readonly=True))
    assert [r.stream for r in reader.streams()] == ["new/1"]
    assert reader.counts()[1] == 3
    assert seq == 4


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database, " * 200)
    with pytest.raises(StoreError, match="cannot use the history file .*not a database"):
        _open(path)


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    # A file where the directory should be: unusable even for root (CI runs as root).
    (tmp_path / "blocked").write_text("")
    with pytest.raises(StoreError, match="cannot create the history file .*blocked"):
        HistoryStore.open(tmp_path / "blocked" / "h.sqlite3", HistoryConfig(), own_dir=False)


def test_reading_needs_no_running_writer(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = _open(path)
    _push(store, "a", 1, 1, 1)
    store.close()
    # The writer is gone and the WAL checkpointed: a reader opens the file alone.
    assert not Path(f"{path}-wal").exists()
    reader = HistoryReader(connect(path, readonly=True))
    assert [r.stream for r in reader.streams()] == ["a/1"]
    with pytest.raises(StoreError, match="no history at"):
        connect(tmp_path / "absent.sqlite3", readonly=True)


def test_a_file_others_could_reach_is_refused(tmp_path: Path) -> None:
    # A directory others can write to (like /tmp): they could plant the -wal file.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    shared.chmod(0o1777)
    with pytest.raises(StoreError, match="other users can write to .*shared"):
        HistoryStore.open(shared / "h.sqlite3", HistoryConfig(), own_dir=False)
    assert list(shared.iterdir()) == []
    # Reached through a symlink: the directory that counts is the file's own.
    (tmp_path / "mine").mkdir(mode=0o700)
    (tmp_path / "mine" / "h.sqlite3").symlink_to(shared / "h.sqlite3")
    with pytest.raises(StoreError, match="other users can write to"):
        HistoryStore.open(tmp_path / "mine" / "h.sqlite3", HistoryConfig(), own_dir=False)
    # A file of ours that others can read is made 0600.
    loose = tmp_path / "mine" / "loose.sqlite3"
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    HistoryStore.open(loose, HistoryConfig(), own_dir=False).close()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    path.touch(mode=0o666)
    try:
        os.chown(path, 12345, 12345)
    except PermissionError:
        pytest.skip("needs root to give a file to another user")
    with pytest.raises(StoreError, match="not a regular file owned by this user"):
        _open(path)


def test_a_path_with_uri_characters_is_the_file_used(tmp_path: Path) -> None:
    directory = tmp_path / "a#b?c%41"
    path = directory / "h.sqlite3"
    store = _open(path)
    _push(store, "a", 1, 1, 1)
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [directory.name]
    reader = HistoryReader(connect(path, readonly=True))
    assert [r.stream for r in reader.streams()] == ["a/1"]
    reader.db.close()


def test_grep_and_limit_at_their_edges(tmp_path: Path) -> None:
    store = _open(tmp_path / "h.sqlite3")
    store.record("u", 1, 1, "u/1", _message("u", "u/1", 1, "\u00c9lan vital", final=True), None,
                 StreamEnd(None, "stop", None, "\u00c9lan vital"))
    store.close()
    reader = HistoryReader(connect(tmp_path / "h.sqlite3", readonly=True))
    assert [r.stream for r in reader.streams(grep="\u00c9lan")] == ["u/1"]
    assert [r.stream for r in reader.streams(grep="VITAL")] == ["u/1"]
    # The answer is searched, not the message around it (field names, the session).
    for word in ("complete", "streaming", "blocks", "u/1", "stop"):
        assert reader.streams(grep=word) == [], word
    assert [r.stream for r in reader.streams(limit=10**30)] == ["u/1"]
    reader.db.close()


def test_only_a_file_left_open_makes_the_next_start_skip_numbers(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = _open(path)
    _push(store, "a", 1, 1, 1)
    store.close()
    store = _open(path)
    assert store.reader.session_state("a") == (2, 1) and store.seq_floor == 0
    # Never closed, as after SIGKILL (the lock goes with the descriptor).
    store._stop.set()
    store._thread.join()
    os.close(store._lock_fd)
    store = _open(path)
    try:
        assert store.reader.session_state("a") == (2 + 100_001, 1 + 100_001)
        assert store.seq_floor == 100_001
    finally:
        store.close()
