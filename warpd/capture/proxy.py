"""The capture proxy: a loopback reverse proxy that forwards unchanged and tees what it forwards.

Each request is forwarded to the fixed upstream its route names
(:mod:`warpd.capture.routes`): same method, path below the route's mount,
query, headers (less the hop-by-hop ones and Host) and body. The answer comes
back with its status, reason and headers, and its body is streamed to the
client piece by piece as the upstream sends it — never re-encoded, never
buffered: ``iter_any()`` of aiohttp's client into ``write()`` of its
server, with the client's decompression off, so the client gets the bytes
the upstream sent. Captured routes hand the same pieces to a
:class:`~warpd.capture.tee.ResponseTee`.

Refused before anything is forwarded, each with a one-line reason:

- a request carrying ``Origin`` (403): browsers send it, and any web page
  may try to reach a loopback port; tools and SDKs don't;
- a Host that is not a loopback name with this proxy's port (403): what a
  page doing DNS rebinding sends;
- a path no provider serves (404), and a body over ``MAX_BODY`` (413).

Credentials (``Authorization``, ``x-api-key``, ``api-key``, cookies…) are
forwarded with the other headers and go nowhere else: headers and query
strings are never logged, pushed or written.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from loguru import logger
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from warpd.address import is_loopback_host, split_host
from warpd.capture.routes import Route, find_route, known_paths, upstream_url
from warpd.capture.tee import CaptureSink, ResponseTee
from warpd.render.untrusted import neutralise

#: The largest request body forwarded (bytes); LLM requests with images and
#: long contexts run to tens of MB.
MAX_BODY = 128 * 1024 * 1024

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
# Host and Content-Length are set anew for the upstream by the HTTP client.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect"}
# Headers aiohttp's client would add on its own: a forwarded request has
# exactly the client's headers, so none are added.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def forwarded_headers(headers: CIMultiDictProxy[str], *, request: bool) -> CIMultiDict[str]:
    """``headers`` less hop-by-hop ones (and those the Connection header names).

    For a ``request``, Host, Content-Length and Expect go too: they belong to
    the client's connection to us.
    """
    drop = _NOT_FORWARDED if request else HOP_BY_HOP
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
    }
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in drop and name.lower() not in named
    )


class CaptureProxy:
    """The proxy's life cycle: :meth:`start` (binds), serve, :meth:`stop`.

    ``upstreams`` maps provider names to base URLs
    (:func:`~warpd.capture.routes.resolve_upstreams`); ``sink`` receives the
    captured answers. ``host`` must be a loopback address (the caller checks
    it: :func:`~warpd.capture.routes.parse_listen`); ``port`` 0 picks a free
    one. After :meth:`start`, ``url`` is ``http://HOST:PORT``.
    """

    def __init__(
        self, upstreams: dict[str, str], sink: CaptureSink, *, host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstreams = upstreams
        self.sink = sink
        self.host = host
        self.port = port
        self.url = ""
        self.requests = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}

    async def start(self) -> None:
        """Bind and start serving; raises OSError if the address cannot be bound."""
        _quiet_aiohttp_logs()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            # Answers take minutes (reasoning models, long streams): only
            # connecting has a time limit.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            connector=aiohttp.TCPConnector(limit=0),
            # No ~/.netrc credentials, no cookies of ours: the request is the
            # tool's. (trust_env would also cost two thread hops per request.)
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # HTTPS_PROXY and the like apply upstream, as they would have for the tool.
        self._proxies = {name: environment_proxy(url) for name, url in self.upstreams.items()}
        app = web.Application(client_max_size=MAX_BODY, handler_args={"access_log": None})
        app.router.add_route("*", "/{path:.*}", self._handle)
        # handler_cancellation: a client that hangs up while the upstream is
        # silent (thinking, or hung) is noticed at once, not at the next
        # piece: its stream ends aborted and the upstream connection is closed.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     handler_cancellation=True)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, shutdown_timeout=1.0)
        await site.start()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop accepting, let captured answers reach the daemon (up to ``drain_timeout`` s)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.sink.close(drain_timeout)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- one request ------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        number = next(self._ids)
        log = logger.bind(conn=f"r{number}")
        path = request.rel_url.raw_path
        refusal = self._refusal(request, path)
        if refusal is not None:
            status, reason = refusal
            log.warning("{} {}: refused ({})", request.method, neutralise(path[:200]), reason)
            return web.Response(status=status, text=f"warpd proxy: {reason}\n")
        route = find_route(path)
        assert route is not None
        self.requests += 1
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            reason = f"request body over {MAX_BODY // (1024 * 1024)} MiB"
            return web.Response(status=413, text=f"warpd proxy: {reason}\n")
        tee = None
        if route.format is not None and request.method == "POST":
            tee = self.sink.tee(route.format, body, log)
        started = time.monotonic()
        try:
            response = await self._forward(request, route, body, tee, log)
        except Exception as exc:
            # A bug of ours: aiohttp answers 500; the stream must not stay live.
            if tee is not None:
                tee.abort(f"warpd proxy failed: {type(exc).__name__}")
            raise
        log.info("{} {} → {} in {:.2f}s", request.method, neutralise(path[:200]),
                 response.status, time.monotonic() - started)
        return response

    def _refusal(self, request: web.Request, path: str) -> tuple[int, str] | None:
        if request.headers.getall("Origin", []):
            return 403, "requests from web pages (with an Origin header) are refused"
        hosts = request.headers.getall("Host", [])
        parsed = split_host(hosts[0]) if len(hosts) == 1 else None
        if parsed is None or not is_loopback_host(parsed[0]) or parsed[1] not in (None, self.port):
            # A page doing DNS rebinding names its own domain as Host.
            return 403, "the Host header must name this proxy's loopback address and port"
        if find_route(path) is None:
            return 404, f"no route for this path; served: {known_paths()}"
        return None

    async def _forward(
        self, request: web.Request, route: Route, body: bytes, tee: ResponseTee | None, log: Any
    ) -> web.StreamResponse:
        assert self._session is not None
        base = self.upstreams[route.provider.name]
        url = URL(upstream_url(base, route, request.rel_url.raw_query_string), encoded=True)
        headers = forwarded_headers(request.headers, request=True)
        if url.raw_user is not None:
            # An upstream URL's user:password is Basic auth, as an HTTP client
            # takes it; the client's own Authorization, if any, is kept.
            auth = aiohttp.BasicAuth.from_url(url)
            if auth is not None and "Authorization" not in headers:
                headers["Authorization"] = auth.encode()
            url = url.with_user(None)
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                data=body if body or request.body_exists else None,
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
                proxy=self._proxies.get(route.provider.name),
            )
        except asyncio.CancelledError:
            log.info("the client disconnected before the answer began")
            if tee is not None:
                tee.abort("the client disconnected before the answer began")
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = (f"cannot reach the {route.provider.name} upstream {without_userinfo(base)}: "
                      f"{_describe(exc)}")
            log.warning("{}", reason)
            if tee is not None:
                tee.fail(reason)
            return web.Response(status=502, text=f"warpd proxy: {reason}\n")
        try:
            return await self._relay(request, upstream, tee, log)
        finally:
            upstream.release()

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, tee: ResponseTee | None,
        log: Any,
    ) -> web.StreamResponse:
        """Send the upstream's answer to the client as it comes, and to the tee."""
        if tee is not None and not tee.answer(
            upstream.status, upstream.reason or "", upstream.content_type,
            upstream.headers.get("Content-Encoding"),
        ):
            tee = None
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=forwarded_headers(upstream.headers, request=False),
        )
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                # The tee first: what the upstream sent is captured even if
                # the client is gone by the time it is written.
                if tee is not None:
                    tee.feed(chunk)
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            # The client went away; if its answer was complete by then (a
            # client that stops reading at its end marker), the stream is too
            # and the abort changes nothing.
            log.info("the client disconnected")
            self._client_gone(upstream, tee)
            return response
        except asyncio.CancelledError:
            log.info("the client disconnected")
            self._client_gone(upstream, tee)
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = f"the upstream connection broke mid-answer: {_describe(exc)}"
            log.warning("{}", reason)
            if tee is not None:
                tee.abort(reason)
            # Cut the client's connection too, so it sees a broken answer
            # rather than a short one that ends cleanly.
            if request.transport is not None:
                request.transport.abort()
            return response
        if tee is not None:
            tee.end()
        return response

    @staticmethod
    def _client_gone(upstream: aiohttp.ClientResponse, tee: ResponseTee | None) -> None:
        if tee is not None:
            if upstream.content.at_eof():
                # The whole answer was read (and fed) before the client left.
                tee.end()
            else:
                tee.abort("the client disconnected mid-answer")
        # Stop reading the upstream: nobody wants the rest.
        upstream.close()


