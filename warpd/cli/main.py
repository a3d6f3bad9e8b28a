"""``warpd``: the command; one module per command (serve, push, subscribe, run, log, …).

Each command reports a user's mistake (bad option, bad input, no daemon) as
one line on stderr and a non-zero exit status, never a traceback.

Start-up matters (a script may run ``warpd push`` per answer): the argument
tree is built with only the chosen command's options, from its module
(``warpd.cli.COMMAND``), so no command pays for another's imports and
``--version``/``--help`` import none of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from warpd import __version__
from warpd.errors import DaemonUnavailable, WarpdError

# Exit statuses every command shares (README, "Exit status"); `warpd push`
# adds its own for how the stream ended (warpd/cli/push.py).
EXIT_ERROR = 1  # a warpd error: bad input, an unreadable file, a refusal
EXIT_USAGE = 2  # bad options or arguments (argparse's own status)
EXIT_NO_DAEMON = 3  # no daemon answered at the address
EXIT_INTERRUPTED = 130  # Ctrl-C

# Command -> its module in warpd.cli and its line in `warpd --help`.
COMMANDS = {
    "serve": ("serve", "run the daemon in the foreground"),
    "push": ("push", "push a provider stream (FILE or stdin) to the daemon"),
    "subscribe": ("subscribe", "print a session's block messages live"),
    "convert": ("convert", "decode a recorded stream offline and print its block messages"),
    "play": ("play", "render a recording (a stream or a subscribe capture) here, no daemon"),
    "demo": ("demo", "push example streams to a session, to watch with warpd subscribe"),
    "status": ("status", "show the daemon's sessions and subscribers"),
    "reload": ("reload", "ask the running daemon to re-read its configuration"),
    "log": ("history", "list past streams from the history file"),
    "show": ("history", "show one past stream: rendered, as text, JSON lines or Markdown"),
    "service": ("service", "install or remove the systemd user units"),
    "run": ("run", "run a command with its LLM calls shown in a session (-- COMMAND)"),
    "proxy": ("proxy", "serve the capture proxy for tools started elsewhere"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``warpd`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Said by the command's own parser, so its usage is what is shown
        # (the top-level parser would show `warpd COMMAND ...`).
        command_parser = getattr(args, "parser", parser)
        command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status: int = args.run(args)
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): not an error.
        _silence_stdout()
        return 0
    except WarpdError as exc:
        # A message may quote a peer (the daemon's refusal, a provider's error).
        from warpd.controls import backslash_escaped

        print(f"warpd {args.command}: {backslash_escaped(str(exc))}", file=sys.stderr)
        return EXIT_NO_DAEMON if isinstance(exc, DaemonUnavailable) else EXIT_ERROR


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The argument parser, with the options of the command ``argv`` names (if any)."""
    parser = argparse.ArgumentParser(
        prog="warpd", description="LLM delta streams in, live terminal blocks out."
    )
    parser.add_argument("--version", action="version", version=f"warpd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The top-level options take no value, so the first word is the command.
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module, text) in COMMANDS.items():
        command = commands.add_parser(name, help=text)
        if name == chosen:
            importlib.import_module(f"warpd.cli.{module}").add_arguments(command)
            command.set_defaults(parser=command)
    return parser


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush doesn't fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
