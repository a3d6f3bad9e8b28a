"""The sd_notify protocol in pure Python: tell systemd how the daemon is doing.

systemd gives a ``Type=notify`` service the address of a datagram socket in
``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket); each datagram
is newline-separated ``KEY=value`` fields (sd_notify(3)). Build one
:class:`SystemdNotifier` at startup with :meth:`SystemdNotifier.from_environment`
and keep it for the life of the process: it removes the variables from the
environment so that children cannot impersonate the daemon, and every method
is a silent no-op when the daemon was not started by systemd.

The caller must send :meth:`ready` once it accepts connections, :meth:`reloading`
then :meth:`ready` around a configuration reload, :meth:`stopping` when shutdown
begins, and :meth:`watchdog` every :attr:`watchdog_interval` seconds when that is
not ``None``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, MutableMapping

__all__ = ["SystemdNotifier", "monotonic_usec"]

# The variables systemd sets for a notify service; removed once read.
_NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(value: str) -> str | None:
    """The AF_UNIX address for a NOTIFY_SOCKET value, or None if we cannot use it.

    ``@name`` is an abstract socket (leading NUL byte). systemd also accepts
    ``vsock:`` addresses for virtual machines; warpd does not run there.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds, when the watchdog is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    # WATCHDOG_PID names the process systemd watches; a forked child must not ping.
    if pid and pid != str(os.getpid()):
        return None
    # sd_watchdog_enabled(3) recommends pinging at half the timeout.
    return int(usec) / 2 / 1_000_000


class SystemdNotifier:
    """Sends sd_notify messages to the service manager, or nothing when there is none.

    Sending never raises: a notification that cannot be delivered (systemd
    restarting, socket gone) returns False and the daemon carries on serving.
    """

    def __init__(self, notify_socket: str | None, *, watchdog_interval: float | None = None):
        """Use :meth:`from_environment` unless you are testing with an explicit address."""
        self.address = _socket_address(notify_socket) if notify_socket else None
        self.watchdog_interval = watchdog_interval if self.address else None

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> SystemdNotifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (os.environ by default).

        With ``unset`` (the default) the variables are removed from the
        environment, as sd_notify(3)'s ``unset_environment`` does, so that a
        child process cannot send notifications in the daemon's name.
        """
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        notifier = cls(env.get("NOTIFY_SOCKET"), watchdog_interval=_watchdog_interval(env))
        if unset:
            for name in _NOTIFY_VARIABLES:
                env.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to notify."""
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=value`` fields; True if it was delivered.

        Keyword names are the sd_notify field names (``READY=1`` is
        ``notify(READY=1)``). Newlines inside a value would start a new field,
        so they are replaced by spaces.
        """
        if self.address is None or not fields:
            return False
        message = "\n".join(
            f"{name}={str(value).replace(chr(10), ' ')}" for name, value in fields.items()
        )
        try:
            # A socket per message, as sd_notify(3) does: nothing to leak or to
            # reconnect after systemd re-executes itself.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd the daemon is serving (READY=1), with an optional STATUS line."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def reloading(self, status: str | None = None) -> bool:
        """Announce a configuration reload; follow it with :meth:`ready` when done.

        MONOTONIC_USEC lets systemd (>= 253) match this message to the reload
        it asked for; older versions ignore the field.
        """
        fields: dict[str, str | int] = {"RELOADING": 1, "MONOTONIC_USEC": monotonic_usec()}
        if status is not None:
            fields["STATUS"] = status
        return self.notify(**fields)

    def stopping(self, status: str | None = None) -> bool:
        """Announce that shutdown has begun (STOPPING=1)."""
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=status)

    def watchdog(self) -> bool:
        """Ping the watchdog (WATCHDOG=1); a no-op unless WATCHDOG_USEC was set for us."""
        if self.watchdog_interval is None:
            return False
        return self.notify(WATCHDOG=1)
