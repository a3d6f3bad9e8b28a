"""Push connections: frames in, block messages published, the producer told what became of them.

A handler does little more than
``async for frame in ws: publish(streams.feed(frame))``: every rule lives in
:class:`~warpd.ingest.producer.ProducerStreams` (decoding, assembling) and
the hub (numbering, fan-out). Streaming messages are only published; a
stream's final message is also sent back to its producer. An irregular frame
is skipped or repaired: the producer gets a ``warning`` message naming the
frame, subscribers an error block (``source: "input"``), and the stream goes
on. In strict mode (``[ingest] strict``, or ``strict=true`` on ``/push``) it
ends the stream with an error block and closes with 1007 instead. A limit
refused closes with 1013; a producer silent for ``limits.producer_idle_timeout``
has its stream completed as aborted (1008).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from warpd.daemon.frames import (
    CLOSE_BAD_INPUT,
    CLOSE_IDLE,
    CLOSE_LIMIT,
    close,
    close_reason,
    send_message,
)
from warpd.daemon.hub import Hub, HubLimitError
from warpd.daemon.routes import PushRoute
from warpd.errors import InputError
from warpd.ingest.producer import ProducerStreams
from warpd.protocol import (
    CONTROL_PREFIX,
    BlocksMessage,
    EndMessage,
    ErrorMessage,
    decode_control,
    encode,
)

__all__ = ["Producer", "Producers"]


class Producer:
    """A push connection's state, for the idle sweep and for shutdown."""

    __slots__ = ("streams", "connection", "last_frame", "log")

    def __init__(self, streams: ProducerStreams, connection: ServerConnection, log: Any) -> None:
        self.streams = streams
        self.connection = connection
        self.last_frame = time.monotonic()
        self.log = log


