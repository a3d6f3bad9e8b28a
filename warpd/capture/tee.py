"""Copying each captured answer into a warpd session, one stream per request.

The proxy hands every answer's bytes to a :class:`ResponseTee` as it
forwards them (:meth:`~ResponseTee.feed` never waits); the tee's own task
pushes them to the daemon through warpd's client (:mod:`warpd.client`), so
the client's bytes never wait on the daemon, a subscriber or a decoder:

- the stream is opened as the request goes upstream, with what it asked for
  (:func:`~warpd.capture.request_summary.summarise_request`);
- a streamed answer (``text/event-stream``, ``application/x-ndjson``) is
  pushed piece by piece, as it arrives, after undoing any Content-Encoding
  (:mod:`warpd.capture.encoding`);
- a whole JSON answer, and an error answer (status ≥ 400), is pushed at its
  end as the events of a stream (:mod:`warpd.ingest.whole`);
- a client that goes away, an upstream that breaks, or a copy that falls
  more than :data:`TEE_LIMIT` bytes behind ends the stream as aborted, with
  the reason; the client's answer is never cut for the copy's sake.

When no daemon answers, or it goes away, forwarding goes on without
capture; :class:`CaptureSink` says so once per outage, on the log.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from typing import Any, Literal

from loguru import logger

from warpd.capture.encoding import (
    ContentDecoder,
    DecodedTooLarge,
    UnsupportedEncoding,
    content_decoder,
)
from warpd.capture.request_summary import summarise_request
from warpd.client import AsyncClient, AsyncPushStream
from warpd.errors import ClientError, DaemonUnavailable, InputError, PushRejected
from warpd.ingest.whole import completion_events, error_events, failure_events

#: How many bytes of one answer may wait to be pushed (and the most a whole
#: answer's copy may hold) before the copy is given up.
TEE_LIMIT = 16 * 1024 * 1024

#: Idle push connections kept per format, for the next answers.
IDLE = 4

STREAMED_TYPES = ("text/event-stream", "application/x-ndjson")

Mode = Literal["stream", "whole", "error"]


class CaptureSink:
    """Where a proxy's captured answers go: ``session`` on the daemon at ``address``.

    ``address`` as for :class:`~warpd.client.AsyncClient` (None: ``$WARPD_ADDR``,
    else the user's socket). Call :meth:`tee` for each captured request and
    :meth:`close` before the proxy exits.

    Push connections are kept open between answers (up to :data:`IDLE` per
    format) and used again: each answer is one stream, ended with
    ``finish``, so the next one on the connection costs one frame, not a
    WebSocket handshake on the way to the client's first byte.
    """

    def __init__(self, session: str, address: str | None = None, *,
                 limit: int = TEE_LIMIT) -> None:
        self.session = session
        self.client = AsyncClient(address)
        self.limit = limit
        self.tees: set[ResponseTee] = set()
        self._idle: dict[str, list[AsyncPushStream]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._down = False
        self._warned_encodings: set[str] = set()

    def tee(self, format: str, body: bytes, log: Any = logger) -> ResponseTee:
        """Start copying the answer to a request of ``format`` whose body was ``body``."""
        tee = ResponseTee(self, format, body, log)
        self.tees.add(tee)
        return tee

    async def close(self, timeout: float) -> None:
        """Let each tee push what it holds, then close every connection.

        Tees still busy after ``timeout`` seconds are cancelled (their streams
        end aborted).
        """
        tasks = [t.task for t in self.tees]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        idle = [push for pushes in self._idle.values() for push in pushes]
        self._idle.clear()
        for push in idle:
            self.discard(push)
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=timeout)

    # -- push connections ---------------------------------------------------

    async def connection(self, format: str) -> tuple[AsyncPushStream, bool]:
        """A push connection for ``format``: (an idle one, True), else (a new one, False).

        Raises :class:`DaemonUnavailable` or :class:`ClientError`.
        """
        idle = self._idle.get(format)
        while idle:
            push = idle.pop()
            if not push.closed:
                return push, True
            # The daemon closed it meanwhile (a restart): close our side too.
            self.discard(push)
        return await self.new_connection(format), False

    async def new_connection(self, format: str) -> AsyncPushStream:
        push = self.client.stream(session=self.session, format=format)
        await push.__aenter__()
        return push

    def release(self, format: str, push: AsyncPushStream) -> None:
        """Keep ``push`` for the next answer of ``format`` (or close it: enough are idle)."""
        idle = self._idle.setdefault(format, [])
        if not push.closed and len(idle) < IDLE:
            idle.append(push)
        else:
            self.discard(push)

    def discard(self, push: AsyncPushStream) -> None:
        """Close ``push`` in the background (:meth:`close` waits for it)."""
        task = asyncio.ensure_future(self._close(push))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(push: AsyncPushStream) -> None:
        try:
            await push.__aexit__(None, None, None)
        except (ClientError, OSError):
            pass

    # -- the daemon's state, said once per change ---------------------------

    def reached(self) -> None:
        if self._down:
            self._down = False
            logger.warning("the warpd daemon answers again: capturing to session {!r}",
                           self.session)

    def unreachable(self, error: ClientError) -> None:
        if not self._down:
            self._down = True
            logger.warning("{}: forwarding goes on without capture", error)

    def unsupported(self, coding: str, log: Any) -> None:
        if coding not in self._warned_encodings:
            self._warned_encodings.add(coding)
            log.warning("answers with Content-Encoding {} are forwarded but not captured",
                        coding)


class ResponseTee:
    """One request's answer on its way into the session (see the module docstring).

    The proxy calls :meth:`answer` when the upstream's status and headers
    arrive, :meth:`feed` with each piece of the body it forwarded, then one
    of :meth:`end` (the answer is complete), :meth:`abort` (it was cut
    short) or :meth:`fail` (no answer at all). None of them waits.
    """

    def __init__(self, sink: CaptureSink, format: str, body: bytes, log: Any) -> None:
        self.sink = sink
        self.format = format
        self.log = log
        self._ops: deque[tuple[str, Any]] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._closed = False
        # The copy was given up (no daemon, fell behind): feed() ignores.
        self._dropped = False
        self._mode: Mode | None = None
        self._decoder: ContentDecoder | None = None
        self._whole: list[bytes] = []
        self._whole_size = 0
        self._status = (0, "")
        self.task = asyncio.ensure_future(self._run(body))
        self.task.add_done_callback(lambda _: sink.tees.discard(self))

    # -- the proxy's side: never waits ---------------------------------------

    def answer(self, status: int, reason: str, content_type: str,
               content_encoding: str | None) -> bool:
        """The upstream answered: decide how to copy it. False if it will not be captured."""
        self._status = (status, reason)
        if status >= 400:
            mode: Mode | None = "error"
        elif content_type in STREAMED_TYPES:
            mode = "stream"
        elif content_type == "application/json":
            mode = "whole"
        else:
            mode = None
        if mode is None:
            self.abort(f"answer not captured: HTTP {status} {content_type or 'without a type'}")
            return False
        try:
            self._decoder = content_decoder(content_encoding, self.sink.limit)
        except UnsupportedEncoding as exc:
            self.sink.unsupported(str(exc), self.log)
            self.abort(f"answer not captured: Content-Encoding {exc}")
            return False
        self._mode = mode
        return True

    def feed(self, chunk: bytes) -> None:
        """A piece of the answer's body, as forwarded."""
        if self._dropped or self._closed or self._mode is None:
            return
        self._queued += len(chunk)
        if self._queued > self.sink.limit:
            self._ops.clear()
            self._give_up(
                f"the capture fell behind by over {self.sink.limit // (1024 * 1024)} MiB; "
                "the rest of the answer was not captured"
            )
            return
        self._post("data", chunk)

    def end(self) -> None:
        """The answer is complete."""
        self._post("end", None)
        self._closed = True

    def abort(self, reason: str) -> None:
        """The answer was cut short (or will not be captured): end the stream as aborted."""
        self._post("abort", reason)
        self._closed = True

    def fail(self, message: str) -> None:
        """No answer came (the upstream could not be reached): the stream shows ``message``."""
        self._post("fail", message)
        self._closed = True

    def _post(self, op: str, value: Any) -> None:
        if self._closed:
            return
        self._ops.append((op, value))
        self._wake.set()

    def _give_up(self, reason: str) -> None:
        self._dropped = True
        self._ops.append(("abort", reason))
        self._closed = True
        self._wake.set()

    # -- the tee's task --------------------------------------------------------

    async def _next(self) -> tuple[str, Any]:
        while not self._ops:
            self._wake.clear()
            await self._wake.wait()
        op = self._ops.popleft()
        if op[0] == "data":
            self._queued -= len(op[1])
        return op

    async def _run(self, body: bytes) -> None:
        started = time.monotonic()
        push: AsyncPushStream | None = None
        try:
            request = summarise_request(body)
            del body
            push, reused = await self.sink.connection(self.format)
            try:
                await push.open(request)
            except ClientError:
                if not reused:
                    raise
                # The idle connection died meanwhile (the daemon restarted): a new one.
                self.sink.discard(push)
                push = None
                push = await self.sink.new_connection(self.format)
                await push.open(request)
            self.sink.reached()
            while await self._apply(push, *await self._next()):
                pass
            # Complete the stream as the end of input does (aborted if its
            # provider never ended it); the connection stays for the next.
            await push.finish()
            self.sink.release(self.format, push)
            push = None
            self.log.debug("answer captured in {:.2f}s", time.monotonic() - started)
        except PushRejected as exc:
            # The daemon ended the stream with an error block saying the same.
            self.log.warning("warpd could not read this answer: {}", exc)
        except DaemonUnavailable as exc:
            self.sink.unreachable(exc)
        except ClientError as exc:
            self.sink.unreachable(ClientError(f"lost the warpd daemon ({exc})"))
        except Exception as exc:  # a bug of ours: the copy is lost, never the client's answer
            self.log.error("capture failed: {}: {}", type(exc).__name__, exc)
        finally:
            self._dropped = True
            self._ops.clear()
            if push is not None:
                # Cancelled (shutdown) or failed mid-stream: this connection's
                # state is unknown; closing it ends its stream as aborted.
                self.sink.discard(push)

    async def _apply(self, push: AsyncPushStream, op: str, value: Any) -> bool:
        """Carry out one operation; False once the stream is over."""
        if op == "data":
            return await self._data(push, value)
        if op == "end":
            await self._end(push)
        elif op == "abort":
            await push.abort(value)
        elif op == "fail":
            for event in failure_events(self.format, value):
                await push.push(event)
        return False

    async def _data(self, push: AsyncPushStream, chunk: bytes) -> bool:
        try:
            if self._decoder is not None:
                chunk = self._decoder.decode(chunk)
        except (DecodedTooLarge, zlib.error) as exc:
            await self._stop(push, exc)
            return False
        if self._mode == "stream":
            if chunk:
                await push.push(chunk)
            return True
        self._whole_size += len(chunk)
        if self._whole_size > self.sink.limit:
            await self._stop(push, DecodedTooLarge())
            return False
        self._whole.append(chunk)
        return True

    async def _end(self, push: AsyncPushStream) -> None:
        try:
            rest = self._decoder.flush() if self._decoder is not None else b""
        except (DecodedTooLarge, zlib.error) as exc:
            await self._stop(push, exc)
            return
        if self._mode == "stream":
            if rest:
                await push.push(rest)
            return
        body = b"".join([*self._whole, rest])
        self._whole = []
        status, reason = self._status
        try:
            if self._mode == "error":
                events = error_events(self.format, status, reason, body)
            else:
                events = completion_events(self.format, body)
        except InputError as exc:
            await push.abort(f"answer not captured: {exc}")
            return
        for event in events:
            await push.push(event)

    async def _stop(self, push: AsyncPushStream, exc: Exception) -> None:
        """Give the copy up on a body we cannot decode, or that decodes too large."""
        self._dropped = True
        if isinstance(exc, DecodedTooLarge):
            reason = f"answer not captured past {self.sink.limit // (1024 * 1024)} MiB"
        else:
            reason = f"answer not captured: its Content-Encoding did not decode ({exc})"
        await push.abort(reason)
