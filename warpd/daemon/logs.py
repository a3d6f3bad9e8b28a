"""Where the daemon's log goes: a terminal, or journald when systemd runs us.

Call :func:`configure_logging` once at startup, before the first log line.
Under systemd, stderr is a stream into journald (``JOURNAL_STREAM`` names it)
and each line may start with a ``<N>`` syslog priority (sd-daemon(3)): journald
strips it and files the line at that priority, so ``journalctl --user -u warpd
-p warning`` works. journald stamps the time and the unit itself, and a
terminal escape in the journal is noise, so that format has neither.

Every record passes through one patcher, :func:`escape_record`, before any
sink sees it: values from peers (a request path, a producer's field quoted in
an error) are part of messages and bound fields, and a newline in one must
not start a forged line of its own, nor an escape sequence reach the terminal
of whoever reads the log. So the message and every bound value have each
unsafe character (:data:`warpd.controls.UNSAFE`) written as a backslash
escape: ``\n``, ``\x1b``, ``\u202e``. Call sites need no care.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from loguru import logger

from warpd.controls import backslash_form, escape_unsafe

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["SYSLOG_PRIORITY", "configure_logging", "escape_record", "running_under_systemd"]

# loguru level name -> syslog priority (sd-daemon.h: SD_DEBUG=7 … SD_CRIT=2).
SYSLOG_PRIORITY = {
    "TRACE": 7,
    "DEBUG": 7,
    "INFO": 6,
    "SUCCESS": 5,
    "WARNING": 4,
    "ERROR": 3,
    "CRITICAL": 2,
}

# One line per record; [conn] is the connection id handlers bind ("-" outside one).
_TERMINAL_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} [{extra[conn]}] {message}"
# journald records the time, the unit and (from the <N> prefix) the level itself.
_JOURNAL_FORMAT = "[{extra[conn]}] {message}"


def escape_record(record: Record) -> None:
    """Escape the unsafe characters of a record's message and bound values (a loguru patcher).

    Values that are not numbers, booleans or None are replaced by their
    escaped text.
    """
    record["message"] = escape_unsafe(record["message"], backslash_form)
    extra = record["extra"]
    for key, value in extra.items():
        if not isinstance(value, int | float | None):
            extra[key] = escape_unsafe(str(value), backslash_form)


def _is_journal_stream(stream: TextIO, journal_stream: str) -> bool:
    """True if ``stream`` is the journald stream named by JOURNAL_STREAM (``dev:inode``)."""
    device, _, inode = journal_stream.partition(":")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        # A stream without a descriptor (pytest's capture) is not the journal.
        return False
    return f"{info.st_dev}:{info.st_ino}" == f"{device}:{inode}"


def running_under_systemd(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` goes to journald, or systemd started this process.

    JOURNAL_STREAM must match the stream's device and inode: the variable is
    inherited by children whose stderr was redirected elsewhere.
    INVOCATION_ID is set by systemd for every unit it runs.
    """
    env = os.environ if environ is None else environ
    journal_stream = env.get("JOURNAL_STREAM")
    if journal_stream and _is_journal_stream(stream, journal_stream):
        return True
    return bool(env.get("INVOCATION_ID"))


def _journal_sink(stream: TextIO) -> Callable[[Message], None]:
    """A loguru sink writing every line of a message with its ``<N>`` priority prefix."""

    def write(message: Message) -> None:
        priority = SYSLOG_PRIORITY.get(message.record["level"].name, 6)
        # Each line (a traceback has many) is a separate journal entry: prefix them all.
        stream.write("".join(f"<{priority}>{line}\n" for line in str(message).splitlines()))
        stream.flush()

    return write


def configure_logging(
    level: str = "INFO",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Send loguru's output to ``stream`` (stderr) at ``level``; True if journald format.

    Replaces every loguru handler. Under systemd (:func:`running_under_systemd`)
    lines are ``<6>[conn] message``; otherwise ``time level [conn] message``.
    Never coloured: the log is read with grep and journalctl as often as live.
    """
    stream = sys.stderr if stream is None else stream
    logger.remove()
    logger.configure(extra={"conn": "-"}, patcher=escape_record)
    if running_under_systemd(stream, environ):
        logger.add(
            _journal_sink(stream),
            level=level,
            format=_JOURNAL_FORMAT,
            colorize=False,
            backtrace=False,
            diagnose=False,
        )
        return True
    logger.add(
        stream,
        level=level,
        format=_TERMINAL_FORMAT,
        colorize=False,
        backtrace=False,
        diagnose=False,
    )
    return False
