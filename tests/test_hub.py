"""The hub on its own: resume decisions (no sockets; a real Hub and real messages)."""

from __future__ import annotations

import msgspec

from tests.test_openai_chat import TEXT_WITH_USAGE
from warpd.config import Config
from warpd.daemon.hub import Hub
from warpd.ingest.convert import convert


def published_hub() -> Hub:
    hub = Hub(Config())
    for message in convert([TEXT_WITH_USAGE]):
        hub.publish(message)
    return hub


def first_message(hub: Hub, since: dict[str, int]) -> dict[str, object]:
    subscriber = hub.subscribe("c1", ["default"], lambda: None, since=since, epoch=hub.epoch)
    items = subscriber.outbox.take()
    decoded: dict[str, object] = msgspec.json.decode(items[0][2])
    return decoded


def test_resume_within_history_replays_exactly_what_was_missed() -> None:
    hub = published_hub()
    last = hub.sessions["default"].seq
    subscriber = hub.subscribe("c1", ["default"], lambda: None, since={"default": last - 2},
                               epoch=hub.epoch)
    items = subscriber.outbox.take()
    assert [seq for _, seq, _ in items[1:]] == [last - 1, last]
    assert "resume_failed" not in msgspec.json.decode(items[0][2])


def test_a_since_past_the_sessions_last_seq_is_refused_not_taken_as_up_to_date() -> None:
    # A client holding seq numbers from before a restart must not be told it
    # is up to date: it would silently miss everything until then.
    hub = published_hub()
    hello = first_message(hub, {"default": 500})
    assert "has no message" in str(hello["resume_failed"])
