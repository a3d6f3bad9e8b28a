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
import functools
import itertools
import os
import signal
import socket
import ssl
import stat
import struct
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from loguru import logger
from websockets.asyncio.server import Server as WSServer
from websockets.asyncio.server import ServerConnection, serve, unix_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from warpd import __version__
from warpd.activation import systemd_listen_sockets
from warpd.address import Address, parse_address
from warpd.auth import (
    check_tcp_handshake,
    is_loopback_host,
    load_or_create_token,
    prepare_socket_dir,
    validate_token,
)
from warpd.config import Config, default_socket_path, default_token_path, load_config, runtime_dir
from warpd.errors import ConfigError, InputError
from warpd.hub import Hub, HubLimitError, Subscriber
from warpd.ingest.producer import ProducerStreams
from warpd.logging_setup import configure_logging
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
from warpd.sdnotify import SystemdNotifier

if TYPE_CHECKING:
    from warpd.redis_hub import RedisHub

CLOSE_BAD_INPUT = 1007
CLOSE_IDLE = 1008
CLOSE_LIMIT = 1013
CLOSE_TOO_SLOW = 4008


# How often STATUS= is refreshed for `systemctl status` (only when it changed).
STATUS_PERIOD = 1.0

# Messages larger than this go out as fragments of this size: the same bytes
# are sliced for every subscriber, so a big final or snapshot costs each
# socket at most one fragment of framing copy, not a copy of the message.
FRAGMENT_BYTES = 256 * 1024

# A subscriber asked to close (too slow) that cannot even take the close frame
# within this many seconds has its connection dropped.
CLOSE_GRACE = 10.0


class _Producer:
    """A push connection's state, for the idle sweep and for shutdown."""

    __slots__ = ("streams", "connection", "last_frame", "log")

    def __init__(self, streams: ProducerStreams, connection: ServerConnection, log: Any) -> None:
        self.streams = streams
        self.connection = connection
        self.last_frame = time.monotonic()
        self.log = log


class _SubscriberLink:
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
        self, connection: ServerConnection, wake: asyncio.Event, hub: Hub, batcher: _WriteBatcher
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
                parts += (_text_frame_header(len(data)), data)
                self.hub.note_sent(subscriber, session, seq)
            # The same payload bytes for every subscriber, no per-subscriber copy.
            self.connection.transport.writelines(parts)
        except Exception:  # the connection broke under us: the writer task sees it
            self.wake.set()


class _WriteBatcher:
    """Writes each subscriber that got messages once per event-loop iteration.

    Messages published in one iteration (a producer's burst of frames) then
    cost one system call per subscriber rather than one per message, which is
    what websockets' own broadcast, writing frame by frame, cannot do.
    """

    def __init__(self) -> None:
        self._links: dict[_SubscriberLink, None] = {}
        self._scheduled = False

    def add(self, link: _SubscriberLink) -> None:
        self._links[link] = None
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        links, self._links = self._links, {}
        self._scheduled = False
        for link in links:
            link.write_now()


