"""What ``warpd run`` and ``warpd proxy`` share: the upstream options, checked."""

from __future__ import annotations

import argparse
import os

from warpd.capture.routes import parse_listen, parse_upstream_option, resolve_upstreams
from warpd.capture.runner import CaptureOptions
from warpd.cli.options import add_connect_argument, checked
from warpd.errors import UserError
from warpd.protocol import check_session_name


def add_capture_arguments(parser: argparse.ArgumentParser) -> None:
    """``--upstream``, ``--connect`` and ``--log-level``."""
    parser.add_argument(
        "--upstream",
        action="append",
        type=checked(parse_upstream_option),
        default=[],
        metavar="PROVIDER=URL",
        help="where PROVIDER's requests go (openai, anthropic or ollama; repeatable); default: "
        "the provider's variable here (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, OLLAMA_HOST), "
        "else its public address",
    )
    add_connect_argument(parser)
    parser.add_argument("--log-level", help="TRACE, DEBUG, INFO, WARNING or ERROR")


def capture_options(
    args: argparse.Namespace, session: str, listen: str | None = None, *, quiet: bool = False
) -> CaptureOptions:
    """The checked options; ConfigError or UserError naming what is wrong."""
    problem = check_session_name(session)
    if problem is not None:
        raise UserError(f"--session: {problem}")
    overrides = dict(args.upstream)
    host, port = parse_listen(listen) if listen is not None else ("127.0.0.1", 0)
    return CaptureOptions(
        session=session,
        upstreams=resolve_upstreams(os.environ, overrides),
        host=host,
        port=port,
        connect=args.connect,
        quiet=quiet,
    )
