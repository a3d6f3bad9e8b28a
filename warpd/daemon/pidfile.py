"""The daemon's pid file beside each Unix socket it serves: ``warpd.sock`` → ``warpd.sock.pid``.

It lets a second ``warpd serve`` name the process already serving a socket.
Nothing relies on it for correctness: a pid file whose process is gone is
ignored, and ``warpd reload`` talks to the daemon over its socket instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

__all__ = ["pid_file", "remove_pid_file", "serving_pid", "write_pid_file"]


def pid_file(socket_path: Path) -> Path:
    """Where the daemon serving ``socket_path`` writes its pid."""
    return socket_path.with_name(socket_path.name + ".pid")


def write_pid_file(socket_path: Path) -> Path | None:
    """Record this process's pid beside ``socket_path``; the file, or None if it can't be written.

    Written beside and renamed over, so a reader never sees half a number.
    """
    path = pid_file(socket_path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(temporary, path)
    except OSError as exc:
        logger.debug("no pid file at {}: {}", path, exc.strerror)
        temporary.unlink(missing_ok=True)
        return None
    return path


def remove_pid_file(path: Path) -> None:
    """Remove ``path`` if it still names this process (a successor may have replaced it)."""
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def serving_pid(socket_path: Path) -> int | None:
    """The pid recorded for ``socket_path``, if that process is alive."""
    try:
        pid = int(pid_file(socket_path).read_text(errors="replace").strip())
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, but another user's
    return pid
