"""History that survives: the history file with real daemons, `warpd log`/`show`, sessions kept.

Real ``warpd serve`` processes (restarted, SIGKILLed), real ``warpd push``,
``subscribe``, ``log`` and ``show`` processes, and raw WebSocket clients where
exact frames matter. Each daemon's file is in its test's directory
(``XDG_STATE_HOME`` is set by tests/daemon.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import unix_connect

from tests.daemon import Daemon
from tests.delivery import (
    CHAT_END,
    CHAT_START,
    FileSubscriber,
    PipedPush,
    chat_event,
    chat_pieces,
    is_final,
    raw_subscribe,
    read_until,
    rss_kib,
    status,
    wait_for_subscribers,
)


def _file(workdir: Path) -> Path:
    return workdir / "state" / "warpd" / "history.sqlite3"


def _log(daemon: Daemon, *args: str) -> list[dict[str, Any]]:
    out = daemon.run("log", "--json", *args, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def _stream(n: int, pieces: int = 3) -> bytes:
    return CHAT_START + b"".join(chat_pieces(pieces, size=30, start=n * 100)) + CHAT_END


def test_a_stream_survives_a_restart_in_log_and_show(short_tmp: Path) -> None:
    with Daemon(short_tmp) as first:
        sub = FileSubscriber(first, short_tmp / "sub.jsonl")
        try:
            wait_for_subscribers(first, 1)
            assert first.push(data=_stream(1)).returncode == 0
            sub.wait_final()
            final_before = sub.last_line()
            epoch = sub.messages()[0]["epoch"]
        finally:
            sub.close()
    assert stat.S_IMODE(_file(short_tmp).stat().st_mode) == 0o600
    assert stat.S_IMODE(_file(short_tmp).parent.stat().st_mode) == 0o700
    with Daemon(short_tmp) as second:
        (row,) = _log(second)
        assert row["stream"] == "default/1" and row["outcome"] == "stop"
        assert row["model"] == "gpt-big" and row["text"].startswith("[000100]")
        shown = second.run("show", "default/1", "--output", "jsonl", check=True).stdout
        # The same message (warpd subscribe adds its own "received" stamp).
        last = json.loads(shown.splitlines()[-1])
        before = json.loads(final_before)
        before.pop("received", None)
        assert last == before
        whole = before["blocks"][0]["text"]
        markdown = second.run("show", "default/1", "--output", "markdown", check=True).stdout
        assert markdown.decode() == whole + "\n"
        text = second.run("show", "default/1", "--output", "text", check=True).stdout.decode()
        assert "default/1" in text and "[000102]" in text and "\x1b" not in text
        missing = second.run("show", "default/9")
        assert missing.returncode == 1 and "no stream 'default/9'" in missing.stderr.decode()
        # warpd play takes a stored stream's id (piped: plain, at once).
        played = second.run("play", "default/1", check=True).stdout.decode()
        assert "[000100]" in played and "[000102]" in played and "\x1b" not in played
        assert second.run("play", "default/9").returncode == 1
        # Seq numbers and stream ids go on under the same epoch.
        assert second.push(data=_stream(2)).returncode == 0
        rows = status(second)
        assert rows["epoch"] == epoch
        (session,) = rows["sessions"]
        assert session["streams_started"] == 2
        shown_status = second.run("status", check=True).stdout.decode()
        assert "kept: 1 session(s), 0 in use" in shown_status
        assert f"history file {_file(short_tmp)}" in shown_status
        text = second.run("log", check=True).stdout.decode()
    lines = text.splitlines()
    assert len(lines) == 2 and "default/1" in lines[0] and "default/2" in lines[1]
    assert "gpt-big" in lines[0] and " done " in lines[0]
    # Without a daemon, the file is still read.
    assert len(_log(second)) == 2


def test_resume_with_since_across_a_restart_gets_exactly_the_later_messages(
    short_tmp: Path,
) -> None:
    with Daemon(short_tmp) as first:
        sub = FileSubscriber(first, short_tmp / "sub.jsonl")
        try:
            wait_for_subscribers(first, 1)
            assert first.push(data=_stream(1, pieces=6)).returncode == 0
            sub.wait_final()
            seen = sub.messages()
        finally:
            sub.close()
    epoch = seen[0]["epoch"]
    blocks = [m for m in seen if m["type"] == "blocks"]
    since = blocks[2]["seq"]

    async def resume(daemon: Daemon) -> list[dict[str, Any]]:
        ws = await raw_subscribe(daemon, f"session=default&epoch={epoch}&since=default:{since}")
        try:
            return await read_until(ws, is_final)
        finally:
            await ws.close()

    with Daemon(short_tmp) as second:
        got = asyncio.run(resume(second))
    hello, *later = got
    assert hello["epoch"] == epoch and "resume_failed" not in hello
    assert later == blocks[3:]


def test_a_stream_cut_by_sigkill_is_completed_as_aborted_at_the_next_start(
    short_tmp: Path,
) -> None:
    first = Daemon(short_tmp)
    push = PipedPush(first)
    written: list[tuple[float, int]] = []
    try:
        push.write(CHAT_START)
        for n in range(30):
            push.write(chat_event(content=f"<{n}>"))
            written.append((time.monotonic(), n))
            time.sleep(0.1)
        first.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first.process.wait()
    finally:
        push.kill()
        first.stop()
    with Daemon(short_tmp) as second:
        sub = FileSubscriber(second, short_tmp / "sub.jsonl", "--replay", "1")
        try:
            sub.wait_final()
            replayed = [m for m in sub.messages() if is_final(m)]
        finally:
            sub.close()
        (row,) = _log(second)
        shown = second.run("show", "default/1", "--output", "jsonl", check=True).stdout
        assert "completed 1 stream(s) as aborted" in second.log()
    assert row["outcome"] == "aborted: the daemon stopped"
    final = json.loads(shown.splitlines()[-1])
    assert final["aborted"] and final["abort_reason"] == "the daemon stopped"
    assert replayed == [final]
    text = final["blocks"][0]["text"]
    # Everything written up to a second before the kill reached the file.
    for at, n in written:
        if at < killed - 1.0:
            assert f"<{n}>" in text, (n, text)


def test_the_file_is_pruned_by_size_and_by_age(short_tmp: Path) -> None:
    config = "[history]\ndisk_bytes = 20000\n"
    with Daemon(short_tmp, config=config) as daemon:
        for n in range(12):
            assert daemon.push(data=_stream(n, pieces=8)).returncode == 0
        time.sleep(0.3)  # a commit, then the prune after it
        rows = _log(daemon, "-n", "0")
    assert 0 < len(rows) < 12
    assert sum(r["bytes"] for r in rows) <= 20000
    assert [r["stream"] for r in rows] == [f"default/{n}" for n in range(13 - len(rows), 13)]
    time.sleep(1.1)
    with Daemon(short_tmp, config="[history]\nmax_age = 1.0\n") as daemon:
        assert _log(daemon) == []


def test_a_corrupt_file_means_memory_only_said_clearly(short_tmp: Path) -> None:
    path = _file(short_tmp)
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_bytes(b"garbage " * 1000)
    with Daemon(short_tmp) as daemon:
        assert daemon.push(data=_stream(1)).returncode == 0
        history = status(daemon)["history"]
        log = daemon.log()
    assert "not a database" in history["store_error"] and history["store"] is None
    assert f"cannot use the history file {path}" in log
    assert "running with history in memory only" in log
    assert path.read_bytes() == b"garbage " * 1000


def test_an_unusable_directory_means_memory_only_said_clearly(short_tmp: Path) -> None:
    (short_tmp / "state").write_text("a file where the directory should be")
    with Daemon(short_tmp) as daemon:
        assert daemon.push(data=_stream(1)).returncode == 0
        log = daemon.log()
    assert "cannot create the history file" in log and "memory only" in log


def test_persist_false_writes_nothing(short_tmp: Path) -> None:
    with Daemon(short_tmp, config="[history]\npersist = false\n") as daemon:
        assert daemon.push(data=_stream(1)).returncode == 0
        assert status(daemon)["history"]["store"] is None
        result = daemon.run("log")
    assert not (short_tmp / "state").exists()
    assert result.returncode == 1 and "no history at" in result.stderr.decode()


def test_log_clear_asks_then_deletes(short_tmp: Path) -> None:
    with Daemon(short_tmp) as daemon:
        for n, session in enumerate(["a", "b", "a"]):
            assert daemon.push(data=_stream(n), session=session).returncode == 0
        time.sleep(0.3)
        refused = daemon.run("log", "--clear")
        assert refused.returncode == 1 and "confirm with --yes" in refused.stderr.decode()
        cleared = daemon.run("log", "--clear", "--session", "a", "--yes", check=True)
        assert "deleted 2 stream(s)" in cleared.stderr.decode()
        assert [r["stream"] for r in _log(daemon)] == ["b/1"]
        # The daemon goes on numbering where it was.
        assert daemon.push(data=_stream(9), session="a").returncode == 0
        time.sleep(0.3)
        assert [r["stream"] for r in _log(daemon)] == ["b/1", "a/3"]


# -- sessions kept (issue 15) ---------------------------------------------------------


async def _push_raw(daemon: Daemon, session: str) -> dict[str, Any]:
    """One short stream pushed over a raw connection; the daemon's ``end`` reply."""
    async with unix_connect(str(daemon.socket),
                            uri=f"ws://localhost/push?session={session}") as ws:
        await ws.send(CHAT_START[6:-2])
        await ws.send(chat_event(content="hi")[6:-2])
        await ws.send(b"[DONE]")
        await ws.send(b'{"warpd": "end"}')
        while True:
            reply: dict[str, Any] = msgspec.json.decode(await ws.recv(decode=False))
            if reply["type"] in ("end", "error"):
                return reply


