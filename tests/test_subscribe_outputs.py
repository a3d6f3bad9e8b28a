"""``warpd subscribe --output text`` and ``--notify``, as real processes against a real daemon.

Notifications need a terminal: the subscriber runs on a pseudo-terminal here,
and what it writes there is read back byte for byte.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_UNIT, case_file
from tests.daemon import Daemon, warpd_command
from tests.test_subscribe_pretty import wait_for_subscriber
from warpd.ingest.convert import convert
from warpd.protocol import BlocksMessage
from warpd.render.notify import Notifier, field, notification, notification_protocol

# Variables that say which terminal (or tmux) we are in: each test sets its own.
TERMINAL_VARS = (
    "TMUX", "TERM_PROGRAM", "TERM", "KITTY_WINDOW_ID", "ITERM_SESSION_ID", "LC_TERMINAL",
    "WEZTERM_PANE", "GHOSTTY_RESOURCES_DIR", "WARP_IS_LOCAL_SHELL_SESSION", "WARP_SESSION_ID",
)


def answer_of(path: Path) -> str:
    final = list(convert([path.read_bytes()]))[-1]
    return "".join(b.text or "" for b in final.blocks if b.type == "text")


def env_for(daemon: Daemon, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in daemon.env.items() if k not in TERMINAL_VARS}
    env.update(extra)
    return env


def test_output_text_is_the_answer_and_nothing_else(daemon: Daemon) -> None:
    path = case_file("render/coding_answer.jsonl")
    subscriber = subprocess.Popen(
        warpd_command("subscribe", "--output", "text", "--once"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(daemon),
    )
    try:
        wait_for_subscriber(daemon)
        assert daemon.push(path).returncode == 0
        out, err = subscriber.communicate(timeout=4 * TIMEOUT_UNIT)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.communicate()
    assert subscriber.returncode == 0, err
    text = answer_of(path)
    assert out.decode() == text + ("" if text.endswith("\n") else "\n")
    # Nothing else on stdout; on stderr only the subscriber's own waiting line.
    assert err.decode() == "warpd subscribe: waiting for streams on 'default'\n"


def run_on_a_terminal(daemon: Daemon, push: Path, *args: str, **env: str) -> bytes:
    """Run ``warpd subscribe ARGS --once`` on a pseudo-terminal while ``push`` is pushed;
    everything it wrote to the terminal."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        warpd_command("subscribe", *args, "--once"),
        stdin=secondary, stdout=secondary, stderr=secondary, env=env_for(daemon, **env),
    )
    os.close(secondary)
    written = bytearray()
    try:
        wait_for_subscriber(daemon)
        assert daemon.push(push).returncode == 0
        deadline = time.monotonic() + 4 * TIMEOUT_UNIT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.1)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # The terminal's other end closed.
                    data = b""
                if not data and process.poll() is not None:
                    break
                written += data
            elif process.poll() is not None:
                break
        assert process.wait(timeout=TIMEOUT_UNIT) == 0, bytes(written)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    return bytes(written)


def test_notify_in_warp_posts_osc_777(daemon: Daemon) -> None:
    path = case_file("render/coding_answer.jsonl")
    out = run_on_a_terminal(
        daemon, path, "--output", "text", "--notify", TERM_PROGRAM="WarpTerminal"
    )
    start = out.index(b"\x1b]777;notify;")
    sequence = out[start : out.index(b"\x07", start) + 1]
    _, _, title, body = sequence[2:-1].decode().split(";")
    assert title == "default: done"
    assert body.startswith("Sure! Here's how to debounce file-system events")
    assert len(body) <= 160
    # The answer itself, then the notification once it is complete.
    assert out.index(b"Ctrl-C") < start and out.count(b"\x1b]777;") == 1


def test_notify_inside_tmux_uses_the_passthrough(daemon: Daemon) -> None:
    path = case_file("render/coding_answer.jsonl")
    out = run_on_a_terminal(
        daemon, path, "--output", "text", "--notify",
        TERM_PROGRAM="WarpTerminal", TMUX="/tmp/tmux-1000/default,1234,0",
    )
    start = out.index(b"\x1bPtmux;\x1b\x1b]777;notify;default: done;")
    end = out.index(b"\x1b\\", start)
    inner = out[start + len(b"\x1bPtmux;") : end]
    # Every ESC inside is doubled; nothing else ends the passthrough early.
    assert inner.replace(b"\x1b\x1b", b"").count(b"\x1b") == 0
    assert inner.endswith(b"\x07")