def environment_proxy(url: str) -> str | None:
    """The HTTP proxy the environment names for ``url`` (``HTTPS_PROXY``…, ``NO_PROXY`` kept)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.netloc):
        return proxy
    return None


# The user:password@ of a URL (an upstream's, an HTTPS_PROXY's) in a message.
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s'\"]*@")


def without_userinfo(text: str) -> str:
    """``text`` with the credentials of any URL in it (``user:password@``) replaced by ``***@``.

    An upstream URL or ``HTTPS_PROXY`` may carry a password, and aiohttp's
    errors name the URL: what is logged or shown in the session never has it.
    """
    return _USERINFO.sub(r"\1***@", text)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return neutralise(without_userinfo(text)[:300])


class _AiohttpToLoguru(logging.Handler):
    """aiohttp's standard-library log records, as loguru lines without tracebacks."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "DEBUG" if record.levelno < logging.WARNING else "WARNING"
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f": {type(error).__name__}: {error}"
        logger.log(level, "aiohttp: {}", neutralise(without_userinfo(text)[:300]))


def _quiet_aiohttp_logs() -> None:
    """Send aiohttp's log to loguru: a traceback never reaches the tool's terminal."""
    aiohttp_logger = logging.getLogger("aiohttp")
    aiohttp_logger.handlers = [_AiohttpToLoguru()]
    aiohttp_logger.propagate = False
