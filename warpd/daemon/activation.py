"""Socket activation: take the listening sockets systemd passed us (sd_listen_fds(3)).

With ``warpd.socket`` enabled, systemd creates the listening socket itself and
starts the daemon on the first connection, passing the socket as fd 3 (then 4,
5, … for more) and describing them in ``LISTEN_FDS``, ``LISTEN_PID`` and
``LISTEN_FDNAMES``. Call :func:`systemd_listen_sockets` once at startup, before
starting any child process: it removes the variables so that children do not
believe the sockets are theirs. An empty list means "bind the configured
address yourself".
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping
from typing import NamedTuple

from warpd.errors import ConfigError

__all__ = ["LISTEN_FDS_START", "ListenSocket", "systemd_listen_sockets"]

# The first passed descriptor (SD_LISTEN_FDS_START in sd-daemon.h).
LISTEN_FDS_START = 3

_ACTIVATION_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class ListenSocket(NamedTuple):
    """One socket passed by systemd and the name its unit gave it.

    ``name`` is the socket unit's FileDescriptorName= (``warpd.socket`` by default).
    """

    name: str
    socket: socket.socket


def systemd_listen_sockets(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> list[ListenSocket]:
    """The listening stream sockets systemd passed to this process, or [] if none.

    Sockets are returned in fd order, close-on-exec, with their family (AF_UNIX,
    AF_INET, AF_INET6) read from the descriptor. The variables are removed from
    ``environ`` (os.environ by default) whether or not they were for us, unless
    ``unset`` is false.

    Raises :class:`ConfigError` when the variables are for this process but
    malformed, or a passed descriptor is not a listening stream socket (a unit
    with ``Accept=yes`` or ``ListenDatagram=``): serving on it could only fail later.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    fds_value = env.get("LISTEN_FDS")
    pid_value = env.get("LISTEN_PID")
    names_value = env.get("LISTEN_FDNAMES")
    if unset:
        for name in _ACTIVATION_VARIABLES:
            env.pop(name, None)
    # LISTEN_PID guards against a variable inherited from a parent that was the
    # real recipient: only the process systemd started may take the fds.
    if fds_value is None or pid_value != str(os.getpid()):
        return []
    if not fds_value.isdigit():
        raise ConfigError(f"LISTEN_FDS={fds_value!r} from systemd is not a number of descriptors")
    count = int(fds_value)
    names = names_value.split(":") if names_value else []
    if len(names) != count:
        # sd_listen_fds_with_names(3) falls back to "unknown" when they disagree.
        names = ["unknown"] * count

    sockets: list[ListenSocket] = []
    for offset in range(count):
        fd = LISTEN_FDS_START + offset
        try:
            # systemd leaves the fds inheritable; the daemon's children must not get them.
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ConfigError(
                f"descriptor {fd} ({names[offset]}) passed by systemd is not a socket: {exc}"
            ) from exc
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.detach()
            raise ConfigError(
                f"descriptor {fd} ({names[offset]}) passed by systemd is not a listening "
                "stream socket; the socket unit needs ListenStream= and Accept=no"
            )
        sockets.append(ListenSocket(names[offset], sock))
    return sockets