class Producers:
    """Every push connection of one daemon.

    ``publish_reply(message)`` publishes a message its producer gets too and
    returns the bytes as subscribers get them (with a Redis broker, once Redis
    has numbered it). Set ``closing`` when shutdown begins: frames still
    arriving are then ignored, :meth:`finish` having completed the streams.
    """

    def __init__(
        self, hub: Hub, publish_reply: Callable[[BlocksMessage], Awaitable[bytes]]
    ) -> None:
        self.hub = hub
        self.publish_reply = publish_reply
        self.connected: set[Producer] = set()
        self.closing = False
        self._background: set[asyncio.Task[Any]] = set()

    async def handle(self, ws: ServerConnection, route: PushRoute, log: Any) -> None:
        """Serve one push connection until its ``end``, an error, or its close."""
        hub = self.hub
        ingest = hub.config.ingest
        streams = ProducerStreams(
            route.session,
            route.format,
            lambda: hub.new_stream_id(route.session),
            max_frame_bytes=hub.config.limits.max_frame_bytes,
            strict=ingest.strict if route.strict is None else route.strict,
            max_warnings=ingest.max_warnings,
            on_start=hub.stream_started,
        )
        producer = Producer(streams, ws, log)
        self.connected.add(producer)
        reason = "producer disconnected before the end of its stream"
        try:
            async for frame in ws:
                if self.closing:
                    # shutdown() completed this producer's stream; ignore the rest.
                    break
                producer.last_frame = time.monotonic()
                data = frame.encode() if isinstance(frame, str) else frame
                try:
                    if data.startswith(CONTROL_PREFIX):
                        if await self._control(ws, streams, data, log):
                            return
                        continue
                    messages = streams.feed(data)
                except (InputError, HubLimitError) as exc:
                    await self._refuse(ws, streams, exc, log)
                    return
                if streams.warnings:
                    await self._warn(ws, streams, log)
                for message in messages:
                    if message.streaming:
                        hub.publish(message)
                    else:
                        await send_message(ws, await self.publish_reply(message))
        except ConnectionClosed as exc:
            # Subscribers are told in their words; the log keeps websockets' detail.
            reason = "producer connection lost before the end of its stream"
            log.info("producer connection lost: {}", exc)
        finally:
            self.connected.discard(producer)
            for message in streams.abort(reason):
                log.info("stream {} aborted: {}", message.stream, reason)
                hub.publish(message)

    async def _control(
        self, ws: ServerConnection, streams: ProducerStreams, data: bytes, log: Any
    ) -> bool:
        """Act on a producer control frame; return True when the connection is done."""
        try:
            control = decode_control(data)
        except Exception as exc:  # msgspec.DecodeError or ValidationError
            raise InputError(f"bad control frame: {exc}", frame=streams.frames + 1) from None
        if control.warpd == "skipped":
            # An event the producer discarded for its size: a frame of its own.
            for message in streams.oversized(control.bytes or 0, control.limit):
                self.hub.publish(message)
            if streams.warnings:
                await self._warn(ws, streams, log)
            return False
        streams.frames += 1
        if control.warpd == "abort":
            for message in streams.abort(control.reason or "aborted by the producer"):
                await send_message(ws, await self.publish_reply(message))
            return False
        if control.warpd == "finish":
            finals = streams.end()
            if streams.warnings:
                await self._warn(ws, streams, log)
            for message in finals:
                await send_message(ws, await self.publish_reply(message))
            return False
        if control.warpd == "open":
            for message in streams.open(control.request):
                if message.streaming:
                    self.hub.publish(message)
                else:
                    await send_message(ws, await self.publish_reply(message))
            return False
        finals = streams.end()
        if streams.warnings:
            await self._warn(ws, streams, log)
        for message in finals:
            await send_message(ws, await self.publish_reply(message))
        await ws.send(encode(EndMessage(streams=streams.streams)), text=True)
        return True

    async def _warn(self, ws: ServerConnection, streams: ProducerStreams, log: Any) -> None:
        """Send the producer the warnings its last frame left (already one line, escaped)."""
        warnings, streams.warnings = streams.warnings, []
        for warning in warnings:
            log.info("input warning, frame {}: {}", warning.frame, warning.message)
            await ws.send(encode(warning), text=True)

    async def _refuse(
        self,
        ws: ServerConnection,
        streams: ProducerStreams,
        exc: InputError | HubLimitError,
        log: Any,
    ) -> None:
        """Tell the producer what was wrong, end its stream with an error block, close."""
        if isinstance(exc, InputError):
            log.warning("bad input: {}", exc)
            messages = streams.fail(exc)
            text, frame, code = exc.message, exc.frame, CLOSE_BAD_INPUT
        else:
            log.warning("refused: {}", exc)
            messages = streams.abort(str(exc))
            text, frame, code = str(exc), None, CLOSE_LIMIT
        stream = None
        for message in messages:
            self.hub.publish(message)
            stream = message.stream
        try:
            await ws.send(encode(ErrorMessage(text, frame=frame, stream=stream)), text=True)
            await ws.close(code, close_reason(str(exc)))
        except ConnectionClosed:
            pass

    async def finish(self, producer: Producer, code: int, reason: str) -> None:
        """Complete a producer's live stream as aborted, send it the final message, close."""
        finals = [await self.publish_reply(m) for m in producer.streams.abort(reason)]
        ws = producer.connection
        try:
            for data in finals:
                await send_message(ws, data)
        except ConnectionClosed:
            return
        await close(ws, code, reason)

    def sweep(self, now: float) -> None:
        """Abort the live stream of every producer silent for ``limits.producer_idle_timeout``."""
        timeout = self.hub.config.limits.producer_idle_timeout
        for producer in list(self.connected):
            idle = now - producer.last_frame
            if producer.streams.live is not None and idle > timeout:
                reason = f"producer sent nothing for {timeout:g}s"
                producer.log.warning("{}: aborting its stream", reason)
                task = asyncio.ensure_future(self.finish(producer, CLOSE_IDLE, reason))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