class Server:
    """One warpd daemon: call :meth:`run` (blocking) or ``await serve()``.

    ``listen`` overrides the config's addresses; ``config_path`` is the file
    SIGHUP re-reads (None: the default one). After :meth:`startup`,
    ``addresses`` lists what the server listens on, with real port numbers.
    Under systemd, sockets it passes (socket activation) replace the default
    Unix socket, and sd_notify reports readiness, status, reloads and stopping.
    """

    def __init__(
        self,
        config: Config,
        *,
        listen: list[str] | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        texts = listen if listen else config.server.listen
        # Addresses given explicitly are bound even when systemd passes sockets.
        self._explicit_listen = bool(texts)
        self.addresses: list[Address] = [parse_address(t) for t in texts] or [
            Address("unix", path=str(default_socket_path()))
        ]
        self.notifier = SystemdNotifier(None)
        # The TCP bearer token, loaded when the first TCP listener starts.
        self._token: str | None = None
        # [broker] url: sessions shared through Redis (imported only then).
        self._redis: RedisHub | None = None
        if config.broker.url:
            try:
                import redis  # noqa: F401
            except ModuleNotFoundError:
                raise ConfigError(
                    "[broker] url needs the Redis client, an extra: install warpd[redis] "
                    "(pipx install 'warpd[redis]', or pip install 'warpd[redis]' in a venv)"
                ) from None
            from warpd.redis_hub import RedisHub

            self._redis = RedisHub(config)
        self.hub: Hub = self._redis or Hub(config)
        self.started = time.monotonic()
        self._servers: list[WSServer] = []
        self._producers: set[_Producer] = set()
        self._subscribers: dict[Subscriber, _SubscriberLink] = {}
        self._batcher = _WriteBatcher()
        # Set once shutdown begins: producers stop being read, writers close.
        self._closing = False
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
        self.notifier = SystemdNotifier.from_environment()
        self._stop = asyncio.Event()
        await self.startup()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        background = [asyncio.create_task(self._sweep())]
        if self.notifier.enabled:
            background.append(asyncio.create_task(self._report_status()))
        if self.notifier.watchdog_interval is not None:
            background.append(asyncio.create_task(self._ping_watchdog()))
        self.notifier.ready(self.status_line())
        try:
            await self._stop.wait()
        finally:
            self.notifier.stopping("shutting down")
            for task in background:
                task.cancel()
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

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP); a bad file is logged and the old config kept.

        Limits, history bounds, the log level and the TCP token, origins and
        hosts apply at once; listen addresses and TLS files need a restart.
        Returns True if the new configuration is in use.
        """
        self.notifier.reloading("reloading the configuration")
        source = self.config_path or "the default config file"
        try:
            new = load_config(self.config_path)
            token = self._load_token(new) if self._token is not None else None
        except ConfigError as exc:
            logger.error("reload failed, keeping the current configuration: {}", exc)
            self.notifier.ready(f"reload failed, old configuration kept: {exc}")
            return False
        old = self.config
        if new.server.listen != old.server.listen or (
            (new.tcp.tls_cert, new.tcp.tls_key) != (old.tcp.tls_cert, old.tcp.tls_key)
        ):
            logger.warning("listen addresses and TLS files change only when warpd restarts")
        if new.broker != old.broker:
            logger.warning("the [broker] section changes only when warpd restarts")
            new = msgspec.structs.replace(new, broker=old.broker)
        if new.log.level != old.log.level:
            configure_logging(new.log.level)
        self.config = self.hub.config = new
        if token is not None:
            self._token = token
        logger.info("reloaded the configuration from {}", source)
        self.notifier.ready(self.status_line())
        return True

    def status_line(self) -> str:
        """One line for ``systemctl status``: what the daemon is doing right now."""
        sessions = self.hub.sessions.values()
        counts = (
            (len(sessions), "session"),
            (sum(len(session.live) for session in sessions), "live stream"),
            (len(self._producers), "producer"),
            (self.hub.subscriber_count, "subscriber"),
        )
        line = ", ".join(f"{n} {noun}{'' if n == 1 else 's'}" for n, noun in counts)
        if self._redis is not None and not self._redis.link.connected:
            line += f", Redis {self._redis.link.state}: serving locally"
        return line

    async def _report_status(self) -> None:
        """Keep systemd's STATUS= current."""
        last = ""
        while True:
            await asyncio.sleep(STATUS_PERIOD)
            line = self.status_line()
            if line != last:
                self.notifier.status(line)
                last = line

    async def _ping_watchdog(self) -> None:
        """WATCHDOG=1 every half WatchdogSec, from the event loop: a stuck loop stops it."""
        interval = self.notifier.watchdog_interval
        assert interval is not None
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def startup(self) -> None:
        """Take systemd's sockets, bind every other address, start accepting connections.

        With a Redis broker, it first joins the sessions in Redis (or, if
        Redis is unavailable, starts serving locally and keeps trying).
        """
        if self._redis is not None:
            await self._redis.link.start()
        common: dict[str, Any] = {
            "process_request": self._check_request,
            # Producers' frames are bounded by limits.max_frame_bytes with a
            # clear error; this is only the hard stop for absurd frames.
            "max_size": 4 * self.config.limits.max_frame_bytes,
            # Per-message compression costs ~100 KiB per idle connection.
            "compression": None,
            "ping_interval": self.config.limits.ping_interval,
            "ping_timeout": self.config.limits.ping_interval,
            # A peer that misses its pong or never answers our close frame is
            # dropped this long after, so dead peers go as soon as they're found.
            "close_timeout": min(10.0, self.config.limits.ping_interval),
            "server_header": f"warpd/{__version__}",
        }
        listening: list[Address] = []
        activated = systemd_listen_sockets()
        for name, sock in activated:
            tls = sock.family != socket.AF_UNIX and bool(self.config.tcp.tls_cert)
            address = await self._listen(_socket_address(sock, tls), common, sock)
            logger.info("listening on {} (socket activation: {})", address, name)
            listening.append(address)
        # systemd's sockets stand in for the default address, not for explicit ones.
        wanted = self.addresses if self._explicit_listen or not activated else []
        for address in wanted:
            if address in listening:
                continue
            address = await self._listen(address, common, None)
            logger.info("listening on {}", address)
            listening.append(address)
        self.addresses = listening

    async def _listen(
        self, address: Address, common: dict[str, Any], sock: socket.socket | None
    ) -> Address:
        """Serve on ``address`` (binding it unless ``sock`` is given); the address served."""
        if address.kind == "unix":
            if sock is None:
                sock = _bind_unix(Path(address.path))
                self._unix_paths.append(Path(address.path))
            self._servers.append(await unix_serve(self._handle, sock=sock, **common))
            return address
        if not is_loopback_host(address.host) and not self.config.tcp.allow_non_loopback:
            raise ConfigError(
                f"refusing to listen on {address}: {address.host} is not a loopback address, "
                "so other machines could connect; to mean it, set allow_non_loopback = true "
                "in the [tcp] section of config.toml (see docs/security.md)"
            )
        if self._token is None:
            self._token = self._load_token(self.config)
        # The Host check needs the real port, known only once bound (port 0).
        listener = _TcpListener(address.port, address.tls)
        options = {
            **common,
            "process_request": partial(self._check_tcp_request, listener),
            "ssl": self._tls_context(address),
        }
        if sock is None:
            server = await serve(self._handle, address.host, address.port, **options)
        else:
            server = await serve(self._handle, sock=sock, **options)
        self._servers.append(server)
        listener.port = next(iter(server.sockets)).getsockname()[1]
        return Address("tcp", host=address.host, port=listener.port, tls=address.tls)

    def _load_token(self, config: Config) -> str:
        """The bearer token TCP clients must send: from the config, or the token file."""
        if config.tcp.token:
            return validate_token(config.tcp.token, where="config.toml [tcp] token")
        if config.tcp.token_file:
            path = Path(config.tcp.token_file).expanduser()
        else:
            path = default_token_path()
            prepare_socket_dir(path.parent)
        token = load_or_create_token(path)
        logger.info("TCP clients authenticate with the token in {}", path)
        return token

    def _tls_context(self, address: Address) -> ssl.SSLContext | None:
        """The TLS context of a wss:// listener; None (with a warning off loopback) for ws://."""
        tcp = self.config.tcp
        if not address.tls:
            if not is_loopback_host(address.host):
                logger.warning(
                    "INSECURE: {} is reachable from the network without TLS: the token and "
                    "every stream cross it in clear text; use wss:// with tls_cert and tls_key "
                    "in the [tcp] section of config.toml",
                    address,
                )
            return None
        if not tcp.tls_cert or not tcp.tls_key:
            raise ConfigError(
                f"{address}: wss:// needs tls_cert and tls_key in the [tcp] section of config.toml"
            )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(
                os.path.expanduser(tcp.tls_cert), os.path.expanduser(tcp.tls_key)
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the TLS certificate {tcp.tls_cert} and key {tcp.tls_key}: {exc}"
            ) from None
        return context

    async def shutdown(self) -> None:
        """Stop accepting, abort live streams, flush subscribers, close them with 1001.

        Bounded: producers and subscribers get ``limits.shutdown_timeout``
        seconds to take what is theirs and the close; whoever has not by then
        (a stopped process, a dead peer) has its connection dropped.
        """
        self._closing = True
        reason = "daemon shutting down"
        for server in self._servers:
            server.close(close_connections=False)
        closes = asyncio.gather(
            *(self._finish_producer(p, 1001, reason) for p in list(self._producers))
        )
        timeout = self.config.limits.shutdown_timeout
        if self._redis is not None:
            # The aborted finals reach this daemon's subscribers through Redis:
            # let them be published and come back before subscribers close.
            await asyncio.sleep(0)
            await self._redis.link.flush(timeout)
        for link in self._subscribers.values():
            link.ask_close(1001, reason)
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(closes, timeout)
        except TimeoutError:
            pass
        while self._subscribers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stuck = [link.connection for link in self._subscribers.values()] + [
            p.connection for p in self._producers
        ]
        if stuck:
            logger.warning(
                "{} connection(s) still open after {}s; dropping them", len(stuck), timeout
            )
            for ws in stuck:
                ws.transport.abort()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), timeout)
            except TimeoutError:
                logger.warning("connections still open after the shutdown timeout; leaving")
        for path in self._unix_paths:
            path.unlink(missing_ok=True)
        if self._redis is not None:
            await self._redis.link.stop()
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
                    reason = f"producer sent nothing for {limits.producer_idle_timeout:g}s"
                    producer.log.warning("{}: aborting its stream", reason)
                    self._spawn(self._finish_producer(producer, CLOSE_IDLE, reason))
            for subscriber, link in list(self._subscribers.items()):
                outbox = subscriber.outbox
                if link.close_code:
                    # Its writer could not even get to the close frame.
                    if now - link.close_asked > CLOSE_GRACE:
                        link.connection.transport.abort()
                elif outbox.behind and now - outbox.behind_since > limits.stall_timeout:
                    logger.bind(conn=subscriber.conn_id).warning(
                        "subscriber stuck for {:.0f}s: disconnecting", now - outbox.behind_since
                    )
                    link.ask_close(CLOSE_TOO_SLOW, "too slow: stuck behind for too long")

    async def _finish_producer(self, producer: _Producer, code: int, reason: str) -> None:
        """Complete a producer's live stream as aborted, send it the final message, close."""
        finals = [await self._publish_reply(m) for m in producer.streams.abort(reason)]
        ws = producer.connection
        try:
            for data in finals:
                await _send_message(ws, data)
        except ConnectionClosed:
            return
        await _close(ws, code, reason)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- connections --------------------------------------------------------------

    def _check_tcp_request(
        self, listener: _TcpListener, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Host, Origin and token checks of a TCP handshake (auth.py), then the route's."""
        assert self._token is not None
        tcp = self.config.tcp
        refusal = check_tcp_handshake(
            request.headers,
            token=self._token,
            port=listener.port,
            allowed_origins=tcp.allowed_origins,
            allowed_hosts=tcp.allowed_hosts,
            default_port=443 if listener.tls else 80,
        )
        if refusal is None:
            return self._check_request(connection, request)
        peer = connection.remote_address
        logger.warning(
            "refused a TCP handshake from {}: {} {}",
            f"{peer[0]}:{peer[1]}" if peer else "?",
            refusal.status.value,
            refusal.reason,
        )
        response = connection.respond(refusal.status, refusal.reason + "\n")
        if refusal.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="warpd"'
        return response

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
                await ws.send(encode(self.status()), text=True)

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
                if self._closing:
                    # shutdown() completed this producer's stream; ignore the rest.
                    break
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
                    if message.streaming:
                        self._publish(message)
                    else:
                        await _send_message(ws, await self._publish_reply(message))
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
                await _send_message(ws, await self._publish_reply(message))
            return False
        for message in streams.end():
            await _send_message(ws, await self._publish_reply(message))
        await ws.send(encode(EndMessage(streams=streams.streams)), text=True)
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
            await ws.send(encode(ErrorMessage(text, frame=frame, stream=stream)), text=True)
            await ws.close(code, _close_reason(str(exc)))
        except ConnectionClosed:
            pass

    async def _subscribe(
        self, ws: ServerConnection, route: SubscribeRoute, conn_id: str, log: Any
    ) -> None:
        hub = self.hub
        wake = asyncio.Event()
        link = _SubscriberLink(ws, wake, hub, self._batcher)
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
            await ws.close(CLOSE_LIMIT, _close_reason(str(exc)))
            return
        self._subscribers[subscriber] = link
        link.subscriber = subscriber
        if self._closing:
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
                        await _send_message(ws, data)
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
            del self._subscribers[subscriber]
            log.info("subscriber gone ({} resyncs)", subscriber.resyncs)

    def _publish(self, message: BlocksMessage) -> bytes:
        return self.hub.publish(message)

    async def _publish_reply(self, message: BlocksMessage) -> bytes:
        """Publish a message the producer gets too; the bytes as subscribers get them."""
        if self._redis is not None:
            return await self._redis.publish_reply(message)
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
            broker=self._redis.broker_status() if self._redis is not None else None,
        )


