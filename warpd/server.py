"""The daemon: websockets handlers around the hub, lifecycle and signals.

``Server(config).run()`` is both what ``warpd serve`` does and the
programmatic API. Handlers do little more than feed frames to a
:class:`~warpd.ingest.producer.ProducerStreams` and publish what it returns,
or drain a subscriber's outbox to its socket; every rule lives in the
sans-I/O core and the hub.

Close codes: 1000 done, 1001 daemon shutting down, 1007 bad input (the
error message before it says what and where), 1008 producer idle, 1013 a
limit refused the request, 4008 subscriber too slow for too long.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any

from loguru import logger
from websockets.asyncio.server import Server as WSServer
from websockets.asyncio.server import ServerConnection, serve, unix_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from warpd import __version__
from warpd.address import Address, parse_address
from warpd.config import Config, default_socket_path, runtime_dir
from warpd.errors import ConfigError, InputError
from warpd.hub import Hub, HubLimitError, Subscriber
from warpd.ingest.producer import ProducerStreams
from warpd.protocol import (
    CONTROL_PREFIX,
    BlocksMessage,
    EndMessage,
    ErrorMessage,
    StatusMessage,
    decode_control,
    encode,
)
from warpd.routes import PushRoute, RouteError, StatusRoute, SubscribeRoute, parse_route

CLOSE_BAD_INPUT = 1007
CLOSE_IDLE = 1008
CLOSE_LIMIT = 1013
CLOSE_TOO_SLOW = 4008


def configure_logging(level: str) -> None:
    """Send loguru's records to stderr, one structured line each, with the connection id."""
    logger.remove()
    logger.configure(extra={"conn": "-"})
    logger.add(
        sys.stderr,
        level=level,
        format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} [{extra[conn]}] {message}",
        colorize=False,
        backtrace=False,
        diagnose=False,
    )


class _Producer:
    """A push connection's state, for the idle sweep and for shutdown."""

    __slots__ = ("streams", "connection", "last_frame", "log")

    def __init__(self, streams: ProducerStreams, connection: ServerConnection, log: Any) -> None:
        self.streams = streams
        self.connection = connection
        self.last_frame = time.monotonic()
        self.log = log


