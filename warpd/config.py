"""Configuration: config.toml decoded into msgspec Structs, with defaults and XDG paths.

Every field has a default, so an absent or empty file is a valid config; an
unknown key or a wrong type is a :class:`~warpd.errors.ConfigError` naming the
file and the field. The repository's ``config.toml`` documents every default
(a test checks it decodes to exactly ``Config()``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import msgspec

from warpd.errors import ConfigError

MiB = 1024 * 1024


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Where the daemon listens."""

    # Addresses to listen on: "unix:PATH", a bare path, or "ws://HOST:PORT".
    # Empty: the Unix socket $XDG_RUNTIME_DIR/warpd/warpd.sock.
    listen: list[str] = msgspec.field(default_factory=list)


class TcpConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Security of TCP listeners (``ws://`` / ``wss://`` addresses); see docs/security.md."""

    # The bearer token clients must send. Empty: a random 256-bit token kept in
    # token_file (created 0600 on first use), which local clients read by themselves.
    token: str = ""
    # Empty: $XDG_RUNTIME_DIR/warpd/token.
    token_file: str = ""
    # Browser origins allowed to connect (e.g. "https://dashboard.example").
    # Every handshake carrying an Origin not listed here is refused.
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    # Host header values accepted besides loopback ones ("name" or "name:port").
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    # Listening on a non-loopback address must be asked for explicitly.
    allow_non_loopback: bool = False
    # Certificate chain and private key (PEM) for wss:// listeners.
    tls_cert: str = ""
    tls_key: str = ""


class _PositiveNumbers(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A section whose every number is positive."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if value <= 0:
                # msgspec reports a ValueError here with the section's path.
                raise ValueError(f"{name} must be positive, got {value}")


class LimitsConfig(_PositiveNumbers, forbid_unknown_fields=True, omit_defaults=True):
    """Bounds that keep one peer from hurting the others."""

    # One upstream event, in bytes. Standard provider features send events of
    # several MB on one line (an OpenAI image generation event carries up to
    # ~4 MB of base64): the default passes them. A bigger event is skipped.
    max_frame_bytes: int = 16 * MiB
    max_sessions: int = 1000
    max_subscribers: int = 1000
    max_streams_per_session: int = 64
    # Bytes queued for one subscriber before it counts as behind and is
    # resynchronised with snapshots instead.
    outbox_bytes: int = MiB
    # A subscriber still behind after this many seconds is disconnected.
    stall_timeout: float = 60.0
    # A producer that sends nothing for this long has its stream aborted.
    producer_idle_timeout: float = 300.0
    # Seconds between keepalive pings (and the time allowed for the pong).
    ping_interval: float = 20.0
    # Seconds a graceful shutdown waits for subscribers to drain.
    shutdown_timeout: float = 5.0


class HistoryConfig(_PositiveNumbers, forbid_unknown_fields=True, omit_defaults=True):
    """What is remembered: in memory for late joiners and resuming subscribers,
    on disk (the history file) for ``warpd log``/``show`` and across restarts."""

    messages: int = 10_000
    bytes: int = 8 * MiB
    # Final messages of completed streams kept per session (for --replay).
    completed_streams: int = 50
    # All sessions' history together never holds more than this (in memory).
    total_bytes: int = 256 * MiB
    # Keep every stream in the history file too. False: memory only.
    persist: bool = True
    # The history file. Empty: $XDG_STATE_HOME/warpd/history.sqlite3.
    path: str = ""
    # The file's stored messages never add up to more than this many bytes,
    # nor are older than max_age seconds: the oldest streams go first.
    disk_bytes: int = 1024 * MiB
    max_age: float = 30 * 86400.0


class IngestConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How irregular input from producers is handled (see docs/protocol.md, Warnings)."""

    # False: an irregular event is skipped or repaired, recorded as a warning,
    # and the stream goes on. True: it ends the stream as aborted and closes
    # the push (a producer can ask for either with strict=… on /push).
    strict: bool = False
    # Warnings shown per stream (error blocks with source "input"); later
    # ones are only counted, in one last error block.
    max_warnings: int = 20

    def __post_init__(self) -> None:
        if self.max_warnings <= 0:
            raise ValueError(f"max_warnings must be positive, got {self.max_warnings}")


class LogConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Logging to stderr."""

    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"


class BrokerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Where sessions live: this daemon's memory, or a Redis shared by several daemons.

    See docs/scaling.md. The URL may carry a password and select TLS
    (``rediss://``); it is never logged as given (see :func:`redacted_url`).
    """

    # Empty: sessions live in this daemon's memory. "redis://HOST:PORT/DB",
    # "rediss://…" for TLS, "redis://:PASSWORD@HOST…" or "redis://USER:PASSWORD@HOST…"
    # with an ACL user, or "unix:///path/redis.sock".
    url: str = ""
    # Messages each session's history keeps in Redis (XADD MAXLEN ~): the
    # window within which since=SEQ resumes work, on any daemon.
    stream_maxlen: int = 10_000
    # Prefix of every Redis key and channel warpd uses; daemons that share
    # sessions use the same prefix.
    key_prefix: str = "warpd"
    # Reconnection backoff after Redis is lost, in seconds: doubles from min to max.
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    # Seconds one Redis command may take before Redis counts as unavailable.
    timeout: float = 5.0
    # Seconds a daemon counts as alive after it last said so in Redis (it does
    # every liveness_ttl / 3 s while connected). Once that passes, the other
    # daemons end its live streams as aborted.
    liveness_ttl: float = 5.0

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            shown = redacted_url(self.url)
            raise ValueError(f"url must start with redis://, rediss:// or unix://, got {shown!r}")
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", self.key_prefix):
            raise ValueError(
                f"key_prefix must be 1-64 letters, digits and . _ : -, got {self.key_prefix!r}"
            )
        for name in ("stream_maxlen", "reconnect_min", "reconnect_max", "timeout", "liveness_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be less than reconnect_min")


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe to log and show in status."""
    return re.sub(r"^([a-z]+://)([^/@]*:)?[^/@]*@", lambda m: f"{m[1]}{m[2] or ''}***@", url)


class SubscribeConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How ``warpd subscribe`` shows streams (read by the subscriber, not the daemon)."""

    # Post a terminal notification when a stream completes or fails (as --notify).
    notify: bool = False
    # The Pygments style highlighted code is drawn in.
    code_theme: str = "monokai"


class Config(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The whole configuration of warpd: the daemon's, and ``[subscribe]`` for subscribers."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    tcp: TcpConfig = msgspec.field(default_factory=TcpConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    history: HistoryConfig = msgspec.field(default_factory=HistoryConfig)
    ingest: IngestConfig = msgspec.field(default_factory=IngestConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    subscribe: SubscribeConfig = msgspec.field(default_factory=SubscribeConfig)


def runtime_dir() -> Path:
    """warpd's runtime directory: ``$XDG_RUNTIME_DIR/warpd``, else a per-user dir in /tmp."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "warpd"
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"warpd-{os.getuid()}"


def default_socket_path() -> Path:
    """The Unix socket the daemon listens on and clients connect to by default."""
    return runtime_dir() / "warpd.sock"


def default_token_path() -> Path:
    """Where the daemon keeps its TCP token and local clients read it."""
    return runtime_dir() / "token"


def state_dir() -> Path:
    """warpd's state directory: ``$XDG_STATE_HOME/warpd`` (``~/.local/state/warpd`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "warpd"


def history_path(config: Config) -> Path:
    """The history file ``config`` names: ``[history] path``, else the state directory's."""
    if config.history.path:
        return Path(config.history.path).expanduser()
    return state_dir() / "history.sqlite3"


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/warpd/config.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "warpd" / "config.toml"


def parse_config(data: bytes | str, source: str = "config") -> Config:
    """Decode TOML text into a Config; raises ConfigError naming ``source`` and the field."""
    try:
        return msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None


def load_config(path: Path | None = None) -> Config:
    """Load ``path``, or the default config file if it exists, else the defaults.

    An explicitly given path must exist.
    """
    if path is None:
        path = default_config_path()
        if not path.exists():
            return Config()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    return parse_config(data, str(path))
