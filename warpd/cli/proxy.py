"""``warpd proxy``: the capture proxy alone, long-running, for tools started elsewhere."""

from __future__ import annotations

import argparse

from warpd.capture.runner import serve_proxy
from warpd.cli.capture import add_capture_arguments, capture_options
from warpd.daemon.logs import configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the capture proxy and print the export lines that point tools at it; each "
        "answer they get shows in the session."
    )
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="loopback address to listen on (default: a free port on 127.0.0.1)")
    parser.add_argument("--session", default="proxy", help="session to capture to (default: proxy)")
    add_capture_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = capture_options(args, args.session, args.listen)
    configure_logging((args.log_level or "INFO").upper())
    return serve_proxy(options)
