"""Where the daemon listens: Unix sockets, TCP (ws:// and wss://), sockets systemd passes.

:class:`Listeners` binds each address (or takes the socket systemd passed for
it) and serves it with websockets, every connection going to one handler.
Before a WebSocket opens, its request path must name a route
(:func:`check_route`); a TCP handshake must first pass the Host, Origin and
token checks of :mod:`warpd.daemon.auth`. A request that is not a WebSocket
handshake at all gets a 4xx with a one-line reason (:class:`AnsweringConnection`),
where websockets would close without a word. A Unix socket is created 0600 in a
0700 directory of ours; TCP listens on loopback unless the config says
otherwise, and off loopback without TLS only with a warning.

A Unix socket file is ours only while it is the one we bound (its device and
inode, :class:`UnixSocketFile`): another daemon may replace it (a new one
starting while this one finishes its shutdown), or someone may delete it.
:meth:`Listeners.watch_sockets` notices both every few seconds: a deleted
socket is bound again, a replaced one is left to whoever replaced it; and at
shutdown only a file that is still ours is removed. Checking the path, removing
a stale socket, binding and writing the pid file happen under a lock on the
socket's directory (:func:`bind_unix`), so of two daemons started at the same
instant one serves and the other names it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from loguru import logger
from websockets.asyncio.server import Server as WSServer
from websockets.asyncio.server import ServerConnection, serve, unix_serve
from websockets.exceptions import InvalidMessage
from websockets.http11 import Request, Response

from warpd import __version__
from warpd.address import Address, is_loopback_host
from warpd.config import Config, default_token_path, runtime_dir
from warpd.daemon.activation import systemd_listen_sockets
from warpd.daemon.auth import check_tcp_handshake, prepare_socket_dir
from warpd.daemon.pidfile import remove_pid_file, serving_pid, write_pid_file
from warpd.daemon.routes import RouteError, parse_route
from warpd.errors import ConfigError
from warpd.tokens import load_or_create_token, validate_token

__all__ = [
    "SOCKET_CHECK_PERIOD",
    "AnsweringConnection",
    "Listeners",
    "TcpListener",
    "UnixSocketFile",
    "bind_unix",
    "check_route",
    "socket_address",
]

Handler = Callable[[ServerConnection], Awaitable[None]]

# Seconds between checks that each Unix socket file is still there and ours.
SOCKET_CHECK_PERIOD = 2.0


# What a peer that did not send a WebSocket handshake is told.
NOT_WEBSOCKET = (
    "not a WebSocket handshake: warpd accepts WebSocket connections only "
    "(GET /push, /subscribe or /status with Upgrade: websocket)\n"
)


class AnsweringConnection(ServerConnection):
    """websockets' server connection, which also answers requests it cannot parse.

    websockets half-closes without a response when the bytes received are not
    an HTTP request it can parse — garbage, TLS to a plain port, a plain
    ``POST /push`` with a body. A peer that sent anything then gets a
    ``400 Bad Request`` whose body says why in one line; one that sent
    nothing (a connect-and-close probe) gets nothing. Requests that parse
    already get websockets' own 4xx (405 for another method, 426 without
    ``Upgrade: websocket``), or the route's (404).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received = False
        self._answered = False

    def data_received(self, data: bytes) -> None:
        self._received = True
        super().data_received(data)

    def send_data(self) -> None:
        # Called right after websockets has parsed what came in and queued its
        # half-close: the answer must go out before it. (The protocol may
        # already count as closed: the peer may have ended its side.)
        failure = self.protocol.handshake_exc
        if isinstance(failure, InvalidMessage) and self._received and not self._answered:
            self._answered = True
            response = self.protocol.reject(400, NOT_WEBSOCKET)
            self.transport.write(response.serialize())
            logger.info("refused a request that is not a WebSocket handshake: 400 {}",
                        failure.__cause__ or failure)
        super().send_data()


class UnixSocketFile:
    """A Unix socket file this daemon bound, known by its device and inode.

    :meth:`state` says whether the path still holds that very file
    (``"ours"``), nothing (``"missing"``), or something else (``"replaced"``).
    """

    __slots__ = ("path", "identity", "server", "replaced", "unbindable")

    def __init__(self, path: Path, server: WSServer) -> None:
        info = path.lstat()
        self.path = path
        self.identity = (info.st_dev, info.st_ino)
        self.server = server
        # Someone else's socket is there now: never touch the path again.
        self.replaced = False
        # Deleted, and binding it again failed (its directory is gone…): said once.
        self.unbindable = False

    def state(self) -> str:
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return "missing"
        return "ours" if (info.st_dev, info.st_ino) == self.identity else "replaced"


