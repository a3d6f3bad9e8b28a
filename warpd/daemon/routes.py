"""The daemon's endpoints: request paths parsed into routes, or a clear refusal.

``/push?session=NAME[&format=F][&strict=true|false]``, ``/subscribe?session=NAME…[&since=…]
[&epoch=E][&replay=N]``, ``/status`` and ``/reload``. Parsing is pure, so the handshake
hook can refuse a bad request with HTTP 400 before the WebSocket opens.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import msgspec

from warpd.errors import InputError
from warpd.ingest import check_format
from warpd.protocol import check_session_name


class PushRoute(msgspec.Struct, frozen=True):
    session: str
    format: str
    # The producer's choice of strict mode; None: the daemon's [ingest] strict.
    strict: bool | None = None


class SubscribeRoute(msgspec.Struct, frozen=True):
    sessions: tuple[str, ...]
    # The last seq seen per session ("*" applies to every session).
    since: dict[str, int] | None = None
    epoch: str | None = None
    replay: int = 0


class StatusRoute(msgspec.Struct, frozen=True):
    pass


class ReloadRoute(msgspec.Struct, frozen=True):
    """Re-read the configuration, as SIGHUP does under systemd (``warpd reload``)."""


Route = PushRoute | SubscribeRoute | StatusRoute | ReloadRoute


class RouteError(Exception):
    """The request cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_KNOWN = {
    "/push": {"session", "format", "strict"},
    "/subscribe": {"session", "since", "epoch", "replay"},
    "/status": set(),
    "/reload": set(),
}


def parse_route(target: str) -> Route:
    """Parse a request target (path and query); raises RouteError with a 4xx status."""
    try:
        parts = urlsplit(target)
    except ValueError as exc:  # e.g. "//[x": an unfinished IPv6 host
        raise RouteError(400, f"cannot parse the request target: {exc}") from None
    path = parts.path.rstrip("/") or "/"
    if path not in _KNOWN:
        raise RouteError(
            404, f"no endpoint {path!r}: use /push, /subscribe, /status or /reload"
        )
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(params) - _KNOWN[path])
    if unknown:
        raise RouteError(400, f"unknown parameter {unknown[0]!r} for {path}")
    if path == "/status":
        return StatusRoute()
    if path == "/reload":
        return ReloadRoute()
    if path == "/push":
        session = _one(params, "session", "default")
        _check_session(session)
        try:
            fmt = check_format(_one(params, "format", "auto"))
        except InputError as exc:
            raise RouteError(400, str(exc)) from None
        strict = _one(params, "strict", "")
        if strict not in _BOOLEANS:
            raise RouteError(400, f"strict must be true or false, got {strict[:40]!r}")
        return PushRoute(session, fmt, _BOOLEANS[strict])
    sessions = tuple(dict.fromkeys(params.get("session") or ["default"]))
    for session in sessions:
        if session != "*":
            _check_session(session)
    return SubscribeRoute(
        sessions,
        since=_since(params.get("since"), sessions),
        epoch=_one(params, "epoch", "") or None,
        replay=_int(_one(params, "replay", "0"), "replay"),
    )


_BOOLEANS: dict[str, bool | None] = {
    "": None, "true": True, "1": True, "false": False, "0": False
}  # fmt: skip


def _one(params: dict[str, list[str]], name: str, default: str) -> str:
    values = params.get(name)
    if not values:
        return default
    if len(values) > 1:
        raise RouteError(400, f"parameter {name!r} given {len(values)} times; give it once")
    return values[0]


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise RouteError(400, f"{name} must be a whole number, got {text[:40]!r}") from None
    if value < 0:
        raise RouteError(400, f"{name} must not be negative, got {value}")
    return value


def _since(values: list[str] | None, sessions: tuple[str, ...]) -> dict[str, int] | None:
    """``since=SEQ`` (every session) or ``since=SESSION:SEQ`` (repeatable)."""
    if not values:
        return None
    since: dict[str, int] = {}
    for value in values:
        name, sep, seq = value.rpartition(":")
        if not sep:
            since["*"] = _int(value, "since")
        else:
            if name not in sessions and "*" not in sessions:
                raise RouteError(400, f"since names session {name!r}, which is not subscribed")
            since[name] = _int(seq, "since")
    return since


def _check_session(name: str) -> None:
    problem = check_session_name(name)
    if problem is not None:
        raise RouteError(400, problem)
