"""The client side: pushing streams to a daemon from Python, and connecting to one.

``push`` holds :class:`Client` (sync) and :class:`AsyncClient` with their
stream objects and the outcome of a push; ``connection`` opens the
WebSocket to a daemon's address (Unix socket or TCP with its token), for the
client and for the commands that talk to a daemon (subscribe, status, reload).
Neither imports the daemon: what both sides need (addresses, the token file,
config) lives below both.
"""

from __future__ import annotations

from warpd.client.push import (
    AsyncClient,
    AsyncPushStream,
    Client,
    EventFrames,
    Outcome,
    PushStream,
    provider_error,
    push_outcome,
)

__all__ = [
    "AsyncClient",
    "AsyncPushStream",
    "Client",
    "EventFrames",
    "Outcome",
    "PushStream",
    "provider_error",
    "push_outcome",
]
