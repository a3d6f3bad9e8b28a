"""Subscribe connections: each subscriber's outbox (kept by the hub) drained to its socket.

Two ways out, one order. When a socket can take bytes now, what the hub
queued is written straight away — every subscriber that got messages in one
event-loop iteration gets one ``writev`` (:class:`WriteBatcher`). Anything
that needs waiting — a full socket buffer, a large message sent in fragments,
a resync after falling behind, a close — goes through the subscriber's
writer task instead (:meth:`Subscribers.handle`), and while it writes,
everything does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loguru import logger
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from warpd.daemon.frames import (
    CLOSE_LIMIT,
    CLOSE_TOO_SLOW,
    FRAGMENT_BYTES,
    close_reason,
    send_message,
    text_frame_header,
)
from warpd.daemon.hub import Hub, HubLimitError, Subscriber
from warpd.daemon.routes import SubscribeRoute
from warpd.protocol import ErrorMessage, encode

__all__ = ["CLOSE_GRACE", "SubscriberLink", "Subscribers", "WriteBatcher"]

# A subscriber asked to close (too slow) that cannot even take the close frame
# within this many seconds has its connection dropped.
CLOSE_GRACE = 10.0


class SubscriberLink:
    """A subscribe connection as the server sees it: its socket and its writer's wake-up.

    Closing is the writer's job (a close in the middle of a fragmented message
    would break it): others set ``close_code`` and call ``wake``.
    """

    __slots__ = (
        "connection",
        "wake",
        "close_code",
        "close_reason",
        "close_asked",
        "hub",
        "subscriber",
        "writing",
        "batcher",
    )

    def __init__(
        self, connection: ServerConnection, wake: asyncio.Event, hub: Hub, batcher: WriteBatcher
    ) -> None:
        self.connection = connection
        self.batcher = batcher
        self.wake = wake
        self.close_code = 0
        self.close_reason = ""
        self.close_asked = 0.0
        self.hub = hub
        self.subscriber: Subscriber | None = None
        # The writer task is sending: everything must then go through it, in order.
        self.writing = False

    def ask_close(self, code: int, reason: str) -> None:
        if not self.close_code:
            self.close_code, self.close_reason = code, reason
            self.close_asked = time.monotonic()
        self.wake.set()

    def on_queued(self) -> None:
        """The hub queued a message: have it written this loop iteration, or wake the writer."""
        if self._can_write_now():
            self.batcher.add(self)
        else:
            self.wake.set()

    def _can_write_now(self) -> bool:
        """Whether the queue may go straight to the socket, without the writer task.

        Anything that needs waiting — a socket whose buffer is full, a large
        message to fragment, a resync, a close — is left to the writer task.
        """
        ws = self.connection
        subscriber = self.subscriber
        return not (
            subscriber is None
            or self.writing
            or self.close_code
            or subscriber.outbox.behind
            or subscriber.outbox.queued_bytes > FRAGMENT_BYTES
            or ws.paused
            or ws.send_in_progress is not None
            or ws.protocol.state is not State.OPEN
        )

    def write_now(self) -> None:
        """Write everything queued as frames, in one writev; the writer task if that can't be."""
        if not self._can_write_now():
            self.wake.set()
            return
        subscriber = self.subscriber
        assert subscriber is not None
        try:
            parts: list[bytes] = []
            for session, seq, data in subscriber.outbox.take():
                parts += (text_frame_header(len(data)), data)
                self.hub.note_sent(subscriber, session, seq)
            # The same payload bytes for every subscriber, no per-subscriber copy.
            self.connection.transport.writelines(parts)
        except Exception:  # the connection broke under us: the writer task sees it
            self.wake.set()


class WriteBatcher:
    """Writes each subscriber that got messages once per event-loop iteration.

    Messages published in one iteration (a producer's burst of frames) then
    cost one system call per subscriber rather than one per message, which is
    what websockets' own broadcast, writing frame by frame, cannot do.
    """

    def __init__(self) -> None:
        self._links: dict[SubscriberLink, None] = {}
        self._scheduled = False

    def add(self, link: SubscriberLink) -> None:
        self._links[link] = None
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        links, self._links = self._links, {}
        self._scheduled = False
        for link in links:
            link.write_now()


class Subscribers:
    """Every subscribe connection of one daemon, by its hub subscriber.

    Set ``closing`` when shutdown begins: a subscriber that connects then is
    asked to close (1001) as soon as it has what is queued for it.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.links: dict[Subscriber, SubscriberLink] = {}
        self.closing = False
        self._batcher = WriteBatcher()

    async def handle(
        self, ws: ServerConnection, route: SubscribeRoute, conn_id: str, log: Any
    ) -> None:
        """Serve one subscribe connection: its outbox to its socket, until it closes."""
        hub = self.hub
        wake = asyncio.Event()
        link = SubscriberLink(ws, wake, hub, self._batcher)
        try:
            subscriber = hub.subscribe(
                conn_id,
                route.sessions,
                link.on_queued,
                since=route.since,
                epoch=route.epoch,
                replay=route.replay,
            )
        except HubLimitError as exc:
            log.warning("refused: {}", exc)
            await ws.send(encode(ErrorMessage(str(exc))), text=True)
            await ws.close(CLOSE_LIMIT, close_reason(str(exc)))
            return
        self.links[subscriber] = link
        link.subscriber = subscriber
        if self.closing:
            link.ask_close(1001, "daemon shutting down")
        closed = asyncio.ensure_future(ws.wait_closed())
        closed.add_done_callback(lambda _: wake.set())
        outbox = subscriber.outbox
        try:
            while not closed.done():
                await wake.wait()
                wake.clear()
                link.writing = True
                while True:
                    for session, seq, data in outbox.take():
                        await send_message(ws, data)
                        hub.note_sent(subscriber, session, seq)
                    if len(outbox):
                        continue
                    if not outbox.behind:
                        break
                    # Only once the outbox is empty: what resync queues starts
                    # right after the last message sent, with no duplicate.
                    log.info("behind: {} messages dropped, catching up", outbox.dropped)
                    hub.resync(subscriber)
                link.writing = False
                if link.close_code and not len(outbox):
                    await ws.close(link.close_code, link.close_reason)
                    break
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            hub.unsubscribe(subscriber)
            del self.links[subscriber]
            log.info("subscriber gone ({} resyncs)", subscriber.resyncs)

    def close_all(self, code: int, reason: str) -> None:
        """Ask every subscriber to close once what is queued for it is written."""
        for link in self.links.values():
            link.ask_close(code, reason)

    def sweep(self, now: float) -> None:
        """Drop those that cannot take their close; close those stuck behind too long."""
        stall_timeout = self.hub.config.limits.stall_timeout
        for subscriber, link in list(self.links.items()):
            outbox = subscriber.outbox
            if link.close_code:
                # Its writer could not even get to the close frame.
                if now - link.close_asked > CLOSE_GRACE:
                    link.connection.transport.abort()
            elif outbox.behind and now - outbox.behind_since > stall_timeout:
                logger.bind(conn=subscriber.conn_id).warning(
                    "subscriber stuck for {:.0f}s: disconnecting", now - outbox.behind_since
                )
                link.ask_close(CLOSE_TOO_SLOW, "too slow: stuck behind for too long")