class TcpListener:
    """What the handshake checks of one TCP listener need to know about it."""

    __slots__ = ("port", "tls")

    def __init__(self, port: int, tls: bool) -> None:
        self.port = port
        self.tls = tls


class Listeners:
    """The listening sockets of one daemon, all serving ``handler``.

    ``config`` is the current configuration (the server replaces it on
    reload: the TCP checks use the new origins, hosts and ``token`` at once).
    ``token`` is the TCP bearer token, loaded when the first TCP listener starts.
    """

    def __init__(self, config: Config, handler: Handler) -> None:
        self.config = config
        self.token: str | None = None
        self._handler = handler
        self._servers: list[WSServer] = []
        self._unix_files: list[UnixSocketFile] = []
        # The websockets options of every listener, kept to bind a socket again.
        self._common: dict[str, Any] = {}
        # Pid files written beside Unix sockets (pidfile.py), removed at exit.
        self._pid_files: set[Path] = set()

    async def start(self, addresses: list[Address], explicit: bool) -> list[Address]:
        """Take systemd's sockets, bind every other address; the addresses served.

        ``explicit``: the addresses were given (config or --listen), so they
        are bound even when systemd passes sockets; otherwise systemd's
        sockets stand in for the default one.
        """
        limits = self.config.limits
        self._common = common = {
            "process_request": check_route,
            # Producers' frames are bounded by limits.max_frame_bytes with a
            # clear error; this is only the hard stop for absurd frames.
            "max_size": 4 * limits.max_frame_bytes,
            # Per-message compression costs ~100 KiB per idle connection.
            "compression": None,
            "ping_interval": limits.ping_interval,
            "ping_timeout": limits.ping_interval,
            # A peer that misses its pong or never answers our close frame is
            # dropped this long after, so dead peers go as soon as they're found.
            "close_timeout": min(10.0, limits.ping_interval),
            "server_header": f"warpd/{__version__}",
            "create_connection": AnsweringConnection,
        }
        listening: list[Address] = []
        activated = systemd_listen_sockets()
        for name, sock in activated:
            tls = sock.family != socket.AF_UNIX and bool(self.config.tcp.tls_cert)
            address = await self._listen(socket_address(sock, tls), common, sock)
            logger.info("listening on {} (socket activation: {})", address, name)
            listening.append(address)
        wanted = addresses if explicit or not activated else []
        for address in wanted:
            if address in listening:
                continue
            address = await self._listen(address, common, None)
            logger.info("listening on {}", address)
            listening.append(address)
        return listening

    async def _listen(
        self, address: Address, common: dict[str, Any], sock: socket.socket | None
    ) -> Address:
        """Serve on ``address`` (binding it unless ``sock`` is given); the address served."""
        if address.kind == "unix":
            if sock is None:
                await self._serve_unix_file(Path(address.path))
            else:
                self._servers.append(await unix_serve(self._handler, sock=sock, **common))
                if not address.path.startswith("@"):  # abstract sockets have no file
                    self._write_pid_file(Path(address.path))
            return address
        if not is_loopback_host(address.host) and not self.config.tcp.allow_non_loopback:
            raise ConfigError(
                f"refusing to listen on {address}: {address.host} is not a loopback address, "
                "so other machines could connect; to mean it, set allow_non_loopback = true "
                "in the [tcp] section of config.toml (see docs/security.md)"
            )
        if self.token is None:
            self.token = self.load_token(self.config)
        # The Host check needs the real port, known only once bound (port 0).
        listener = TcpListener(address.port, address.tls)
        options = {
            **common,
            "process_request": partial(self._check_tcp_request, listener),
            "ssl": self._tls_context(address),
        }
        if sock is None:
            server = await serve(self._handler, address.host, address.port, **options)
        else:
            server = await serve(self._handler, sock=sock, **options)
        self._servers.append(server)
        listener.port = next(iter(server.sockets)).getsockname()[1]
        return Address("tcp", host=address.host, port=listener.port, tls=address.tls)

    async def _serve_unix_file(self, path: Path) -> None:
        """Bind a Unix socket at ``path`` and serve it; remember the file as ours."""
        sock, pid_path = bind_unix(path)
        if pid_path is not None:
            self._pid_files.add(pid_path)
        try:
            server = await unix_serve(self._handler, sock=sock, **self._common)
        except BaseException:
            sock.close()
            raise
        self._servers.append(server)
        self._unix_files.append(UnixSocketFile(path, server))

    def _write_pid_file(self, socket_path: Path) -> None:
        pid_path = write_pid_file(socket_path)
        if pid_path is not None:
            self._pid_files.add(pid_path)

    async def watch_sockets(self, period: float = SOCKET_CHECK_PERIOD) -> None:
        """Every ``period`` seconds, :meth:`check_sockets` (run as a task; cancel it to stop)."""
        while True:
            await asyncio.sleep(period)
            await self.check_sockets()

    async def check_sockets(self) -> None:
        """Bind again each socket file that was deleted; give up those someone replaced."""
        for unix_file in list(self._unix_files):
            if unix_file.replaced:
                continue
            state = unix_file.state()
            if state == "ours":
                continue
            path = unix_file.path
            if state == "replaced":
                unix_file.replaced = True
                logger.warning(
                    "{} was replaced by {}: leaving it to its owner; connections open here go on",
                    path,
                    "another socket (another warpd?)" if _is_socket(path)
                    else "something that is not a socket",
                )
                continue
            if not unix_file.unbindable:
                logger.warning("{} was deleted: creating it again", path)
            try:
                await self._serve_unix_file(path)
            except (ConfigError, OSError) as exc:
                if not unix_file.unbindable:
                    unix_file.unbindable = True
                    logger.error("cannot create {} again ({}); trying again every {:g}s",
                                 path, exc, SOCKET_CHECK_PERIOD)
                continue
            # The old listening socket can no longer be reached: stop accepting on it.
            self._unix_files.remove(unix_file)
            unix_file.server.close(close_connections=False)
            logger.info("listening on unix:{}", path)

    def load_token(self, config: Config) -> str:
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

    def _check_tcp_request(
        self, listener: TcpListener, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Host, Origin and token checks of a TCP handshake (daemon/auth.py), then the route's."""
        assert self.token is not None
        tcp = self.config.tcp
        refusal = check_tcp_handshake(
            request.headers,
            token=self.token,
            port=listener.port,
            allowed_origins=tcp.allowed_origins,
            allowed_hosts=tcp.allowed_hosts,
            default_port=443 if listener.tls else 80,
        )
        if refusal is None:
            return check_route(connection, request)
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

    def close(self) -> None:
        """Stop accepting connections; those open stay open."""
        for server in self._servers:
            server.close(close_connections=False)

    async def wait_closed(self, timeout: float) -> None:
        """Wait (each listener up to ``timeout`` seconds) for the connections to end."""
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), timeout)
            except TimeoutError:
                logger.warning("connections still open after the shutdown timeout; leaving")

    def remove_sockets(self) -> None:
        """Remove the Unix socket files this daemon bound, those still ours only; our pid files."""
        for unix_file in self._unix_files:
            if not unix_file.replaced and unix_file.state() == "ours":
                unix_file.path.unlink(missing_ok=True)
        for path in self._pid_files:
            remove_pid_file(path)


