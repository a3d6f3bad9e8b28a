"""``warpd run -- COMMAND``: run a command with its LLM calls captured into a session."""

from __future__ import annotations

import argparse

from warpd.capture.runner import run_command, session_for_command
from warpd.cli.capture import add_capture_arguments, capture_options
from warpd.daemon.logs import configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "warpd run [options] -- COMMAND [ARGS…]"
    parser.description = (
        "Run COMMAND with OPENAI_BASE_URL, ANTHROPIC_BASE_URL and OLLAMA_HOST pointing at a "
        "loopback proxy that forwards its requests unchanged and shows each answer in the "
        "session. Exits with COMMAND's status."
    )
    parser.add_argument("--session", help="session to capture to (default: the command's name)")
    add_capture_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no line on stderr saying which session the capture goes to")
    # Not "command": that is the name of the chosen warpd command.
    parser.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        args.parser.error("give the command to run after --, e.g. warpd run -- claude")
    session = args.session or session_for_command(command[0])
    options = capture_options(args, session, quiet=args.quiet)
    # Only warnings by default: the command owns the terminal.
    configure_logging((args.log_level or "WARNING").upper())
    return run_command(command, options)
