"""The capture proxy's pure parts: routes, upstreams, request summaries, content decoding."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from warpd.capture.encoding import DecodedTooLarge, UnsupportedEncoding, content_decoder
from warpd.capture.request_summary import summarise_request
from warpd.capture.routes import (
    find_route,
    parse_listen,
    parse_upstream_option,
    resolve_upstreams,
    upstream_url,
)
from warpd.capture.runner import export_lines, session_for_command, tool_environment
from warpd.errors import ConfigError
from warpd.protocol import PROMPT_LIMIT, StreamRequest


@pytest.mark.parametrize(
    ("path", "provider", "rest", "format"),
    [
        ("/openai/v1/chat/completions", "openai", "/chat/completions", "openai"),
        ("/openai/v1/responses", "openai", "/responses", "openai-responses"),
        ("/openai/v1/models", "openai", "/models", None),
        ("/openai/v1", "openai", "", None),
        ("/anthropic/v1/messages", "anthropic", "/v1/messages", "anthropic"),
        ("/anthropic/v1/messages/count_tokens", "anthropic", "/v1/messages/count_tokens", None),
        ("/api/chat", "ollama", "/api/chat", "ollama"),
        ("/api/generate", "ollama", "/api/generate", "ollama"),
        ("/api/tags", "ollama", "/api/tags", None),
        ("/", "ollama", "/", None),
        # Ollama's OpenAI-compatible API, at OLLAMA_HOST + /v1 (goose uses it).
        ("/v1/chat/completions", "ollama", "/v1/chat/completions", "openai"),
        ("/v1/responses", "ollama", "/v1/responses", "openai-responses"),
        ("/v1/models", "ollama", "/v1/models", None),
    ],
)
def test_routes(path: str, provider: str, rest: str, format: str | None) -> None:
    route = find_route(path)
    assert route is not None
    assert (route.provider.name, route.path, route.format) == (provider, rest, format)


@pytest.mark.parametrize(
    "path", ["/v1", "/v2/chat/completions", "/openai/v2/x", "/openaix/v1", "/apix", "/anthropicx",
             "/x", "//evil.example/v1",
             # Dot segments: the upstream would resolve them above its base URL.
             "/openai/v1/../../admin", "/openai/v1/./models", "/anthropic/v1/%2e%2e/x",
             "/api/%2E%2E/%2e%2E/x", "/api/..%2F..%2Fx", "/openai/v1/..\\..\\x", "/openai/v1/.."]
)
def test_paths_no_provider_serves(path: str) -> None:
    assert find_route(path) is None


def test_the_path_is_appended_to_the_upstream_never_read_as_an_address() -> None:
    route = find_route("/openai/v1//evil.example/x")
    assert route is not None
    url = upstream_url("https://api.openai.com/v1", route, "a=1")
    assert url == "https://api.openai.com/v1//evil.example/x?a=1"


def test_upstreams_from_options_then_variables_then_defaults() -> None:
    environ = {"OPENAI_BASE_URL": "http://gateway:4000/openai/v1/", "OLLAMA_HOST": "gpu:9000"}
    upstreams = resolve_upstreams(environ, {"anthropic": "https://proxy.corp/anthropic"})
    assert upstreams == {
        "openai": "http://gateway:4000/openai/v1",
        "anthropic": "https://proxy.corp/anthropic",
        "ollama": "http://gpu:9000",
    }
    assert resolve_upstreams({}) == {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com",
        "ollama": "http://127.0.0.1:11434",
    }


@pytest.mark.parametrize(
    ("value", "url"),
    [("0.0.0.0", "http://0.0.0.0:11434"), (":8080", "http://127.0.0.1:8080"),
     ("[::1]:9", "http://[::1]:9"), ("http://box", "http://box:11434"),
     ("https://box/ollama", "https://box/ollama"), ("http://box:1/", "http://box:1")],
)
def test_ollama_host_in_every_form_ollama_takes(value: str, url: str) -> None:
    assert resolve_upstreams({"OLLAMA_HOST": value})["ollama"] == url


@pytest.mark.parametrize(
    ("environ", "message"),
    [({"OPENAI_BASE_URL": "api.openai.com/v1"}, "OPENAI_BASE_URL=api.openai.com/v1: expected"),
     ({"ANTHROPIC_BASE_URL": "http://x:99999"}, "ANTHROPIC_BASE_URL=http://x:99999: bad port"),
     ({"OPENAI_BASE_URL": "http://x/v1?key=1"}, "has no query")],
)
def test_a_bad_upstream_names_its_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        resolve_upstreams(environ)


def test_upstream_options() -> None:
    assert parse_upstream_option("OpenAI=http://gw/v1") == ("openai", "http://gw/v1")
    with pytest.raises(ConfigError, match="expected PROVIDER=URL"):
        parse_upstream_option("openai")
    with pytest.raises(ConfigError, match="unknown provider 'groq'"):
        parse_upstream_option("groq=http://x")


def test_listen_is_loopback_only() -> None:
    assert parse_listen("8788") == ("127.0.0.1", 8788)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:9") == ("localhost", 9)
    for bad in ("0.0.0.0:80", "192.168.1.2:80", "example.com:80", "[::]:80"):
        with pytest.raises(ConfigError, match="loopback only"):
            parse_listen(bad)
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_listen("127.0.0.1:http")


def test_the_tools_environment_and_the_export_lines() -> None:
    env = tool_environment("http://127.0.0.1:5000", {"PATH": "/bin", "no_proxy": "localhost"})
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:5000/openai/v1"
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:5000/anthropic"
    assert env["OLLAMA_HOST"] == "http://127.0.0.1:5000"
    assert env["no_proxy"] == "localhost,127.0.0.1" and env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["PATH"] == "/bin"
    assert export_lines("http://127.0.0.1:5000") == [
        "export OPENAI_BASE_URL=http://127.0.0.1:5000/openai/v1",
        "export ANTHROPIC_BASE_URL=http://127.0.0.1:5000/anthropic",
        "export OLLAMA_HOST=http://127.0.0.1:5000",
    ]


@pytest.mark.parametrize(
    ("command", "session"),
    [("claude", "claude"), ("/usr/bin/python3.11", "python3.11"), ("./my agent!", "my-agent-"),
     ("...", "run"), ("-x", "x")],
)
def test_the_default_session_is_the_commands_name(command: str, session: str) -> None:
    assert session_for_command(command) == session


# -- request summaries ---------------------------------------------------------


def summary(body: dict[str, object]) -> StreamRequest | None:
    return summarise_request(json.dumps(body).encode())


def test_chat_and_anthropic_requests_give_the_last_user_messages_text() -> None:
    body = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "  Look\n at"},
                                     {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "this"}]},
    ]}
    assert summary(body) == StreamRequest("gpt-4o", "Look at this")


def test_a_user_turn_without_text_is_named_by_its_parts() -> None:
    body = {"model": "claude", "messages": [
        {"role": "user", "content": "do it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "x"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"},
                                     {"type": "tool_result", "tool_use_id": "u"},
                                     {"type": "image"}]},
    ]}
    assert summary(body) == StreamRequest("claude", "[tool_result ×2, image]")


def test_responses_and_ollama_generate_requests() -> None:
    plain = summary({"model": "gpt-5", "input": "List files"})
    assert plain == StreamRequest("gpt-5", "List files")
    items = {"model": "gpt-5", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Fix it"}]},
        {"type": "function_call_output", "call_id": "c", "output": "ok"},
    ]}
    assert summary(items) == StreamRequest("gpt-5", "Fix it")
    assert summary({"model": "llama3", "prompt": "Why?"}) == StreamRequest("llama3", "Why?")


def test_long_prompts_are_cut_and_odd_bodies_give_what_can_be_read() -> None:
    long = summary({"messages": [{"role": "user", "content": "word " * 10_000}]})
    assert long is not None and long.model is None and long.prompt is not None
    assert len(long.prompt) == PROMPT_LIMIT and long.prompt.endswith("…")
    assert summary({"model": 3, "messages": "no"}) is None
    assert summary({"model": "m", "messages": [1, 2]}) == StreamRequest("m", None)
    assert summarise_request(b"not json") is None
    assert summarise_request(b"") is None


# -- content decoding ------------------------------------------------------------

BODY = b"data: {\"x\": 1}\n\n" * 500


@pytest.mark.parametrize(
    ("header", "encoded"),
    [("gzip", gzip.compress(BODY)), ("x-gzip", gzip.compress(BODY)),
     ("deflate", zlib.compress(BODY)), ("deflate", zlib.compress(BODY)[2:-4]),
     ("deflate, gzip", gzip.compress(zlib.compress(BODY))), ("identity", BODY)],
    ids=["gzip", "x-gzip", "zlib-deflate", "raw-deflate", "two", "identity"],
)
def test_content_decoding_in_any_pieces(header: str, encoded: bytes) -> None:
    decoder = content_decoder(header, 1 << 20)
    if decoder is None:
        assert header == "identity"
        return
    out = b"".join(decoder.decode(encoded[i : i + 5]) for i in range(0, len(encoded), 5))
    assert out + decoder.flush() == BODY


def test_a_decompression_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (10 << 20))
    decoder = content_decoder("gzip", 1 << 20)
    assert decoder is not None
    with pytest.raises(DecodedTooLarge):
        decoder.decode(bomb)


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(UnsupportedEncoding, match="compress"):
        content_decoder("compress", 100)