def check_route(connection: ServerConnection, request: Request) -> Response | None:
    """Refuse bad requests with an HTTP status before the WebSocket opens."""
    try:
        parse_route(request.path)
    except RouteError as exc:
        logger.info("refused {}: {} {}", request.path[:200], exc.status, exc.message)
        return connection.respond(exc.status, exc.message + "\n")
    return None


def bind_unix(path: Path) -> tuple[socket.socket, Path | None]:
    """A socket listening at ``path`` (mode 0600), and the pid file written beside it.

    warpd's own directory must be ours, 0700. A socket file nobody answers on
    (a daemon that died) is replaced; one that answers is another daemon's,
    refused with its pid. All of it is done holding :func:`_directory_lock`:
    otherwise two daemons starting at once could both find the path free (or
    stale) and both bind, the second removing the first's socket.
    """
    directory = path.parent
    if directory == runtime_dir():
        prepare_socket_dir(directory)
    elif not directory.is_dir():
        raise ConfigError(f"cannot listen at {path}: directory {directory} does not exist")
    with _directory_lock(directory):
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ConfigError(f"{path} exists and is not a socket: refusing to replace it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink(missing_ok=True)  # a stale socket left by a daemon that died
            else:
                pid = serving_pid(path)
                if pid is None:
                    raise ConfigError(f"another warpd is already serving at {path}")
                raise ConfigError(
                    f"another warpd (pid {pid}) is already serving at {path}: use it, "
                    f"or stop it first (kill {pid})"
                )
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The socket must never exist with looser permissions, not even briefly.
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
            # Listening before the lock is let go: the next daemon's probe connects.
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        return sock, write_pid_file(path)


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive lock (flock) on ``directory``, held by one binding daemon at a time.

    A directory we may write in but not open (mode 0300) goes without it.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # lets the lock go


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


def socket_address(sock: socket.socket, tls: bool) -> Address:
    """The address a listening socket (e.g. one systemd passed) is bound to."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        # An abstract socket's name starts with NUL; "@" is how systemd writes it.
        return Address("unix", path="@" + path[1:] if path.startswith("\0") else path)
    return Address("tcp", host=name[0], port=name[1], tls=tls)
