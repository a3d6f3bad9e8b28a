"""The daemon's life cycle: start listening, serve until a signal, shut down; reload.

SIGTERM and SIGINT stop it gracefully. SIGHUP depends on who started it:
under systemd it is the reload signal (``ExecReload=kill -HUP``); in a
terminal it means the terminal closed, and the daemon stops with it. A reload
can also be asked over the socket (``/reload``, what ``warpd reload`` does).

``Server(config).run()`` is both what ``warpd serve`` does and the
programmatic API. The rooms it wires together, along the data path:
:mod:`~warpd.daemon.listeners` accept connections and hand each to
:meth:`Server.handle`, which routes it to :mod:`~warpd.daemon.producers`
(frames in, blocks published to the hub) or :mod:`~warpd.daemon.subscribers`
(each outbox drained to its socket); :mod:`~warpd.daemon.hub` (or, with
``[broker] url``, :mod:`warpd.broker.hub`) numbers, records and fans out.
Close codes are listed in :mod:`~warpd.daemon.frames`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from loguru import logger
from websockets.asyncio.server import ServerConnection

from warpd import __version__
from warpd.address import Address, parse_address
from warpd.config import (
    Config,
    default_config_path,
    default_socket_path,
    history_path,
    load_config,
)
from warpd.daemon.hub import Hub
from warpd.daemon.listeners import Listeners
from warpd.daemon.logs import configure_logging
from warpd.daemon.producers import Producers
from warpd.daemon.routes import (
    PushRoute,
    ReloadRoute,
    StatusRoute,
    SubscribeRoute,
    parse_route,
)
from warpd.daemon.sdnotify import SystemdNotifier
from warpd.daemon.subscribers import Subscribers
from warpd.errors import ConfigError, StoreError
from warpd.protocol import BlocksMessage, ReloadMessage, StatusMessage, encode

if TYPE_CHECKING:
    from warpd.broker.hub import RedisHub
    from warpd.daemon.history_store import HistoryStore

__all__ = ["STATUS_PERIOD", "Server", "under_systemd"]

# How often STATUS= is refreshed for `systemctl status` (only when it changed).
STATUS_PERIOD = 1.0


def under_systemd(environ: dict[str, str] | os._Environ[str]) -> bool:
    """Whether systemd runs this process (so SIGHUP means "reload", not "the terminal closed").

    NOTIFY_SOCKET is set for a Type=notify unit. INVOCATION_ID is set for every
    unit, but also inherited by whatever a unit starts (a tmux server run from a
    user unit, and so every shell in it): it counts only for a process with no
    controlling terminal, which a service never has.
    """
    if environ.get("NOTIFY_SOCKET"):
        return True
    return bool(environ.get("INVOCATION_ID")) and not has_controlling_terminal()


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal (``/dev/tty`` opens)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


class Server:
    """One warpd daemon: call :meth:`run` (blocking) or ``await serve()``.

    ``listen`` overrides the config's addresses; ``config_path`` is the file
    a reload re-reads (None: the default one). After :meth:`startup`,
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
        # [broker] url: sessions shared through Redis (imported only then).
        self._redis: RedisHub | None = None
        if config.broker.url:
            try:
                import redis  # noqa: F401
            except ModuleNotFoundError:
                # Not `pip install warpd[redis]`: that names a package on PyPI,
                # not the checkout this warpd was installed from.
                raise ConfigError(
                    "[broker] url needs the Redis client (warpd's redis extra), which this "
                    "warpd lacks: `pipx inject warpd redis`; with uv, `uv tool install "
                    "--force --with redis .` in the checkout; in a virtualenv, `pip install "
                    "'.[redis]'`"
                ) from None
            from warpd.broker.hub import RedisHub

        # [history] persist: the history file, or memory only when it cannot be used.
        self._store_error: str | None = None
        store = self._open_store(config) if config.history.persist else None
        if config.broker.url:
            self._redis = RedisHub(config, store)
        self.hub: Hub = self._redis or Hub(config, store)
        self.started = time.monotonic()
        self.listeners = Listeners(config, self.handle)
        self.producers = Producers(self.hub, self._publish_reply)
        self.subscribers = Subscribers(self.hub)
        self._conn_ids = itertools.count(1)
        self._stop: asyncio.Event | None = None
        self._signals = 0

    def _open_store(self, config: Config) -> HistoryStore | None:
        """The history file, or None (said clearly in the log) when it cannot be used."""
        from warpd.daemon.history_store import HistoryStore

        path = history_path(config)
        try:
            store = HistoryStore.open(path, config.history, own_dir=not config.history.path)
        except StoreError as exc:
            # Said once listening: a second `warpd serve` on the same socket
            # (whose history file the first one holds) says only that.
            self._store_error = str(exc)
            return None
        logger.info("history file {}", path)
        return store

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
        # Before the notifier takes NOTIFY_SOCKET out of the environment.
        systemd = under_systemd(os.environ)
        self.notifier = SystemdNotifier.from_environment()
        self._stop = asyncio.Event()
        # Handlers first: a client may connect (and a signal come) as soon as
        # a socket is bound, before startup() has bound them all; a stop
        # asked for meanwhile is acted on once startup is done.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        if systemd:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        elif signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            # (Ignored, it was meant to be: `nohup warpd serve`.)
            loop.add_signal_handler(signal.SIGHUP, self._on_signal, signal.SIGHUP)
        await self.startup()
        background = [
            asyncio.create_task(self._sweep()),
            asyncio.create_task(self.listeners.watch_sockets()),
        ]
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
        if signum == signal.SIGHUP and self._signals:
            # A closing terminal hangs up twice (the shell passes its SIGHUP on to
            # its jobs, then the kernel signals the foreground group as the shell
            # exits): nobody is asking twice, so the graceful shutdown goes on.
            return
        self._signals += 1
        if self._signals > 1:
            logger.warning("second {}: exiting now", signal.Signals(signum).name)
            os._exit(1)
        if signum == signal.SIGHUP:
            logger.info("SIGHUP (the terminal closed): shutting down; "
                        "`warpd reload` reloads the configuration")
        else:
            logger.info("{}: shutting down", signal.Signals(signum).name)
        self.stop()

    def reload(self) -> bool:
        """Re-read the config file (:meth:`reload_config`); True if the new one is in use."""
        return self.reload_config().ok

    def reload_config(self) -> ReloadMessage:
        """Re-read the config file (SIGHUP under systemd, ``/reload``); what happened.

        A bad file is logged and the old config kept (``ok`` false, the
        message says why). Limits, history bounds, the log level and the TCP
        token, origins and hosts apply at once; listen addresses and TLS files
        need a restart.
        """
        self.notifier.reloading("reloading the configuration")
        # Named, so the user knows which file was read (or that none was).
        default = default_config_path()
        source = (
            str(self.config_path) if self.config_path
            else str(default) if default.exists()
            else f"the defaults (there is no {default})"
        )
        listeners = self.listeners
        try:
            new = load_config(self.config_path)
            token = listeners.load_token(new) if listeners.token is not None else None
        except ConfigError as exc:
            logger.error("reload failed, keeping the current configuration: {}", exc)
            self.notifier.ready(f"reload failed, old configuration kept: {exc}")
            return ReloadMessage(
                False, f"reload failed, keeping the current configuration: {exc}", os.getpid()
            )
        old = self.config
        if new.server.listen != old.server.listen or (
            (new.tcp.tls_cert, new.tcp.tls_key) != (old.tcp.tls_cert, old.tcp.tls_key)
        ):
            logger.warning("listen addresses and TLS files change only when warpd restarts")
        if new.broker != old.broker:
            logger.warning("the [broker] section changes only when warpd restarts")
            new = msgspec.structs.replace(new, broker=old.broker)
        if (new.history.persist, new.history.path) != (old.history.persist, old.history.path):
            logger.warning("[history] persist and path change only when warpd restarts")
            history = msgspec.structs.replace(
                new.history, persist=old.history.persist, path=old.history.path
            )
            new = msgspec.structs.replace(new, history=history)
        if self.hub.store is not None:
            self.hub.store.config = new.history
        if new.log.level != old.log.level:
            configure_logging(new.log.level)
        self.config = self.hub.config = listeners.config = new
        if token is not None:
            listeners.token = token
        logger.info("reloaded the configuration from {}", source)
        self.notifier.ready(self.status_line())
        return ReloadMessage(True, f"reloaded the configuration from {source}", os.getpid())

    def status_line(self) -> str:
        """One line for ``systemctl status``: what the daemon is doing right now."""
        sessions = self.hub.sessions.values()
        counts = (
            (len(sessions), "session"),
            (sum(len(session.live) for session in sessions), "live stream"),
            (len(self.producers.connected), "producer"),
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
        # Before anyone connects: streams the last run left unfinished end now.
        recovered = self.hub.recover()
        if recovered:
            logger.warning(
                "completed {} stream(s) as aborted that were live when the daemon last "
                "stopped without ending them: {}", len(recovered), " ".join(recovered[:20]),
            )
        self.addresses = await self.listeners.start(self.addresses, self._explicit_listen)
        if self._store_error is not None:
            logger.error(
                "{}: running with history in memory only (nothing is kept across restarts); "
                "move the file aside or fix its directory, or set [history] persist = false",
                self._store_error,
            )

    async def shutdown(self) -> None:
        """Stop accepting, abort live streams, flush subscribers, close them with 1001.

        Bounded: producers and subscribers get ``limits.shutdown_timeout``
        seconds to take what is theirs and the close; whoever has not by then
        (a stopped process, a dead peer) has its connection dropped.
        """
        producers, subscribers = self.producers, self.subscribers
        producers.closing = subscribers.closing = True
        reason = "daemon shutting down"
        self.listeners.close()
        closes = asyncio.gather(
            *(producers.finish(p, 1001, reason) for p in list(producers.connected))
        )
        timeout = self.config.limits.shutdown_timeout
        if self._redis is not None:
            # The aborted finals reach this daemon's subscribers through Redis:
            # let them be published and come back before subscribers close.
            await asyncio.sleep(0)
            await self._redis.link.flush(timeout)
        subscribers.close_all(1001, reason)
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(closes, timeout)
        except TimeoutError:
            pass
        while subscribers.links and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stuck = [link.connection for link in subscribers.links.values()] + [
            p.connection for p in producers.connected
        ]
        if stuck:
            logger.warning(
                "{} connection(s) still open after {}s; dropping them", len(stuck), timeout
            )
            for ws in stuck:
                ws.transport.abort()
        await self.listeners.wait_closed(timeout)
        self.listeners.remove_sockets()
        if self._redis is not None:
            await self._redis.link.stop()
        if self.hub.store is not None:
            # Everything published, the aborted finals included, reaches the file.
            await asyncio.to_thread(self.hub.store.close)
        logger.info("stopped")

    async def _sweep(self) -> None:
        """Once a second: time out silent producers and subscribers stuck too long."""
        limits = self.config.limits
        period = min(1.0, limits.producer_idle_timeout / 4, limits.stall_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            self.producers.sweep(now)
            self.subscribers.sweep(now)
            self.hub.expire()

    # -- connections --------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one connection whose handshake passed: to the handler of its route."""
        conn_id = f"c{next(self._conn_ids)}"
        log = logger.bind(conn=conn_id)
        route = parse_route(ws.request.path if ws.request else "/")
        match route:
            case PushRoute():
                log.info("push session={} format={}", route.session, route.format)
                await self.producers.handle(ws, route, log)
            case SubscribeRoute():
                log.info("subscribe sessions={}", ",".join(route.sessions))
                await self.subscribers.handle(ws, route, conn_id, log)
            case StatusRoute():
                await ws.send(encode(self.status()), text=True)
            case ReloadRoute():
                log.info("reload asked over the socket")
                await ws.send(encode(self.reload_config()), text=True)

    async def _publish_reply(self, message: BlocksMessage) -> bytes:
        """Publish a message the producer gets too; the bytes as subscribers get them."""
        if self._redis is not None:
            return await self._redis.publish_reply(message)
        return self.hub.publish(message)

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
            history={**self.hub.summary(), "store_error": self._store_error},
        )
