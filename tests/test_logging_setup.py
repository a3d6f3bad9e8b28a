"""The daemon's log: ``<N>`` priority prefixes for journald, no colours; peers' text escaped."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import msgspec

from tests.conftest import ROOT, TIMEOUT_UNIT
from tests.daemon import Daemon
from warpd.daemon.logs import running_under_systemd

CHILD = """
from loguru import logger
from warpd.daemon.logs import configure_logging
print(configure_logging("DEBUG"), flush=True)
logger.debug("debugging")
logger.bind(conn="c7").info("serving on {}", "unix:/run/x")
logger.warning("a warning\\nwith two lines")
try:
    1 / 0
except ZeroDivisionError:
    logger.exception("it failed")
"""


def run_child(tmp_path: Path, **extra_env: str) -> tuple[str, str]:
    """Run CHILD with stderr to a file; returns (stdout, stderr text)."""
    log = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
    env["PYTHONPATH"] = str(ROOT)
    with log.open("w") as stderr:
        info = os.fstat(stderr.fileno())
        env.update({k: v.format(dev=info.st_dev, ino=info.st_ino) for k, v in extra_env.items()})
        result = subprocess.run(
            [sys.executable, "-c", CHILD],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=TIMEOUT_UNIT,
            check=True,
        )
    return result.stdout.strip(), log.read_text()


def test_journal_stream_gets_priority_prefixes(tmp_path: Path) -> None:
    used_journal, text = run_child(tmp_path, JOURNAL_STREAM="{dev}:{ino}")
    assert used_journal == "True"
    lines = text.splitlines()
    assert lines[:4] == [
        "<7>[-] debugging",
        "<6>[c7] serving on unix:/run/x",
        "<4>[-] a warning\\nwith two lines",
        "<3>[-] it failed",
    ]
    # Every traceback line is its own journal entry at the error's priority.
    assert len(lines) > 5 and all(line.startswith("<3>") for line in lines[3:])
    assert "ZeroDivisionError" in lines[-1]
    assert "\x1b" not in text


def test_invocation_id_alone_means_systemd(tmp_path: Path) -> None:
    used_journal, text = run_child(tmp_path, INVOCATION_ID="0123456789abcdef")
    assert used_journal == "True"
    assert text.startswith("<7>[-] debugging\n")


def test_terminal_format_elsewhere(tmp_path: Path) -> None:
    # JOURNAL_STREAM inherited from a parent whose stderr was the journal: not ours.
    used_journal, text = run_child(tmp_path, JOURNAL_STREAM="1:2")
    assert used_journal == "False"
    first = text.splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} DEBUG +\[-\] debugging", first)
    assert "<6>" not in text
    # Not a terminal: no colours.
    assert "\x1b" not in text


def test_running_under_systemd_matches_the_stream(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert running_under_systemd(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        assert not running_under_systemd(stream, {"JOURNAL_STREAM": f"{info.st_dev}:1"})
        assert not running_under_systemd(stream, {})
        assert running_under_systemd(stream, {"INVOCATION_ID": "abc"})


# -- values from peers ----------------------------------------------------------------

# A Responses item whose type carries a newline and what looks like a log line
# of its own; the delta after it makes the decoder quote that type in an error.
FORGED_TYPE = "x\n2025-01-01 00:00:00.000 ERROR   [c9] forged line"
FORGING_STREAM = b"".join(
    b"data: " + msgspec.json.encode(event) + b"\n\n"
    for event in (
        {"type": "response.created", "response": {"id": "r", "model": "m"}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": FORGED_TYPE, "id": "i"}},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
         "delta": "hi"},
    )
)


def test_a_producer_cannot_forge_a_log_line(daemon: Daemon) -> None:
    # The forged item type makes the text delta irregular: a warning, logged.
    result = daemon.push(None, "--format", "openai-responses", data=FORGING_STREAM)
    assert result.returncode == 5  # no response.completed: the stream was cut
    daemon.wait_for_log("input warning")
    lines = [line for line in daemon.log().splitlines() if "forged line" in line]
    assert len(lines) == 1, daemon.log()
    assert "input warning, frame 3" in lines[0]
    assert "a x\\n2025-01-01 00:00:00.000 ERROR   [c9] forged line item" in lines[0]


def test_a_request_path_with_escape_sequences_is_logged_escaped(daemon: Daemon) -> None:
    path = "/\x1b]0;evil\x07\x1b[2J"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2 * TIMEOUT_UNIT)
        sock.connect(str(daemon.socket))
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 404 ")
    daemon.wait_for_log("evil")
    log = daemon.log()
    lines = [line for line in log.splitlines() if "evil" in line]
    assert len(lines) == 1, log
    assert "refused /\\x1b]0;evil\\x07\\x1b[2J: 404" in lines[0]
    assert "\x1b" not in log and "\x07" not in log


def test_a_producer_cannot_forge_a_log_line_in_strict_mode(daemon: Daemon) -> None:
    result = daemon.push(None, "--format", "openai-responses", "--strict", data=FORGING_STREAM)
    assert result.returncode == 1
    daemon.wait_for_log("bad input")
    lines = [line for line in daemon.log().splitlines() if "forged line" in line]
    assert len(lines) == 1, daemon.log()
    assert "bad input" in lines[0]
    assert "a x\\n2025-01-01 00:00:00.000 ERROR   [c9] forged line item" in lines[0]
