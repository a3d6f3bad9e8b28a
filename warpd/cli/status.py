"""``warpd status``: the daemon's sessions and subscribers, or its raw status JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys

from warpd.address import client_address
from warpd.cli.options import add_connect_argument
from warpd.client.connection import ask
from warpd.protocol import StatusMessage, encode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "What the running daemon holds: its sessions, live streams, subscribers and their "
        "lag, what history keeps in memory and on disk."
    )
    parser.add_argument("--json", action="store_true", help="print the raw status JSON")
    add_connect_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    address = client_address(args.connect)
    status = asyncio.run(ask(address, "/status", StatusMessage))
    if args.json:
        sys.stdout.buffer.write(encode(status) + b"\n")
        return 0
    print(f"warpd {status.version} pid {status.pid}, up {status.uptime:.0f}s, "
          f"listening on {', '.join(status.listen)}")
    broker = status.broker
    if broker:
        problem = f", last error: {broker['last_error']}" if broker.get("last_error") else ""
        print(f"broker {broker['kind']} {broker['url']}: {broker['state']}, "
              f"{broker['outages']} outage(s){problem}")
    kept = status.history
    if kept:
        print(f"kept: {kept['sessions']} session(s), {kept['sessions_in_use']} in use"
              f" (limit {kept['max_sessions']}); history in memory {kept['messages']} messages"
              f" / {kept['bytes']} of {kept['total_bytes']} bytes")
        store = kept.get("store")
        if store:
            problems = ""
            if store.get("not_stored"):
                problems += f", {store['not_stored']} messages NOT STORED"
            if store.get("last_error"):
                problems += f", last error: {store['last_error']}"
            print(f"history file {store['path']}: {store['stored_bytes']} bytes stored,"
                  f" {store['queued_messages']} messages queued{problems}")
        elif kept.get("store_error"):
            print(f"history file: NOT IN USE, memory only ({kept['store_error']})")
        else:
            print("history file: off ([history] persist = false)")
    if not status.sessions:
        print("no sessions yet")
    for row in status.sessions:
        live = ", ".join(row["live_streams"]) or "none"
        print(f"session {row['session']!r}: seq {row['seq']}, streams {row['streams_started']}"
              f" (live: {live}), history {row['history_messages']} messages"
              f" / {row['history_bytes']} bytes, {len(row['subscribers'])} subscriber(s)")
        for sub in row["subscribers"]:
            print(f"  {sub['id']}: lag {sub['lag_messages']} messages, queued"
                  f" {sub['queued_bytes']} bytes, catch-ups {sub.get('catchups', 0)},"
                  f" resyncs {sub['resyncs']},"
                  f" dropped {sub['dropped']}{', BEHIND' if sub['behind'] else ''}")
    return 0
