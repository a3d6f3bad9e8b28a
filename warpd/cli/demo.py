"""``warpd demo``: push the example streams warpd ships to a session, paced like live ones.

For the tour: no API key and no recordings needed. The streams are the ones
in warpd/examples/; they go through the running daemon like any push, at
their recorded pace where known (warpd/recording.py), else a steady one.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys

from warpd.cli.options import add_connect_argument
from warpd.cli.play import speed_factor
from warpd.client import AsyncClient
from warpd.client.connection import ask
from warpd.examples import EXAMPLES, read_example
from warpd.protocol import StatusMessage
from warpd.recording import UpstreamEvents, pace

# The pause between two example streams, at speed 1.
PAUSE_SECONDS = 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Push the example streams warpd ships (OpenAI parallel tool calls, Anthropic "
        "thinking and a tool, an Ollama chat, plain text) to a session of the running "
        "daemon, paced like live streams. Watch them with `warpd subscribe`."
    )
    parser.add_argument(
        "--session", default="default", help="session to push to (default: default)"
    )
    parser.add_argument(
        "--speed", type=speed_factor, default=1.0, metavar="X",
        help="push X times as fast (default 1)",
    )
    add_connect_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    client = AsyncClient(args.connect)
    watch = ["warpd", "subscribe"]
    if args.session != "default":
        watch += ["--session", args.session]
    if args.connect:
        watch += ["--connect", args.connect]
    # Ask the daemon first: with none, the error is all there is to say.
    await ask(client.address, "/status", StatusMessage)
    _say(f"pushing {len(EXAMPLES)} example streams to session {args.session!r} "
         f"at {client.address}; to watch, run in another terminal: {shlex.join(watch)}")
    for n, (name, format) in enumerate(EXAMPLES.items()):
        if n:
            await asyncio.sleep(PAUSE_SECONDS / args.speed)
        reader = UpstreamEvents(format)
        events = reader.feed(read_example(name)) + reader.close()
        async with client.stream(session=args.session, format=format) as stream:
            for delay, _, event in pace(events, speed=args.speed):
                if delay:
                    await asyncio.sleep(delay)
                await stream.push(event.payload)
        _say(f"{n + 1}/{len(EXAMPLES)} {name}: stream {stream.final.stream} complete")
    _say(f"done; `{shlex.join([*watch, '--replay', str(len(EXAMPLES))])}` shows them again")
    return 0


def _say(text: str) -> None:
    print(f"warpd demo: {text}", file=sys.stderr)