class Server:
    """One warpd daemon: call :meth:`run` (blocking) or ``await serve()``.

    ``listen`` overrides the config's addresses. ``ready`` is set once every
    listener accepts connections; ``addresses`` then lists them.
    """

    def __init__(self, config: Config, *, listen: list[str] | None = None) -> None:
        self.config = config
        texts = listen if listen else config.server.listen
        self.addresses: list[Address] = [parse_address(t) for t in texts] or [
            Address("unix", path=str(default_socket_path()))
        ]
        self.hub = Hub(config)
        self.started = time.monotonic()
        self._servers: list[WSServer] = []
        self._producers: set[_Producer] = set()
        self._subscribers: dict[Subscriber, ServerConnection] = {}
        self._conn_ids = itertools.count(1)
        self._stop: asyncio.Event | None = None
        self._signals = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._unix_paths: list[Path] = []

    # -- lifecycle ----------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then shut down gracefully; return the exit status."""
        try:
            import uvloop
        except ImportError:  # uvloop is optional on platforms without it
            runner = asyncio.run
        else:
            runner = uvloop.run
        runner(self.serve())
        return 0

    async def serve(self) -> None:
        """Start listening, serve until asked to stop, then shut down."""
        self._stop = asyncio.Event()
        await self.startup()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        sweeper = asyncio.create_task(self._sweep())
        try:
            await self._stop.wait()
        finally:
            sweeper.cancel()
            await self.shutdown()

    def stop(self) -> None:
        """Ask a running server to shut down gracefully."""
        if self._stop is not None:
            self._stop.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("second {}: exiting now", signal.Signals(signum).name)
            os._exit(1)
        logger.info("{}: shutting down", signal.Signals(signum).name)
        self.stop()

    async def startup(self) -> None:
        """Bind every address and start accepting connections."""
        common: dict[str, Any] = {
            "process_request": self._check_request,
            # Producers' frames are bounded by limits.max_frame_bytes with a
            # clear error; this is only the hard stop for absurd frames.
            "max_size": 4 * self.config.limits.max_frame_bytes,
            # Per-message compression costs ~100 KiB per idle connection.
            "compression": None,
            "ping_interval": self.config.limits.ping_interval,
            "ping_timeout": self.config.limits.ping_interval,
            "server_header": f"warpd/{__version__}",
        }
        for address in self.addresses:
            if address.kind == "unix":
                sock = _bind_unix(Path(address.path))
                self._unix_paths.append(Path(address.path))
                server = await unix_serve(self._handle, sock=sock, **common)
            else:
                if address.tls:
                    raise ConfigError(f"{address}: TLS listeners are not supported yet")
                server = await serve(self._handle, address.host, address.port, **common)
            self._servers.append(server)
            logger.info("listening on {}", address)

    async def shutdown(self) -> None:
        """Stop accepting, abort live streams, flush subscribers, close them with 1001."""
        for server in self._servers:
            server.close(close_connections=False)
        for producer in list(self._producers):
            self._publish_all(producer.streams.abort("daemon shutting down"))
            await _close(producer.connection, 1001, "daemon shutting down")
        deadline = time.monotonic() + self.config.limits.shutdown_timeout
        while time.monotonic() < deadline and any(len(s.outbox) for s in self._subscribers):
            await asyncio.sleep(0.02)
        await asyncio.gather(
            *(_close(ws, 1001, "daemon shutting down") for ws in self._subscribers.values())
        )
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), self.config.limits.shutdown_timeout)
            except TimeoutError:
                logger.warning("connections still open after the shutdown timeout; leaving")
        for path in self._unix_paths:
            path.unlink(missing_ok=True)
        logger.info("stopped")

    async def _sweep(self) -> None:
        """Once a second: time out silent producers and subscribers stuck too long."""
        limits = self.config.limits
        period = min(1.0, limits.producer_idle_timeout / 4, limits.stall_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for producer in list(self._producers):
                idle = now - producer.last_frame
                if producer.streams.live is not None and idle > limits.producer_idle_timeout:
                    reason = f"producer sent nothing for {idle:.0f}s"
                    producer.log.warning("{}: aborting its stream", reason)
                    self._publish_all(producer.streams.abort(reason))
                    self._spawn(_close(producer.connection, CLOSE_IDLE, reason))
            for subscriber, ws in list(self._subscribers.items()):
                outbox = subscriber.outbox
                if outbox.behind and now - outbox.behind_since > limits.stall_timeout:
                    logger.bind(conn=subscriber.conn_id).warning(
                        "subscriber stuck for {:.0f}s: disconnecting", now - outbox.behind_since
                    )
                    self._spawn(_close(ws, CLOSE_TOO_SLOW, "too slow: stuck behind for too long"))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- connections --------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse bad requests with an HTTP status before the WebSocket opens."""
        try:
            parse_route(request.path)
        except RouteError as exc:
            logger.info("refused {}: {} {}", request.path[:200], exc.status, exc.message)
            return connection.respond(exc.status, exc.message + "\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn_id = f"c{next(self._conn_ids)}"
        log = logger.bind(conn=conn_id)
        route = parse_route(ws.request.path if ws.request else "/")
        match route:
            case PushRoute():
                log.info("push session={} format={}", route.session, route.format)
                await self._push(ws, route, log)
            case SubscribeRoute():
                log.info("subscribe sessions={}", ",".join(route.sessions))
                await self._subscribe(ws, route, conn_id, log)
            case StatusRoute():
                await ws.send(encode(self.status()))

    async def _push(self, ws: ServerConnection, route: PushRoute, log: Any) -> None:
        hub = self.hub
        streams = ProducerStreams(
            route.session,
            route.format,
            lambda: hub.new_stream_id(route.session),
            max_frame_bytes=self.config.limits.max_frame_bytes,
            on_start=hub.stream_started,
        )
        producer = _Producer(streams, ws, log)
        self._producers.add(producer)
        reason = "producer disconnected before the end of its stream"
        try:
            async for frame in ws:
                producer.last_frame = time.monotonic()
                data = frame.encode() if isinstance(frame, str) else frame
                try:
                    if data.startswith(CONTROL_PREFIX):
                        if await self._control(ws, streams, data):
                            return
                        continue
                    messages = streams.feed(data)
                except (InputError, HubLimitError) as exc:
                    await self._refuse(ws, streams, exc, log)
                    return
                for message in messages:
                    data = self._publish(message)
                    if not message.streaming:
                        await ws.send(data)
        except ConnectionClosed as exc:
            reason = f"producer connection lost ({exc})"
        finally:
            self._producers.discard(producer)
            for message in streams.abort(reason):
                log.info("stream {} aborted: {}", message.stream, reason)
                self._publish(message)

    async def _control(self, ws: ServerConnection, streams: ProducerStreams, data: bytes) -> bool:
        """Act on a producer control frame; return True when the connection is done."""
        try:
            control = decode_control(data)
        except Exception as exc:  # msgspec.DecodeError or ValidationError
            raise InputError(f"bad control frame: {exc}", frame=streams.frames + 1) from None
        streams.frames += 1
        if control.warpd == "abort":
            for message in streams.abort(control.reason or "aborted by the producer"):
                await ws.send(self._publish(message))
            return False
        for message in streams.end():
            await ws.send(self._publish(message))
        await ws.send(encode(EndMessage(streams=streams.streams)))
        return True

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
            self._publish(message)
            stream = message.stream
        try:
            await ws.send(encode(ErrorMessage(text, frame=frame, stream=stream)))
            await ws.close(code, _close_reason(str(exc)))
        except ConnectionClosed:
            pass

    async def _subscribe(
        self, ws: ServerConnection, route: SubscribeRoute, conn_id: str, log: Any
    ) -> None:
        hub = self.hub
        wake = asyncio.Event()
        try:
            subscriber = hub.subscribe(
                conn_id,
                route.sessions,
                wake.set,
                since=route.since,
                epoch=route.epoch,
                replay=route.replay,
            )
        except HubLimitError as exc:
            log.warning("refused: {}", exc)
            await ws.send(encode(ErrorMessage(str(exc))))
            await ws.close(CLOSE_LIMIT, _close_reason(str(exc)))
            return
        self._subscribers[subscriber] = ws
        closed = asyncio.ensure_future(ws.wait_closed())
        closed.add_done_callback(lambda _: wake.set())
        outbox = subscriber.outbox
        try:
            while not closed.done():
                await wake.wait()
                wake.clear()
                if outbox.behind:
                    log.info("behind: {} messages dropped, resynchronising", outbox.dropped)
                    hub.resync(subscriber)
                for session, seq, data in outbox.take():
                    await ws.send(data)
                    hub.note_sent(subscriber, session, seq)
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            hub.unsubscribe(subscriber)
            del self._subscribers[subscriber]
            log.info("subscriber gone ({} resyncs)", subscriber.resyncs)

    def _publish(self, message: BlocksMessage) -> bytes:
        return self.hub.publish(message)

    def _publish_all(self, messages: list[BlocksMessage]) -> None:
        for message in messages:
            self.hub.publish(message)

    def status(self) -> StatusMessage:
        """The daemon's status, as ``/status`` answers it."""
        return StatusMessage(
            version=__version__,
            epoch=self.hub.epoch,
            pid=os.getpid(),
            uptime=round(time.monotonic() - self.started, 3),
            listen=[str(a) for a in self.addresses],
            sessions=self.hub.status(),
        )


def _bind_unix(path: Path) -> socket.socket:
    """Bind a Unix socket at ``path`` with mode 0600; warpd's own directory must be ours, 0700."""
    directory = path.parent
    if directory == runtime_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
        if info.st_uid != os.getuid():
            raise ConfigError(
                f"{directory} belongs to uid {info.st_uid}, not to us: refusing to use it"
            )
        if info.st_mode & 0o077:
            os.chmod(directory, 0o700)
    elif not directory.is_dir():
        raise ConfigError(f"cannot listen at {path}: directory {directory} does not exist")
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket: refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket left by a daemon that died
        else:
            raise ConfigError(f"another warpd is already serving at {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The socket must never exist with looser permissions, not even briefly.
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    return sock


def _close_reason(text: str) -> str:
    """A close reason within the 123 bytes WebSocket allows."""
    data = text.encode()
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "…"


async def _close(ws: ServerConnection, code: int, reason: str) -> None:
    try:
        await ws.close(code, _close_reason(reason))
    except ConnectionClosed:
        pass
