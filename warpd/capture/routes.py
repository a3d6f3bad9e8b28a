"""Where a captured request goes: the proxy's route table and each provider's upstream.

The proxy serves each provider under a path of its own, so one port serves
them all and the path alone — never the Host header — picks the upstream:

==========  =====================  ==========================  ==============================
provider    variable               proxy path (= the base URL)  captured as (path → format)
==========  =====================  ==========================  ==============================
openai      ``OPENAI_BASE_URL``    ``/openai/v1``               ``/chat/completions`` → openai,
                                                                ``/responses`` → openai-responses
anthropic   ``ANTHROPIC_BASE_URL`` ``/anthropic``               ``/v1/messages`` → anthropic
ollama      ``OLLAMA_HOST``        ``/`` (only ``/``,           ``/api/chat``, ``/api/generate``
                                   ``/api/…`` and ``/v1/…``)    → ollama; ``/v1/chat/completions``
                                                                → openai, ``/v1/responses``
                                                                → openai-responses
==========  =====================  ==========================  ==============================

The variables keep each SDK's own convention: ``OPENAI_BASE_URL`` ends in
``/v1`` (the SDK appends ``/chat/completions``), ``ANTHROPIC_BASE_URL`` does
not (the SDK appends ``/v1/messages``), and ``OLLAMA_HOST`` is a host, with or
without scheme and port (``127.0.0.1:11434``, ``http://host``). A request's
path below its provider's proxy path is appended to that provider's upstream
URL as it is, with the query string: ``/openai/v1/models`` goes to
``https://api.openai.com/v1/models``. Other paths are answered 404.

Everything here is pure: parsing and joining, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from warpd.address import is_loopback_host
from warpd.errors import ConfigError


@dataclass(frozen=True)
class Provider:
    """One provider: its base-URL variable, public address and proxy path."""

    name: str
    #: The variable its SDKs and tools read their base URL from.
    variable: str
    #: The public address, used when neither ``--upstream`` nor the variable gives one.
    default: str
    #: The proxy path standing for the upstream base URL ("" for the root).
    mount: str
    #: Paths below the mount whose answers are captured, and their format.
    formats: Mapping[str, str]
    #: When set, the only paths below the mount that are served: ``"/"``
    #: exactly, or prefixes ending in ``/``.
    only: tuple[str, ...] = ()

    def variable_value(self, proxy: str) -> str:
        """What the provider's variable is set to for a tool behind the proxy at ``proxy``.

        ``proxy`` is ``http://HOST:PORT`` without a trailing slash.
        """
        return proxy + self.mount


OPENAI = Provider(
    "openai",
    "OPENAI_BASE_URL",
    "https://api.openai.com/v1",
    "/openai/v1",
    {"/chat/completions": "openai", "/responses": "openai-responses"},
)
ANTHROPIC = Provider(
    "anthropic",
    "ANTHROPIC_BASE_URL",
    "https://api.anthropic.com",
    "/anthropic",
    {"/v1/messages": "anthropic"},
)
OLLAMA = Provider(
    "ollama",
    "OLLAMA_HOST",
    "http://127.0.0.1:11434",
    "",
    # Ollama's OpenAI-compatible API under /v1 too: tools such as goose build
    # their URL from OLLAMA_HOST + /v1/chat/completions.
    {"/api/chat": "ollama", "/api/generate": "ollama",
     "/v1/chat/completions": "openai", "/v1/responses": "openai-responses"},
    only=("/", "/api/", "/v1/"),
)

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OPENAI, ANTHROPIC, OLLAMA)}

# Ollama's own default port, for OLLAMA_HOST values without one.
_OLLAMA_PORT = 11434


@dataclass(frozen=True)
class Route:
    """Where one request goes: its provider, the path below the mount, and its format.

    ``format`` is None for paths whose answers are forwarded but not captured
    (``/openai/v1/models``, ``/anthropic/v1/messages/count_tokens``, …).
    """

    provider: Provider
    path: str
    format: str | None


def find_route(path: str) -> Route | None:
    """The route of a request ``path`` (without its query), or None if no provider serves it.

    A path with a ``.`` or ``..`` segment (percent-encoded or not) has none:
    the upstream would resolve it to a path outside its base URL.
    """
    if _has_dot_segment(path):
        return None
    for provider in (OPENAI, ANTHROPIC):
        mount = provider.mount
        if path == mount or path.startswith(mount + "/"):
            rest = path[len(mount) :]
            return Route(provider, rest, provider.formats.get(rest.rstrip("/") or rest))
    if path == "/" or any(path.startswith(p) for p in OLLAMA.only if p != "/"):
        return Route(OLLAMA, path, OLLAMA.formats.get(path.rstrip("/")))
    return None


def _has_dot_segment(path: str) -> bool:
    segments = unquote(path).replace("\\", "/").split("/")
    return any(segment in (".", "..") for segment in segments)


def known_paths() -> str:
    """The served path prefixes, for a 404's one-line reason."""
    return "/openai/v1/…, /anthropic/…, /api/… and /v1/… (ollama)"