def test_idle_session_names_do_not_fill_the_session_limit(short_tmp: Path) -> None:
    async def scenario(daemon: Daemon) -> list[dict[str, Any]]:
        # 600 names (in two requests: one would pass the handshake's 8 KiB),
        # held together, then left.
        held = []
        for part in range(2):
            names = "&".join(f"session=i{n}" for n in range(300 * part, 300 * part + 300))
            held.append(await raw_subscribe(daemon, names))
            await held[-1].recv()
        for ws in held:
            await ws.close()
        return [await _push_raw(daemon, f"run{n}") for n in range(1000)]

    with Daemon(short_tmp) as daemon:
        replies = asyncio.run(scenario(daemon))
        history = status(daemon)["history"]
    assert [r["type"] for r in replies] == ["end"] * 1000
    assert history["sessions"] <= history["max_sessions"] == 1000
    assert history["sessions_in_use"] == 0


def test_kept_history_costs_what_status_says(short_tmp: Path) -> None:
    """RSS growth while history fills, over what status reports as history: ≤ 1.3."""
    budget = 16 * 1024 * 1024
    config = (f"[history]\npersist = false\nmessages = 1000000\nbytes = {budget}\n"
              f"total_bytes = {budget}\n")

    async def fill(daemon: Daemon, sessions: range, events: int) -> None:
        for n in sessions:
            async with unix_connect(str(daemon.socket),
                                    uri=f"ws://localhost/push?session=s{n}") as ws:
                await ws.send(CHAT_START[6:-2])
                for i in range(events):
                    # Token-sized fragments, as most providers send them.
                    await ws.send(chat_event(content=f" tok{i % 97}")[6:-2])
                await ws.send(b"[DONE]")
                await ws.send(b'{"warpd": "end"}')
                while msgspec.json.decode(await ws.recv(decode=False))["type"] != "end":
                    pass

    with Daemon(short_tmp, config=config) as daemon:
        asyncio.run(fill(daemon, range(1), 2000))
        before = rss_kib(daemon.process.pid)
        held_before = status(daemon)["history"]["bytes"]
        asyncio.run(fill(daemon, range(1, 9), 8000))
        after = rss_kib(daemon.process.pid)
        held = status(daemon)["history"]["bytes"]
    grown = (after - before) * 1024
    accounted = held - held_before
    assert accounted > budget // 2
    ratio = grown / accounted
    print(f"RSS grew {grown} bytes for {accounted} bytes of accounted history: {ratio:.2f}")
    assert ratio <= 1.3


