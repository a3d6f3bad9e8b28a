"""End to end: a real ``warpd subscribe`` in a tmux pane against a real daemon.

tmux is the terminal here: what the test reads back is what a user would see
(``tmux capture-pane``), scrollback included.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_UNIT, case_file
from tests.daemon import Daemon
from tests.test_openai_chat import PARALLEL_TOOLS

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (apt-get install tmux): it is the terminal here"
)

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# A stream's last rule (its header says "── SESSION/N · …").
FOOTER = re.compile(r"^── (?!\S+/\d+ · ).*─$")


class TmuxPane:
    """A detached tmux session of its own (private socket) running one command."""

    def __init__(self, workdir: Path, command: list[str], width: int, height: int) -> None:
        assert TMUX is not None
        self._base = [TMUX, "-S", str(workdir / "tmux.sock"), "-f", "/dev/null"]
        # The shell line keeps the pane open after the command exits, showing its status.
        line = f"{shlex.join(command)}; echo \"[exit $?]\"; sleep 600"
        self.tmux("new-session", "-d", "-s", "w", "-x", str(width), "-y", str(height), line)
        self.tmux("set-option", "-t", "w", "history-limit", "10000")

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            [*self._base, *args], capture_output=True, timeout=2 * TIMEOUT_UNIT, check=True
        )
        return result.stdout.decode()

    def lines(self) -> list[str]:
        """Scrollback and screen, trailing blank lines dropped."""
        text = self.tmux("capture-pane", "-p", "-t", "w", "-S", "-", "-E", "-")
        lines = [line.rstrip() for line in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def wait_for(self, what: str, ok: Callable[[list[str]], bool]) -> list[str]:
        deadline = time.monotonic() + 4 * TIMEOUT_UNIT
        while time.monotonic() < deadline:
            lines = self.lines()
            if ok(lines):
                return lines
            time.sleep(0.05)
        raise AssertionError(f"tmux pane never showed {what}:\n" + "\n".join(self.lines()))

    def kill(self) -> None:
        subprocess.run([*self._base, "kill-server"], capture_output=True, timeout=TIMEOUT_UNIT)


def wait_for_subscriber(daemon: Daemon) -> None:
    deadline = time.monotonic() + 4 * TIMEOUT_UNIT
    while time.monotonic() < deadline:
        status = json.loads(daemon.run("status", "--json", check=True).stdout)
        if any(row["subscribers"] for row in status["sessions"]):
            return
        time.sleep(0.05)
    raise AssertionError("warpd subscribe never subscribed")


def footers(lines: list[str]) -> list[str]:
    return [line for line in lines if FOOTER.match(line)]


def test_subscribe_renders_live_blocks_in_a_terminal(daemon: Daemon, short_tmp: Path) -> None:
    command = [
        "env",
        f"WARPD_ADDR={daemon.address}",
        "NO_COLOR=1",
        sys.executable,
        "-m",
        "warpd",
        "subscribe",
    ]
    pane = TmuxPane(short_tmp, command, 80, 24)
    try:
        wait_for_subscriber(daemon)
        assert daemon.push(data=PARALLEL_TOOLS).returncode == 0
        lines = pane.wait_for("the stream's footer", lambda ls: len(footers(ls)) == 1)
        text = "\n".join(lines)
        # The screen was empty: the first line is the stream's header (a tail
        # erased with "clear screen" would have left copies in the scrollback).
        assert lines[0].startswith("── default/1 · gpt-test"), "\n".join(lines)
        assert "⚙ get_weather call_a\n{\n  \"city\": \"Paris\"\n}" in text
        assert "⚙ get_time call_b" in text
        assert footers(lines)[0].startswith("── tool calls ──")
        # The status line is gone once the stream is complete, and nothing is doubled.
        assert not any(ch in text for ch in SPINNER)
        assert text.count("get_weather") == 1

        # A narrower terminal: SIGWINCH, and the next stream wraps at the new width.
        pane.tmux("resize-window", "-t", "w", "-x", "40", "-y", "20")
        time.sleep(0.2)
        words = " ".join(f"word{n}" for n in range(60))
        assert daemon.push(None, "--format", "text", data=words.encode()).returncode == 0
        lines = pane.wait_for("a second footer", lambda ls: len(footers(ls)) == 2)
        start = next(i for i, line in enumerate(lines) if line.startswith("── default/2"))
        body = lines[start + 1 : lines.index(footers(lines)[1])]
        assert body and all(len(line) <= 40 for line in body)
        assert " ".join(body).split() == words.split()

        pane.tmux("send-keys", "-t", "w", "C-c")
        lines = pane.wait_for("the exit status", lambda ls: any("[exit " in x for x in ls))
        # Ctrl-C: the subscriber leaves cleanly (130, as for any interrupted command).
        assert lines[-1].endswith("[exit 130]"), "\n".join(lines[-8:])
    finally:
        pane.kill()


def test_code_in_a_terminal_is_highlighted_and_never_cut(daemon: Daemon, short_tmp: Path) -> None:
    """tmux is the terminal: ``capture-pane -J`` joins what it soft-wrapped, so a code
    line wider than the pane comes back whole, and ``-e`` shows its colours."""
    path = case_file("render/coding_answer.jsonl")
    command = [
        "env", "-u", "NO_COLOR", f"WARPD_ADDR={daemon.address}", "TERM=tmux-256color",
        sys.executable, "-m", "warpd", "subscribe",
    ]
    pane = TmuxPane(short_tmp, command, 60, 30)
    try:
        wait_for_subscriber(daemon)
        assert daemon.push(path).returncode == 0
        pane.wait_for("the stream's footer", lambda ls: len(footers(ls)) == 1)
        joined = pane.tmux("capture-pane", "-p", "-J", "-t", "w", "-S", "-", "-E", "-")
        long_line = (
            "                self._timer.cancel()  # a newer event arrived, "
            "so restart the countdown from zero again"
        )
        assert long_line in joined.split("\n")
        rows = pane.lines()
        assert long_line not in rows and long_line[:60] in rows
        coloured = pane.tmux("capture-pane", "-p", "-e", "-t", "w", "-S", "-", "-E", "-")
        python = coloured[coloured.index("```python") : coloured.index("```bash")]
        assert len(set(re.findall(r"\x1b\[[0-9;]*38;5;(\d+)", python))) >= 4
    finally:
        pane.kill()


# Devanagari with its spacing vowel signs (ि, ा: category Mc, zero-width to
# wcwidth, one cell in tmux, glibc, xterm and VTE), and the Hangul filler
# U+3164 (zero-width to wcwidth, two cells there).
HINDI = (
    "नमस्ते दुनिया! यह एक परीक्षण है। हिन्दी में लिखा गया लंबा अनुच्छेद जो कई "
    "पंक्तियों में लपेटा जाएगा ताकि हम देख सकें कि टर्मिनल पर क्या होता है।"
)
FILLERS = " ".join(["word " + "\u3164" * 10] * 5)


@pytest.mark.parametrize("text", [HINDI, FILLERS], ids=["devanagari", "hangul-filler"])
def test_characters_terminals_draw_wider_than_wcwidth_leave_no_copies_of_the_tail(
    daemon: Daemon, short_tmp: Path, text: str
) -> None:
    """The live tail is erased by counting its rows: a character the terminal draws
    wider than the renderer counted makes a tail row wrap, and every repaint then
    leaves a copy of the tail's top in the scrollback."""
    chunk = '{"choices": [{"index": 0, "delta": {"content": %s}, "finish_reason": %s}]}'
    events = [chunk % (json.dumps(text[i : i + 3]), "null") for i in range(0, len(text), 3)]
    events.append(chunk % ('""', '"stop"'))
    path = short_tmp / "answer.sse"
    path.write_text("".join(f"data: {event}\n\n" for event in events) + "data: [DONE]\n\n")
    command = ["env", *(f"{k}={v}" for k, v in daemon.env.items() if k.startswith("XDG_")),
               sys.executable, "-m", "warpd", "play", "--speed", "3", str(path)]
    pane = TmuxPane(short_tmp, command, 60, 20)
    try:
        lines = pane.wait_for("the exit status", lambda ls: any("[exit " in x for x in ls))
        assert lines[-1].endswith("[exit 0]"), "\n".join(lines)
        body = lines[1 : lines.index(footers(lines)[0])]
        assert "".join(body).replace(" ", "") == text.replace(" ", ""), "\n".join(lines)
    finally:
        pane.kill()