def _bind_unix(path: Path) -> socket.socket:
    """Bind a Unix socket at ``path`` with mode 0600; warpd's own directory must be ours, 0700."""
    directory = path.parent
    if directory == runtime_dir():
        prepare_socket_dir(directory)
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


class _TcpListener:
    """What the handshake checks of one TCP listener need to know about it."""

    __slots__ = ("port", "tls")

    def __init__(self, port: int, tls: bool) -> None:
        self.port = port
        self.tls = tls


def _socket_address(sock: socket.socket, tls: bool) -> Address:
    """The address a listening socket (e.g. one systemd passed) is bound to."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        # An abstract socket's name starts with NUL; "@" is how systemd writes it.
        return Address("unix", path="@" + path[1:] if path.startswith("\0") else path)
    return Address("tcp", host=name[0], port=name[1], tls=tls)


def _close_reason(text: str) -> str:
    """A close reason within the 123 bytes WebSocket allows."""
    data = text.encode()
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "…"


@functools.lru_cache(maxsize=4096)
def _text_frame_header(length: int) -> bytes:
    """The RFC 6455 header of an unfragmented text frame from a server (never masked)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


async def _send_message(ws: ServerConnection, data: bytes) -> None:
    """Send one encoded message as a text message, fragmented when it is large."""
    if len(data) <= FRAGMENT_BYTES:
        await ws.send(data, text=True)
        return
    view = memoryview(data)
    await ws.send(
        (view[i : i + FRAGMENT_BYTES] for i in range(0, len(data), FRAGMENT_BYTES)), text=True
    )


async def _close(ws: ServerConnection, code: int, reason: str) -> None:
    try:
        await ws.close(code, _close_reason(reason))
    except ConnectionClosed:
        pass