def test_the_file_holds_block_messages_as_published(short_tmp: Path) -> None:
    async def published(daemon: Daemon) -> list[bytes]:
        ws = await raw_subscribe(daemon)
        await ws.recv()  # hello
        pushed = asyncio.create_task(asyncio.to_thread(daemon.push, data=_stream(1)))
        frames = []
        while True:
            frame = await ws.recv(decode=False)
            frames.append(frame)
            if is_final(msgspec.json.decode(frame)):
                break
        assert (await pushed).returncode == 0
        await ws.close()
        return frames

    with Daemon(short_tmp) as daemon:
        frames = asyncio.run(published(daemon))
    db = sqlite3.connect(f"file:{_file(short_tmp)}?mode=ro", uri=True)
    stored = [bytes(data) for (data,) in db.execute("SELECT data FROM messages ORDER BY key")]
    db.close()
    # Byte for byte what a subscriber receives.
    assert stored == frames


# -- one daemon per file, numbers after a crash, clearing while writing --------------------


def test_a_second_daemon_on_the_same_file_leaves_it_alone(short_tmp: Path) -> None:
    # Another daemon on another socket, its [history] path naming the first one's file
    # (or a second `warpd serve` on the same socket, refused only after opening it).
    first = Daemon(short_tmp)
    push = PipedPush(first)
    try:
        push.write(CHAT_START + chat_event(content="<live>"))
        time.sleep(0.3)  # committed: the stream is in the file, not yet ended
        other = short_tmp / "other"
        other.mkdir()
        config = f'[history]\npath = "{_file(short_tmp)}"\n'
        with Daemon(other, config=config) as second:
            assert second.push(data=_stream(1), session="second").returncode == 0
            history = status(second)["history"]
            log = second.log()
        assert history["store"] is None and "in use by another warpd" in history["store_error"]
        assert "memory only" in log and "as aborted" not in log
        push.write(CHAT_END)
        assert push.finish()[0] == 0
    finally:
        push.kill()
        first.stop()
    with Daemon(short_tmp) as again:
        (row,) = _log(again)
    assert row["stream"] == "default/1" and row["outcome"] == "stop"


