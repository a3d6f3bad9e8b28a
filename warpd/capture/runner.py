"""``warpd run`` and ``warpd proxy``: a command behind the capture proxy, or the proxy alone.

:func:`run_command` starts the proxy on a free loopback port, runs the
command with each provider's base-URL variable pointing at it
(:func:`tool_environment`), passes SIGINT, SIGTERM and SIGHUP on to it, and
returns its exit status (128 + N when a signal N killed it), as ``env`` and
``time`` do. :func:`serve_proxy` runs the proxy until SIGINT or SIGTERM,
after printing the ``export`` lines that point tools at it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from loguru import logger

from warpd.capture.proxy import CaptureProxy
from warpd.capture.routes import PROVIDERS
from warpd.capture.tee import CaptureSink
from warpd.errors import ConfigError

#: How long captured answers still on their way get to reach the daemon at exit.
DRAIN_TIMEOUT = 5.0

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class CaptureOptions:
    """What ``warpd run`` and ``warpd proxy`` were asked for, checked."""

    session: str
    #: provider name → upstream base URL (routes.resolve_upstreams).
    upstreams: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 0
    #: The daemon's address (None: $WARPD_ADDR, else the user's socket).
    connect: str | None = None
    quiet: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)


_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._:@+-]+")


def session_for_command(command: str) -> str:
    """The default session of ``warpd run COMMAND``: the command's name, made a valid name."""
    name = _NOT_IN_A_NAME.sub("-", os.path.basename(command.rstrip("/")))
    name = name.lstrip("._:@+-")[:128]
    return name or "run"


def tool_environment(proxy_url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with every provider's variable pointing at the proxy at ``proxy_url``.

    The proxy's host is added to ``NO_PROXY``/``no_proxy``, so a tool that
    honours ``HTTP_PROXY`` still talks to us directly.
    """
    env = dict(environ)
    for provider in PROVIDERS.values():
        env[provider.variable] = provider.variable_value(proxy_url)
    host = urlsplit(proxy_url).hostname or "127.0.0.1"
    for name in ("NO_PROXY", "no_proxy"):
        entries = [e.strip() for e in env.get(name, "").split(",") if e.strip()]
        entries += [h for h in (host, "localhost") if h not in entries]
        env[name] = ",".join(entries)
    return env


def export_lines(proxy_url: str) -> list[str]:
    """The shell lines that point tools at the proxy at ``proxy_url``."""
    return [
        f"export {p.variable}={p.variable_value(proxy_url)}" for p in PROVIDERS.values()
    ]


def check_not_looping(options: CaptureOptions, proxy_url: str) -> None:
    """ConfigError if an upstream is this very proxy (its variable was exported here)."""
    ours = urlsplit(proxy_url)
    for name, url in options.upstreams.items():
        theirs = urlsplit(url)
        if theirs.port == ours.port and theirs.hostname in (ours.hostname, "localhost"):
            raise ConfigError(
                f"the {name} upstream {url} is this proxy itself "
                f"({PROVIDERS[name].variable} points here); give --upstream {name}=URL"
            )


def run_command(argv: Sequence[str], options: CaptureOptions) -> int:
    """Run ``argv`` behind a capture proxy; its exit status (128 + N if killed by signal N)."""
    return _run_loop(_run_command(list(argv), options))


def serve_proxy(options: CaptureOptions, out: TextIO = sys.stdout) -> int:
    """Run the capture proxy until SIGINT or SIGTERM; print the export lines first."""
    return _run_loop(_serve_proxy(options, out))


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed (as ``warpd serve`` does), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        return asyncio.run(main)
    return uvloop.run(main)


async def _start(options: CaptureOptions) -> CaptureProxy:
    proxy = CaptureProxy(
        options.upstreams, CaptureSink(options.session, options.connect),
        host=options.host, port=options.port,
    )
    try:
        await proxy.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}"
        ) from None
    try:
        check_not_looping(options, proxy.url)
    except ConfigError:
        await proxy.stop(0)
        raise
    return proxy


async def _run_command(argv: list[str], options: CaptureOptions) -> int:
    proxy = await _start(options)
    try:
        env = tool_environment(proxy.url, {**os.environ, **options.extra_env})
        if not options.quiet:
            print(f"warpd run: capturing to session {options.session!r} "
                  f"(watch: warpd subscribe --session {options.session})", file=sys.stderr)
        try:
            child = await asyncio.create_subprocess_exec(*argv, env=env)
        except FileNotFoundError:
            print(f"warpd run: {argv[0]}: command not found", file=sys.stderr)
            return 127
        except PermissionError as exc:
            print(f"warpd run: {argv[0]}: {exc.strerror}", file=sys.stderr)
            return 126
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, _forward, child, signum)
        try:
            status = await child.wait()
        finally:
            for signum in FORWARDED_SIGNALS:
                loop.remove_signal_handler(signum)
    finally:
        await proxy.stop(DRAIN_TIMEOUT)
    return status if status >= 0 else 128 - status


def _forward(child: asyncio.subprocess.Process, signum: int) -> None:
    if signum == signal.SIGINT and _terminal_signals_our_group():
        # Ctrl-C reached the command already: the terminal signals the
        # whole foreground process group, and a second SIGINT would be a
        # second Ctrl-C (which many interactive tools take as "quit").
        return
    if child.returncode is None:
        child.send_signal(signum)


def _terminal_signals_our_group() -> bool:
    """Whether our process group is the foreground group of our controlling terminal."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


async def _serve_proxy(options: CaptureOptions, out: TextIO) -> int:
    proxy = await _start(options)
    try:
        for line in export_lines(proxy.url):
            print(line, file=out)
        print(f"# then run your tool in that shell, and watch with: "
              f"warpd subscribe --session {options.session}", file=out)
        out.flush()
        logger.info("proxy listening on {}, capturing to session {!r}", proxy.url,
                    options.session)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        logger.info("stopping: {} request(s) served", proxy.requests)
    finally:
        await proxy.stop(DRAIN_TIMEOUT)
    return 0
