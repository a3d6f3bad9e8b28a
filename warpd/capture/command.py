"""The ``warpd run`` and ``warpd proxy`` command lines: options checked, then the runner."""

from __future__ import annotations

import argparse
import os
import sys

from warpd.errors import WarpdError

UPSTREAM_HELP = (
    "PROVIDER=URL: where PROVIDER's requests go (openai, anthropic, ollama; repeatable); "
    "default: the provider's variable in this environment (OPENAI_BASE_URL, "
    "ANTHROPIC_BASE_URL, OLLAMA_HOST), else its public address"
)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", action="append", default=[], metavar="PROVIDER=URL",
                        help=UPSTREAM_HELP)
    parser.add_argument("--connect", metavar="ADDR",
                        help="daemon address (default: $WARPD_ADDR, else the user's Unix socket)")
    parser.add_argument("--log-level", help="TRACE, DEBUG, INFO, WARNING or ERROR")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", help="session to capture to (default: the command's name)")
    add_common_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no line on stderr saying where the capture goes")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS…]",
                        help="the command to run, with its arguments")
    parser.set_defaults(run=run)


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="loopback address to listen on (default: a free port on 127.0.0.1)")
    parser.add_argument("--session", default="proxy", help="session to capture to")
    add_common_arguments(parser)
    parser.set_defaults(run=proxy)


def _options(args: argparse.Namespace, session: str, listen: str | None = None):  # type: ignore[no-untyped-def]
    from warpd.capture.routes import parse_listen, parse_upstream_option, resolve_upstreams
    from warpd.capture.runner import CaptureOptions
    from warpd.hub import check_session_name

    overrides = dict(parse_upstream_option(text) for text in args.upstream)
    upstreams = resolve_upstreams(os.environ, overrides)
    check_session_name(session)
    host, port = parse_listen(listen) if listen is not None else ("127.0.0.1", 0)
    return CaptureOptions(session=session, upstreams=upstreams, host=host, port=port,
                          connect=args.connect, quiet=getattr(args, "quiet", False))


def run(args: argparse.Namespace) -> int:
    from warpd.capture.runner import run_command, session_for_command
    from warpd.logging_setup import configure_logging

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise WarpdError("give the command to run after --, e.g. warpd run -- claude")
    options = _options(args, args.session or session_for_command(command[0]))
    configure_logging((args.log_level or "WARNING").upper())
    return run_command(command, options)


def proxy(args: argparse.Namespace) -> int:
    from warpd.capture.runner import serve_proxy
    from warpd.logging_setup import configure_logging

    options = _options(args, args.session, args.listen)
    configure_logging((args.log_level or "INFO").upper())
    return serve_proxy(options)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="warpd")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_run_arguments(commands.add_parser("run"))
    add_proxy_arguments(commands.add_parser("proxy"))
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except KeyboardInterrupt:
        return 130
    except WarpdError as exc:
        print(f"warpd {args.command}: {exc}", file=sys.stderr)
        return 1