def upstream_url(base: str, route: Route, query: str) -> str:
    """The URL a request on ``route`` goes to: ``base`` + the path below the mount + query.

    ``base`` is an upstream from :func:`resolve_upstreams` (no trailing
    slash). The result always has ``base``'s scheme and host: the path is
    appended, never parsed as an address.
    """
    return base + route.path + (f"?{query}" if query else "")


def resolve_upstreams(
    environ: Mapping[str, str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each provider's upstream base URL: ``overrides``, else its variable, else its default.

    ``overrides`` maps provider names to URLs (from ``--upstream``). Returns
    provider name → URL without a trailing slash. Raises :class:`ConfigError`
    naming the variable or option whose value is not an http(s) URL.
    """
    overrides = overrides or {}
    upstreams: dict[str, str] = {}
    for name, provider in PROVIDERS.items():
        if name in overrides:
            where, value = f"--upstream {name}=", overrides[name]
        elif environ.get(provider.variable, "").strip():
            where, value = f"{provider.variable}=", environ[provider.variable]
        else:
            where, value = "the default ", provider.default
        upstreams[name] = _normalise(provider, value.strip(), where)
    return upstreams


def parse_upstream_option(text: str) -> tuple[str, str]:
    """Parse ``--upstream PROVIDER=URL``; ConfigError saying the accepted form."""
    name, sep, url = text.partition("=")
    name = name.strip().lower()
    if not sep or not url.strip():
        raise ConfigError(f"{text!r}: expected PROVIDER=URL, e.g. openai=http://gw:4000/v1")
    if name not in PROVIDERS:
        raise ConfigError(
            f"{text!r}: unknown provider {name!r} (known: {', '.join(PROVIDERS)})"
        )
    return name, url.strip()


def _normalise(provider: Provider, value: str, where: str) -> str:
    if provider is OLLAMA and "://" not in value:
        # OLLAMA_HOST is often host[:port], as `ollama serve` takes it.
        value = "http://" + value
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}{value}: bad port") from None
    if parts.scheme not in ("http", "https") or not (parts.hostname or provider is OLLAMA):
        raise ConfigError(f"{where}{value}: expected an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}{value}: a base URL has no query or fragment")
    if provider is OLLAMA:
        # Ollama's clients default to 127.0.0.1 and, over http, port 11434.
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        if port is None and parts.scheme == "http":
            port = _OLLAMA_PORT
        netloc = host if port is None else f"{host}:{port}"
        value = parts._replace(netloc=netloc).geturl()
    return value.rstrip("/")


def parse_listen(text: str) -> tuple[str, int]:
    """Parse ``--listen HOST:PORT`` (or ``PORT``) on a loopback address; ConfigError otherwise."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8788")
    if not is_loopback_host(host):
        raise ConfigError(
            f"--listen {text!r}: the proxy listens on loopback only (127.0.0.1, ::1, localhost): "
            "anyone who reaches it can use the API keys passing through"
        )
    return host, int(port_text)