def test_pretty_output_titles_the_window_and_notifies(daemon: Daemon) -> None:
    path = case_file("render/parallel_tool_calls.jsonl")
    out = run_on_a_terminal(daemon, path, "--notify", TERM="xterm-kitty")
    # The window title: the session, live while the stream is.
    live = out.index(b"\x1b]2;warpd \xc2\xb7 default \xc2\xb7 streaming\x1b\\")
    idle = out.index(b"\x1b]2;warpd \xc2\xb7 default\x1b\\", live)
    assert live < idle
    # kitty's OSC 99, title and body base64-encoded.
    assert b"\x1b]99;i=1:d=0:e=1;" in out and b"\x1b]99;i=1:d=1:e=1:p=body;" in out
    assert b"\xe2\x9a\x99 search_codebase" in out  # and the blocks, rendered


def test_notify_where_it_cannot_says_so_once(daemon: Daemon) -> None:
    process = subprocess.Popen(
        warpd_command("subscribe", "--output", "jsonl", "--notify", "--once"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env_for(daemon, TERM_PROGRAM="WarpTerminal"),
    )
    try:
        wait_for_subscriber(daemon)
        assert daemon.push(case_file("render/coding_answer.jsonl")).returncode == 0
        out, err = process.communicate(timeout=4 * TIMEOUT_UNIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert err.decode().count("--notify: neither stdout nor stderr is a terminal") == 1
    assert b"\x1b]777" not in out


# -- the notification sequences themselves -----------------------------------


@pytest.mark.parametrize(
    ("env", "protocol"),
    [
        ({"TERM_PROGRAM": "WarpTerminal"}, "osc777"),
        ({"TERM_PROGRAM": "iTerm.app"}, "osc9"),
        ({"TERM_PROGRAM": "WezTerm"}, "osc9"),
        ({"TERM_PROGRAM": "ghostty"}, "osc9"),
        ({"TERM": "xterm-kitty"}, "osc99"),
        ({"TERM": "foot-extra"}, "osc99"),
        ({"TERM_PROGRAM": "tmux", "TMUX": "x", "KITTY_WINDOW_ID": "1"}, "osc99"),
        ({"TERM_PROGRAM": "tmux", "TMUX": "x", "WARP_IS_LOCAL_SHELL_SESSION": "1"}, "osc777"),
        ({"TERM": "xterm-256color"}, None),
    ],
)
def test_the_terminal_is_recognised(env: dict[str, str], protocol: str | None) -> None:
    assert notification_protocol(env) == protocol


def test_untrusted_text_is_made_safe_for_a_notification() -> None:
    evil = "done\x1b]0;pwned\x07; rm -rf ~\n\u202egnp.exe" + "x" * 300
    cleaned = field(evil, 160)
    assert len(cleaned) == 160 and cleaned.endswith("…")
    assert not any(ch in cleaned for ch in "\x1b\x07;\n\u202e")
    for protocol in ("osc777", "osc9", "osc99"):
        sequence = notification(protocol, evil, evil, tmux=True)
        inner = sequence[len("\x1bPtmux;") : -2].replace("\x1b\x1b", "\x1b")
        # Only the sequence's own ESCs and terminators remain.
        assert inner.count("\x1b") == (4 if protocol == "osc99" else 1), repr(inner)
        assert "\u202e" not in inner and inner.count("\x07") == (0 if protocol == "osc99" else 1)


def final_message(text: str, *, aborted: bool = False) -> list[BlocksMessage]:
    from tests.test_render import assemble
    from warpd.ingest.deltas import ChoiceFinish, StreamEnd, TextDelta, UpstreamError

    events = [[TextDelta("t", "text", text)]]
    if aborted:
        events.append([UpstreamError("Overloaded; retry", code="overloaded")])
        events.append([StreamEnd(aborted=True, reason="provider error: Overloaded; retry")])
    else:
        events += [[ChoiceFinish(0, "max_tokens")], [StreamEnd()]]
    return assemble(events)


def test_only_streams_seen_live_are_notified() -> None:
    notifier = Notifier("osc777")
    messages = final_message("# Title\n\nThe **answer** is `42`.\n")
    # History (a replay): just the final message, never seen live.
    assert notifier.feed(messages[-1]) == ""
    for message in messages[:-1]:
        assert notifier.feed(message) == ""
    sequence = notifier.feed(messages[-1])
    assert sequence == (
        "\x1b]777;notify;default: cut off at the token limit;Title The answer is 42.\x07"
    )
    failed = final_message("partial", aborted=True)
    for message in failed[:-1]:
        notifier.feed(message)
    assert notifier.feed(failed[-1]) == "\x1b]777;notify;default: failed;Overloaded, retry\x07"
