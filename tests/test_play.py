"""`warpd play` shows a recording as a live `warpd subscribe` showed it; `warpd demo` pushes.

The live side is real: a daemon, `warpd push` of an example, a pretty
`warpd subscribe` on a pseudo-terminal, and a `warpd subscribe --output jsonl`
capture beside it. Both screens are read back through a VT100 emulator.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, TIMEOUT_UNIT, Daemon, warpd_command
from tests.delivery import FileSubscriber, is_final, wait_for, wait_for_subscribers
from tests.pty_process import PtyProcess
from tests.vt import Terminal
from warpd.examples import EXAMPLES, read_example
from warpd.recording import UpstreamEvents

WIDTH, HEIGHT = 80, 24
EXAMPLES_DIR = ROOT / "warpd" / "examples"
# What depends on when a stream was shown: its start time, its duration (shown
# only when it means something: a stream pushed at once has none, its replay
# at the recording's pace may), and the length of the rule that follows them.
_CLOCK = re.compile(r"\b\d\d:\d\d:\d\d\b")
_DURATION = re.compile(r"( · )?\b(\d+\.\ds|\d+m\d\ds)\b")
_RULE_END = re.compile(r" ─+$")


def screen(output: bytes) -> list[str]:
    """Scrollback and screen after ``output``, with times and durations blanked."""
    term = Terminal(WIDTH, HEIGHT)
    term.feed(output)
    return [
        _RULE_END.sub("", _DURATION.sub("", _CLOCK.sub("HH:MM:SS", line)))
        for line in term.lines()
    ]


def play(daemon: Daemon, path: Path, *args: str) -> tuple[list[str], float]:
    """The screen after `warpd play PATH` on a terminal, and how long it took."""
    started = time.monotonic()
    player = PtyProcess(warpd_command("play", str(path), *args), daemon.env, WIDTH, HEIGHT)
    assert player.wait() == 0, player.output[-500:]
    return screen(player.output), time.monotonic() - started


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_play_shows_what_the_live_subscriber_showed(
    daemon: Daemon, short_tmp: Path, name: str
) -> None:
    live = PtyProcess(warpd_command("subscribe", "--once"), daemon.env, WIDTH, HEIGHT)
    capture = FileSubscriber(daemon, short_tmp / "capture.jsonl")
    try:
        wait_for_subscribers(daemon, 2)
        assert daemon.push(EXAMPLES_DIR / name).returncode == 0
        capture.wait_final()
        assert live.wait() == 0
    finally:
        live.close()
        capture.close()
    live_screen = screen(live.output)
    assert live_screen[0].startswith("── default/1"), live_screen
    assert not any("waiting for streams" in line for line in live_screen)

    # The upstream recording, as pushed.
    played, _ = play(daemon, EXAMPLES_DIR / name, "--speed", "20")
    assert played == live_screen
    # The capture, receive times and all.
    played, _ = play(daemon, capture.path, "--speed", "20")
    assert played == live_screen


def test_play_keeps_the_recorded_pace(daemon: Daemon) -> None:
    """The Ollama example is stamped (created_at): playing it takes its recorded time."""
    events = UpstreamEvents().feed(read_example("ollama_chat.ndjson"))
    times = [t for t, _ in events if t is not None]
    recorded = times[-1] - times[0]
    assert recorded > 1.5
    _, took = play(daemon, EXAMPLES_DIR / "ollama_chat.ndjson", "--speed", "4")
    assert took >= 0.9 * recorded / 4


def test_play_to_a_pipe_is_plain_text_at_once(daemon: Daemon) -> None:
    started = time.monotonic()
    result = daemon.run("play", str(EXAMPLES_DIR / "ollama_chat.ndjson"), check=True)
    assert time.monotonic() - started < 2 * TIMEOUT_UNIT
    text = result.stdout.decode()
    assert "\x1b" not in text
    assert "3. At Lyon it is joined by the Saône." in text


@pytest.mark.parametrize(
    ("data", "args", "message"),
    [
        (b"", (), "warpd play: no stream in the input"),
        (b'{"type": "hello", "epoch": "e", "sessions": []}\n{oops\n', (),
         "warpd play: line 2: not a warpd message"),
    ],
)
def test_play_errors_are_one_line(
    daemon: Daemon, data: bytes, args: tuple[str, ...], message: str
) -> None:
    result = daemon.run("play", *args, data=data)
    assert result.returncode == 1
    assert result.stderr.decode().startswith(message), result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1


def test_play_of_a_stream_with_a_bad_event_shows_it_as_convert_does(daemon: Daemon) -> None:
    """An irregular event is skipped and shown as an input error block, as a daemon
    would; the stream goes on (status 0). Input where every event was irregular has
    no stream in it: shown, then said on stderr, status 1 — as push and convert."""
    good = (b'data: {"choices":[{"index":0,"delta":{"content":"Hello"},'
            b'"finish_reason":null}]}\n\n')
    result = daemon.run("play", data=good + b"data: {oops\n\n")
    assert result.returncode == 0, result
    out = result.stdout.decode()
    assert "Hello" in out and "input error (invalid-json)" in out, out
    for run in (daemon.run("play", data=b'{"foo": 1}\n'),
                daemon.run("convert", data=b'{"foo": 1}\n')):
        assert run.returncode == 1, run
        last = run.stderr.decode().strip().splitlines()[-1]
        assert "no stream in the input: every event in it was irregular" in last, last
    shown = daemon.run("play", data=b'{"foo": 1}\n').stdout.decode()
    assert "input error (unknown-format)" in shown


def test_play_of_a_missing_file_says_so_even_with_a_slash(daemon: Daemon) -> None:
    """Only SESSION/N is taken for a stored stream's id; a mistyped path is a missing
    file, not a stream missing from the history file."""
    for path in ("recordings/answer.sse", "/no/such/capture.jsonl", "./x/1.txt"):
        result = daemon.run("play", path)
        assert result.returncode == 1
        assert result.stderr.decode().strip() == (
            f"warpd play: cannot read {path.removeprefix('./')}: No such file or directory"
        ), result.stderr
    result = daemon.run("play", "nosuch/7")
    assert result.returncode == 1
    assert result.stderr.decode().startswith("warpd play: no stream 'nosuch/7' in ")


def test_play_speed_must_be_positive(daemon: Daemon) -> None:
    result = daemon.run("play", str(EXAMPLES_DIR / "plain.txt"), "--speed", "0")
    assert result.returncode == 2
    assert "--speed: '0' is not a positive number" in result.stderr.decode()


def test_demo_pushes_every_example_to_the_session(daemon: Daemon, short_tmp: Path) -> None:
    capture = FileSubscriber(daemon, short_tmp / "demo.jsonl", "--session", "tour")
    try:
        wait_for_subscribers(daemon, 1)
        result = daemon.run("demo", "--session", "tour", "--speed", "20", check=True)
        wait_for(lambda: sum(map(is_final, capture.messages())) == len(EXAMPLES),
                 "every example's final message")
        finals = [m for m in capture.messages() if is_final(m)]
    finally:
        capture.close()
    assert [m["stream"] for m in finals] == [f"tour/{n}" for n in range(1, len(EXAMPLES) + 1)]
    assert not any(m.get("aborted") for m in finals)
    assert [m["model"] for m in finals[:3]] == [
        "gpt-4o-mini-2024-07-18", "claude-sonnet-4-5-20250929", "qwen3:4b"
    ]
    assert finals[3]["blocks"][0]["text"] == read_example("plain.txt").decode()
    err = result.stderr.decode()
    # It says how to watch, and the streams went out one piece at a time.
    assert "warpd subscribe --session tour" in err
    streaming = [m for m in capture.messages() if m["type"] == "blocks" and m["streaming"]]
    assert len(streaming) > 100


def test_demo_without_a_daemon_says_so(short_tmp: Path, daemon: Daemon) -> None:
    result = daemon.run("demo", "--connect", f"unix:{short_tmp}/none.sock")
    assert result.returncode == 3
    # Only the error: nothing is pushed, so nothing says it will be.
    (line,) = result.stderr.decode().splitlines()
    assert "no warpd daemon" in line and "warpd serve" in line


def test_a_capture_cut_off_mid_stream_plays_what_it_holds(daemon: Daemon, short_tmp: Path) -> None:
    # `warpd subscribe --output jsonl > capture.jsonl`, stopped with Ctrl-C
    # while the stream was still coming: what it holds is shown, status 0.
    capture = FileSubscriber(daemon, short_tmp / "capture.jsonl")
    try:
        wait_for_subscribers(daemon, 1)
        assert daemon.push(EXAMPLES_DIR / "ollama_chat.ndjson").returncode == 0
        capture.wait_final()
    finally:
        capture.close()
    cut = short_tmp / "cut.jsonl"
    cut.write_bytes(b"".join(capture.path.read_bytes().splitlines(keepends=True)[:20]))
    result = daemon.run("play", str(cut))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().strip().splitlines()
    assert lines[0].startswith("── default/1 · qwen3:4b") and lines[1] == "thinking"
    # Said in play's words, not a subscriber's.
    assert lines[-1] == "(still streaming when the playback stopped)"