def test_numbers_used_after_the_last_commit_are_not_used_again_after_a_crash(
    short_tmp: Path,
) -> None:
    first = Daemon(short_tmp)
    sub = FileSubscriber(first, short_tmp / "sub.jsonl")
    try:
        wait_for_subscribers(first, 1)
        assert first.push(data=_stream(1)).returncode == 0
        time.sleep(0.3)
        # Another connection holds the write lock: the daemon's writer cannot
        # commit what comes next (a commit cut short by the kill, made sure of).
        blocker = sqlite3.connect(_file(short_tmp), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        assert first.push(data=_stream(2)).returncode == 0
        sub.wait_final(2)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        blocker.execute("ROLLBACK")
        blocker.close()
        lost = [m for m in sub.messages() if m["type"] == "blocks"][-1]
    finally:
        sub.close()
        first.stop()
    assert lost["stream"] == "default/2"
    with Daemon(short_tmp) as second:
        sub = FileSubscriber(second, short_tmp / "sub2.jsonl")
        try:
            wait_for_subscribers(second, 1)
            assert second.push(data=_stream(3)).returncode == 0
            sub.wait_final()
            after = [m for m in sub.messages() if m["type"] == "blocks"]
        finally:
            sub.close()
    # Neither the stream id nor any seq of the lost stream names a new message.
    assert all(m["stream"] != "default/2" and m["seq"] > lost["seq"] for m in after)


def test_log_clear_while_the_daemon_writes(short_tmp: Path) -> None:
    with Daemon(short_tmp, config="[history]\ndisk_bytes = 30000\n") as daemon:
        for n in range(4):
            assert daemon.push(data=_stream(n, pieces=12)).returncode == 0
        time.sleep(0.3)
        stored = sum(r["bytes"] for r in _log(daemon))
        assert 15000 < stored < 30000
        live = PipedPush(daemon, "--session", "live")
        try:
            live.write(CHAT_START + chat_event(content="<before>"))
            time.sleep(0.3)
            cleared = daemon.run("log", "--clear", "--yes", check=True).stderr.decode()
            assert "deleted 4 stream(s)" in cleared and "1 live stream(s) kept" in cleared
            live.write(chat_event(content="<after>") + CHAT_END)
            assert live.finish()[0] == 0
        finally:
            live.kill()
        # As much again: within disk_bytes, so nothing is pruned.
        for n in range(4, 8):
            assert daemon.push(data=_stream(n, pieces=12)).returncode == 0
        time.sleep(0.3)
        rows = _log(daemon)
    assert [r["stream"] for r in rows] == ["live/1"] + [f"default/{n}" for n in range(5, 9)]
    assert "<before>" in rows[0]["text"] and "<after>" in rows[0]["text"]
    db = sqlite3.connect(f"file:{_file(short_tmp)}?mode=ro", uri=True)
    (orphans,) = db.execute("SELECT count(*) FROM messages WHERE stream_id NOT IN"
                            " (SELECT id FROM streams)").fetchone()
    db.close()
    assert orphans == 0


def test_show_gives_the_streams_own_duration(short_tmp: Path) -> None:
    with Daemon(short_tmp) as daemon:
        assert daemon.push(data=_stream(1)).returncode == 0
        time.sleep(2.0)
        text = daemon.run("show", "default/1", "--output", "text", check=True).stdout.decode()
    # The stream took well under a second (a duration under 0.1 s is not
    # shown at all); measured from now, it would say 2 s.
    durations = re.findall(r"([0-9]+\.[0-9])s ─", text)
    assert len(durations) <= 1 and all(float(s) < 1.0 for s in durations), text


def test_log_options_at_their_limits(short_tmp: Path) -> None:
    with Daemon(short_tmp) as daemon:
        assert daemon.push(None, "--format", "text", data="\u00c9lan vital\n".encode(),
                           session="u").returncode == 0
        live = PipedPush(daemon, "--session", "live")
        try:
            live.write(CHAT_START + chat_event(content="<live>"))
            time.sleep(0.3)
            rows = _log(daemon, "-n", "9" * 30)
            matched = _log(daemon, "--grep", "\u00c9lan")
        finally:
            live.kill()
    assert [r["stream"] for r in rows] == ["u/1", "live/1"]
    # Every field is there, live or not.
    assert rows[1]["outcome"] == "live" and rows[1]["ended"] is None
    assert [r["stream"] for r in matched] == ["u/1"]


def test_show_of_a_live_stream_says_it_goes_on(daemon: Daemon) -> None:
    push = PipedPush(daemon)
    try:
        push.write(CHAT_START + b"".join(chat_pieces(3, size=30)))
        # Stored within 100 ms of being published.
        deadline = time.monotonic() + 5
        while not daemon.run("show", "default/1").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        shown = daemon.run("show", "default/1", "--output", "text", check=True).stdout.decode()
    finally:
        push.kill()
    # What was stored so far, then a note in show's words (not "the subscriber stopped").
    assert shown.strip().splitlines()[-1] == "(still streaming: stored up to here)", shown
