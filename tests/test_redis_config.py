"""The [broker] section: Redis URLs, bounds, and passwords kept out of messages."""

from __future__ import annotations

import pytest

from warpd.config import BrokerConfig, parse_config, redacted_url
from warpd.errors import ConfigError


def test_the_default_broker_is_in_memory() -> None:
    assert parse_config("").broker == BrokerConfig(url="")


def test_redis_urls_decode() -> None:
    config = parse_config(
        '[broker]\nurl = "rediss://warpd:pw@redis.example:6380/2"\n'
        'stream_maxlen = 500\nkey_prefix = "team:warpd"\n'
    )
    assert config.broker.url == "rediss://warpd:pw@redis.example:6380/2"
    assert (config.broker.stream_maxlen, config.broker.key_prefix) == (500, "team:warpd")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('url = "http://:hunter2@x"', r"url must start with redis://.*'http://:\*\*\*@x'"),
        ('key_prefix = "a*"', "key_prefix must be"),
        ("stream_maxlen = 0", "stream_maxlen must be positive"),
        ("reconnect_min = 2.0\nreconnect_max = 1.0", "reconnect_max must not be less"),
        ("urll = ''", "unknown field `urll`"),
    ],
)
def test_broker_mistakes_are_errors_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^c\.toml: .*" + message) as caught:
        parse_config("[broker]\n" + text + "\n", "c.toml")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:p%40ss@h", "rediss://user:***@h"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redacted_urls_hide_passwords(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
