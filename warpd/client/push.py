"""Pushing streams from Python: :class:`Client` (sync) and :class:`AsyncClient`.

::

    import warpd

    final = warpd.Client().push(openai_stream, session="agent")   # an SDK stream, as it is

    with warpd.Client().stream(session="agent") as s:              # events from your own loop
        for chunk in chunks:
            s.push(chunk)
    print(s.final.blocks)

Events may be dicts, JSON bytes or str, SSE text (``data: …`` lines, however
it is chunked), or SDK objects (anything with ``to_dict()`` or
``model_dump()``, such as openai's and anthropic's chunk and event objects —
those SDKs are not dependencies). ``push`` returns the final block message of
the (last) stream once the daemon has completed it. An irregular event (not
JSON, a field of the wrong shape, out of order) does not end the stream: the
daemon skips or repairs it and says so in a
:class:`~warpd.protocol.WarningMessage`, kept in ``stream.warnings`` (its
``frame`` counts the frames sent, from 1). With ``strict=True`` such an event
ends the stream instead and raises. Errors raise
:class:`~warpd.errors.PushRejected` (the daemon refused an event; its reason
and frame number), :class:`~warpd.errors.DaemonUnavailable` (nothing
listening) or :class:`~warpd.errors.ClientError`.

A stream the daemon took can still have gone wrong upstream: the stream
object's :attr:`~AsyncPushStream.outcome` says ``ok``, ``provider_error``
(the provider reported an error in its stream, e.g. Anthropic's
``overloaded_error``; :attr:`~AsyncPushStream.error` has it) or ``aborted``
(cut off before its provider ended it) — the distinctions ``warpd push``
makes with its exit status.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
from collections import deque
from collections.abc import AsyncIterable, Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from warpd.address import Address, client_address
from warpd.client.connection import connect
from warpd.errors import ClientError, PushRejected
from warpd.ingest import DECODERS
from warpd.ingest.framing import AutoFramer, one_json_object
from warpd.protocol import (
    BlocksMessage,
    EndMessage,
    ErrorInfo,
    ErrorMessage,
    StreamRequest,
    WarningMessage,
    decode_server_message,
    encode_control,
)

T = TypeVar("T")

#: How many of the daemon's warnings a push stream keeps (the latest ones).
KEPT_WARNINGS = 1000

# How long leaving a ``with`` block by an exception waits for the daemon to
# send back the aborted stream's final message.
ABORT_REPLY_SECONDS = 5.0


def abort_reason(exc: BaseException) -> str:
    """What subscribers are told of a stream its producer left by ``exc``.

    Ctrl-C (KeyboardInterrupt, or the CancelledError asyncio.run turns it
    into) and a cancelled task are an interruption, not a failure to name
    by its Python class.
    """
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return "producer interrupted"
    return f"producer failed: {type(exc).__name__}: {exc}"[:500]


class Outcome(enum.StrEnum):
    """How the streams of a push ended, worst first: see :func:`push_outcome`."""

    PROVIDER_ERROR = "provider_error"
    ABORTED = "aborted"
    OK = "ok"



def provider_error(final: BlocksMessage) -> ErrorInfo | None:
    """The first error a provider reported in a stream (its ``error`` block's), or None."""
    for block in final.blocks:
        if block.error is not None and block.error.source == "provider":
            return block.error
    return None


def push_outcome(finals: Iterable[BlocksMessage]) -> Outcome:
    """The worst of the streams' outcomes: ``provider_error`` if any carries a provider's
    error (such a stream is usually aborted too), else ``aborted`` if any was cut off
    before its provider ended it (the input ended early, the producer gave up, the
    daemon shut down), else ``ok``. No stream at all is ``ok``.
    """
    worst = Outcome.OK
    for final in finals:
        if provider_error(final) is not None:
            return Outcome.PROVIDER_ERROR
        if final.aborted:
            worst = Outcome.ABORTED
    return worst

_json = msgspec.json.Encoder()


class EventFrames:
    """Turns events of any accepted kind into push frames (sans-I/O).

    Call :meth:`frames` for each event and :meth:`close` at the end; send
    every frame they return, in order. A byte or text chunk that is one whole
    JSON object (on one line or pretty-printed) is one frame; other chunks go
    through an SSE/JSON-lines framer, so an HTTP body may be passed in
    whatever pieces it arrived. An object event (a dict, an SDK object) ends
    the chunks before it: what the framer held goes out first.
    """

    def __init__(self, format: str = "auto") -> None:
        decoder = DECODERS.get(format)
        self._raw = decoder is not None and decoder.raw
        self._framer: AutoFramer | None = None

    def frames(self, event: Any) -> list[bytes]:
        if isinstance(event, str):
            event = event.encode()
        if isinstance(event, bytes | bytearray | memoryview):
            data = bytes(event)
            if self._raw:
                return [data] if data else []
            if self._framer is None:
                stripped = data.strip()
                whole = (
                    one_json_object(stripped)
                    if stripped[:1] == b"{" and stripped[-1:] == b"}" else None
                )
                if whole is not None:
                    return [whole]
                self._framer = AutoFramer()
            return [e.payload for e in self._framer.feed(data)]
        # An object ends the bytes pushed before it: what the framer holds goes first.
        return [*self.close(), self._encode(event)]

    def close(self) -> list[bytes]:
        framer, self._framer = self._framer, None
        return [e.payload for e in framer.close()] if framer is not None else []

    @staticmethod
    def _encode(event: Any) -> bytes:
        if isinstance(event, dict):
            return _json.encode(event)
        to_dict = getattr(event, "to_dict", None)
        if callable(to_dict):
            return _json.encode(to_dict())
        model_dump = getattr(event, "model_dump", None)
        if callable(model_dump):
            return _json.encode(model_dump(mode="json", exclude_unset=True))
        raise TypeError(
            f"cannot push a {type(event).__name__}: give dicts, JSON bytes or str, SSE text, "
            "or SDK objects with to_dict() or model_dump()"
        )


class AsyncPushStream:
    """An open push connection; use as ``async with client.stream(...) as s``.

    Call :meth:`push` for each event. Leaving the block normally completes
    the stream (``final`` then holds its final message, ``finals`` those of
    every stream pushed); leaving it by an exception aborts the stream with
    that exception as the reason (``final`` is then the aborted message,
    once the daemon has sent it back). :attr:`outcome` and :attr:`error`
    say how the streams ended. ``warnings`` holds the daemon's warnings
    about irregular events, as they arrive (``strict``: see the module
    docstring).
    """

    def __init__(
        self, address: Address, session: str, format: str, *, strict: bool | None = None
    ) -> None:
        self.address = address
        self.session = session
        self.format = format
        self.strict = strict
        self.finals: list[BlocksMessage] = []
        # The latest warnings (a connection kept for many streams, as the
        # capture proxy keeps it, must not hold every one it ever had).
        self.warnings: deque[WarningMessage] = deque(maxlen=KEPT_WARNINGS)
        self.streams: list[str] = []
        self._frames = EventFrames(format)
        self._ws: ClientConnection | None = None
        self._replies: asyncio.Task[EndMessage] | None = None

    @property
    def final(self) -> BlocksMessage:
        """The final message of the last stream completed on this connection."""
        if not self.finals:
            raise ClientError("no stream has completed on this connection")
        return self.finals[-1]

    @property
    def outcome(self) -> Outcome:
        """``ok``, ``provider_error`` or ``aborted``: see :func:`push_outcome`."""
        return push_outcome(self.finals)

    @property
    def error(self) -> ErrorInfo | None:
        """The first error a provider reported in the streams pushed, if any."""
        return next((e for f in self.finals if (e := provider_error(f)) is not None), None)

    async def __aenter__(self) -> AsyncPushStream:
        params = {"session": self.session, "format": self.format}
        if self.strict is not None:
            params["strict"] = "true" if self.strict else "false"
        query = urlencode(params)
        self._ws = await connect(self.address, f"/push?{query}")
        self._replies = asyncio.ensure_future(self._read_replies(self._ws))
        return self

    async def push(self, event: Any) -> None:
        """Send one event (of any accepted kind); raises PushRejected if the daemon refused one."""
        for frame in self._frames.frames(event):
            await self._send(frame)

    async def open(self, request: StreamRequest | None = None) -> None:
        """Start a stream now, before its first event, saying what was asked for.

        Subscribers get its first message at once, with ``request`` (the
        model and prompt); the events pushed next belong to it. A live stream
        is completed first.
        """
        for frame in self._frames.close():
            await self._send(frame)
        self._frames = EventFrames(self.format)
        await self._send(encode_control("open", request=request))

    async def abort(self, reason: str) -> None:
        """Complete the live stream as aborted with ``reason``; the connection stays usable."""
        self._frames = EventFrames(self.format)
        await self._send(encode_control("abort", reason[:500]))

    async def finish(self) -> None:
        """The live stream's input is over: complete it, and keep the connection for more.

        As leaving the ``async with`` block does (aborted if its provider
        never ended it), but the next events start a new stream here.
        """
        for frame in self._frames.close():
            await self._send(frame)
        # Each stream's body is framed afresh (SSE, JSON lines or whole objects).
        self._frames = EventFrames(self.format)
        await self._send(encode_control("finish"))

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (or not yet open): no more pushing on it."""
        return self._replies is None or self._replies.done()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._ws is not None and self._replies is not None
        try:
            if exc is not None:
                reason = abort_reason(exc)
                await self._send(encode_control("abort", reason), swallow=True)
                # The daemon answers the abort with the aborted final and the
                # end with its ``end``: wait for them (briefly) so ``final``
                # holds what subscribers saw. The exception is what propagates.
                await self._send(encode_control("end"), swallow=True)
                await asyncio.wait([self._replies], timeout=ABORT_REPLY_SECONDS)
                if self._replies.done() and not self._replies.cancelled():
                    self._replies.exception()  # retrieved: an error here is not news
                return
            for frame in self._frames.close():
                await self._send(frame)
            await self._send(encode_control("end"))
            end = await self._replies
            self.streams = end.streams
        finally:
            self._replies.cancel()
            await self._ws.close()

    async def _send(self, frame: bytes, *, swallow: bool = False) -> None:
        assert self._ws is not None and self._replies is not None
        if self._replies.done() and not swallow:
            # The daemon answered early: an error, or it closed on us.
            self._replies.result()
            raise ClientError("the daemon ended the push before the stream was complete")
        try:
            await self._ws.send(frame)
        except ConnectionClosed:
            if swallow:
                return
            await asyncio.wait([self._replies], timeout=5)
            if self._replies.done():
                self._replies.result()
            raise ClientError("the connection to the daemon was lost") from None

    async def _read_replies(self, ws: ClientConnection) -> EndMessage:
        try:
            async for frame in ws:
                message = decode_server_message(frame)
                if isinstance(message, BlocksMessage):
                    self.finals.append(message)
                elif isinstance(message, WarningMessage):
                    self.warnings.append(message)
                elif isinstance(message, ErrorMessage):
                    where = f"frame {message.frame}: " if message.frame else ""
                    raise PushRejected(where + message.message, frame=message.frame)
                elif isinstance(message, EndMessage):
                    return message
        except ConnectionClosed:
            pass
        raise ClientError(
            f"the daemon closed the connection (code {ws.close_code}"
            f"{': ' + ws.close_reason if ws.close_reason else ''})"
        )


class AsyncClient:
    """Pushes streams to the daemon from asyncio code.

    ``address`` is ``unix:PATH``, a socket path or ``ws://HOST:PORT``;
    default: ``$WARPD_ADDR``, else the user's Unix socket.
    """

    def __init__(self, address: str | None = None) -> None:
        self.address = client_address(address)

    def stream(
        self, *, session: str = "default", format: str = "auto", strict: bool | None = None
    ) -> AsyncPushStream:
        """A push connection to use with ``async with``; see :class:`AsyncPushStream`.

        ``strict``: True or False to choose strict mode; None for the daemon's
        ``[ingest] strict``.
        """
        return AsyncPushStream(self.address, session, format, strict=strict)

    async def push(
        self,
        events: Iterable[Any] | AsyncIterable[Any],
        *,
        session: str = "default",
        format: str = "auto",
        strict: bool | None = None,
    ) -> BlocksMessage:
        """Push every event, then return the final message of the (last) stream."""
        async with self.stream(session=session, format=format, strict=strict) as stream:
            if isinstance(events, AsyncIterable):
                async for event in events:
                    await stream.push(event)
            else:
                for event in events:
                    await stream.push(event)
        return stream.final


class _LoopThread:
    """A private event loop in a daemon thread, for the synchronous client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="warpd-client")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; if we are interrupted, cancel it first.

        Without the cancel, a Ctrl-C during ``push`` would leave the send
        running while ``__exit__`` sends the abort beside it.
        """
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            concurrent.futures.wait([future], timeout=5)
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class PushStream:
    """The synchronous form of :class:`AsyncPushStream`: ``with client.stream(...) as s``."""

    def __init__(self, stream: AsyncPushStream) -> None:
        self._stream = stream
        self._loop: _LoopThread | None = None

    @property
    def final(self) -> BlocksMessage:
        return self._stream.final

    @property
    def finals(self) -> list[BlocksMessage]:
        return self._stream.finals

    @property
    def outcome(self) -> Outcome:
        return self._stream.outcome

    @property
    def error(self) -> ErrorInfo | None:
        return self._stream.error

    @property
    def warnings(self) -> deque[WarningMessage]:
        """The daemon's latest warnings about irregular events of this push, as they arrived."""
        return self._stream.warnings

    def __enter__(self) -> PushStream:
        self._loop = _LoopThread()
        try:
            self._loop.run(self._stream.__aenter__())
        except BaseException:
            self._loop.stop()
            raise
        return self

    def push(self, event: Any) -> None:
        """Send one event; raises PushRejected if the daemon refused one."""
        assert self._loop is not None
        self._loop.run(self._stream.push(event))

    def open(self, request: StreamRequest | None = None) -> None:
        """Start a stream now, saying what was asked for; see :meth:`AsyncPushStream.open`."""
        assert self._loop is not None
        self._loop.run(self._stream.open(request))

    def abort(self, reason: str) -> None:
        """Complete the live stream as aborted with ``reason``."""
        assert self._loop is not None
        self._loop.run(self._stream.abort(reason))

    def finish(self) -> None:
        """Complete the live stream and keep the connection; see :meth:`AsyncPushStream.finish`."""
        assert self._loop is not None
        self._loop.run(self._stream.finish())

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None
        try:
            self._loop.run(self._stream.__aexit__(kind, exc, tb))
        finally:
            self._loop.stop()


class Client:
    """Pushes streams to the daemon from ordinary (synchronous) code.

    ``address`` as for :class:`AsyncClient`.
    """

    def __init__(self, address: str | None = None) -> None:
        self._async = AsyncClient(address)
        self.address = self._async.address

    def stream(
        self, *, session: str = "default", format: str = "auto", strict: bool | None = None
    ) -> PushStream:
        """A push connection to use with ``with``; see :class:`PushStream`."""
        return PushStream(self._async.stream(session=session, format=format, strict=strict))

    def push(
        self,
        events: Iterable[Any],
        *,
        session: str = "default",
        format: str = "auto",
        strict: bool | None = None,
    ) -> BlocksMessage:
        """Push every event, then return the final message of the (last) stream."""
        with self.stream(session=session, format=format, strict=strict) as stream:
            for event in events:
                stream.push(event)
        return stream.final
