"""``warpd proxy`` as a real process between a raw HTTP client and a fake upstream.

The client (http.client: no decompression, no redirects) must get exactly
what the upstream sends it directly; the session must get each answer as one
stream, its final equal to ``warpd convert`` of the same recording.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.capture import (
    ProxyProcess,
    comparable,
    converted_final,
    exchange,
    proxy_env,
    upstream_options,
)
from tests.conftest import fixture_files
from tests.daemon import TIMEOUT_UNIT, Daemon
from tests.fake_upstream import Answer, FakeUpstream, fixture_answer, fixture_route
from tests.test_ingest_whole import ANTHROPIC_MESSAGE, CHAT_COMPLETION
from tests.test_openai_chat import TEXT_WITH_USAGE

# The proxy paths of each provider's API paths (the tool's base URL + the SDK's path).
PROXY_PATH = {
    "/v1/chat/completions": "/openai/v1/chat/completions",
    "/v1/responses": "/openai/v1/responses",
    "/v1/messages": "/anthropic/v1/messages",
    "/api/generate": "/api/generate",
    "/api/chat": "/api/chat",
}
SECRET = "sk-test-0123456789-do-not-leak"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def proxy(daemon: Daemon, upstream: FakeUpstream, short_tmp: Path) -> Iterator[ProxyProcess]:
    with ProxyProcess(short_tmp, "--session", "cap", *upstream_options(upstream),
                      "--log-level", "DEBUG", env=proxy_env(short_tmp, daemon.address)) as started:
        yield started


def chat_request(prompt: str = "Say hi", stream: bool = True) -> dict[str, Any]:
    return {"model": "gpt-4o", "stream": stream,
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": prompt}]}


def same_answer(direct: Any, proxied: Any) -> None:
    """The client got exactly what the upstream sends directly: status, headers, bytes."""
    assert (proxied.status, proxied.reason, proxied.body) == (direct.status, direct.reason,
                                                              direct.body)
    skip = {"date", "transfer-encoding", "content-length"}
    assert [h for h in proxied.headers if h[0].lower() not in skip] == [
        h for h in direct.headers if h[0].lower() not in skip
    ]


@pytest.mark.parametrize(
    "path", fixture_files("*.sse", "*.jsonl", "*.ndjson"), ids=lambda p: p and p.name
)
def test_each_recording_reaches_the_client_unchanged_and_the_session_whole(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess, path: Path
) -> None:
    api_path, format = fixture_route(path)
    answer = fixture_answer(path, pieces=12)
    upstream.choose = lambda p, b: answer
    sub = daemon.subscriber("--session", "cap")
    try:
        proxied = exchange(proxy.url, "POST", PROXY_PATH[api_path], chat_request())
        messages = sub.messages_until_final()
    finally:
        sub.close()
    direct = exchange(upstream.url, "POST", api_path, chat_request())
    same_answer(direct, proxied)
    assert proxied.body == answer.body
    first, final = messages[0], messages[-1]
    assert first["request"] == {"model": "gpt-4o", "prompt": "Say hi"}
    assert {m["stream"] for m in messages} == {"cap/1"}
    assert comparable(final) == comparable(converted_final(path.read_bytes(), format))


def test_the_answer_is_forwarded_as_it_comes_not_buffered(
    upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    # The upstream sends its first piece, then waits until the client has it.
    hold = threading.Event()
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE, pieces=4, hold=hold)
    host, port = proxy.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=4 * TIMEOUT_UNIT)
    try:
        connection.request("POST", "/openai/v1/chat/completions",
                           body=json.dumps(chat_request()), headers={"Content-Type": "a/j"})
        response = connection.getresponse()
        first = response.read1(65536)
        # Buffered, nothing would come before the upstream's whole answer.
        assert first and TEXT_WITH_USAGE.startswith(first) and len(first) < len(TEXT_WITH_USAGE)
        hold.set()
        rest = response.read()
    finally:
        hold.set()
        connection.close()
    assert first + rest == TEXT_WITH_USAGE


def test_a_whole_json_completion_is_one_complete_stream(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    body = json.dumps(CHAT_COMPLETION).encode()
    upstream.choose = lambda p, b: Answer(body, "application/json", pieces=3)
    sub = daemon.subscriber("--session", "cap")
    try:
        proxied = exchange(proxy.url, "POST", "/openai/v1/chat/completions",
                           chat_request(stream=False))
        messages = sub.messages_until_final()
    finally:
        sub.close()
    assert proxied.status == 200 and proxied.body == body
    final = messages[-1]
    assert not final.get("aborted") and final["finish_reasons"] == ["tool_calls", "stop"]
    assert [b["type"] for b in final["blocks"]] == ["text", "tool_call", "tool_call", "text"]


def test_a_gzip_answer_reaches_the_client_compressed_and_the_session_decoded(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    body = json.dumps(ANTHROPIC_MESSAGE).encode()
    upstream.choose = lambda p, b: Answer(body, "application/json", gzip=True, pieces=5)
    sub = daemon.subscriber("--session", "cap")
    try:
        proxied = exchange(proxy.url, "POST", "/anthropic/v1/messages",
                           {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]},
                           {"Accept-Encoding": "gzip"})
        messages = sub.messages_until_final()
    finally:
        sub.close()
    assert proxied.header("Content-Encoding") == "gzip"
    assert proxied.body == gzip.compress(body, mtime=0)
    final = messages[-1]
    assert not final.get("aborted") and final["finish_reason"] == "tool_use"
    assert final["blocks"][1]["text"] == "Let me look."


def test_an_upstream_error_is_forwarded_as_is_and_shown_as_an_error_block(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}
    body = json.dumps(error).encode()
    upstream.choose = lambda p, b: Answer(body, "application/json", status=429,
                                          headers={"Retry-After": "7"})
    sub = daemon.subscriber("--session", "cap")
    try:
        proxied = exchange(proxy.url, "POST", "/anthropic/v1/messages",
                           {"model": "claude", "stream": True, "messages": []})
        final = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert (proxied.status, proxied.body, proxied.header("Retry-After")) == (429, body, "7")
    assert final["aborted"] and [b["type"] for b in final["blocks"]] == ["error"]
    # (source "provider" is the default, so omitted.)
    assert final["blocks"][0]["error"] == {"message": "rate_limit_error: Slow down",
                                           "code": "rate_limit_error"}


def test_an_unreachable_upstream_is_a_502_and_an_error_block(
    daemon: Daemon, short_tmp: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # nothing listens there once closed
    sub = daemon.subscriber("--session", "cap")
    try:
        with ProxyProcess(short_tmp, "--session", "cap", "--upstream",
                          f"openai=http://127.0.0.1:{dead}/v1",
                          env=proxy_env(short_tmp, daemon.address)) as proxy:
            proxied = exchange(proxy.url, "POST", "/openai/v1/chat/completions",
                               chat_request())
        final = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert proxied.status == 502
    assert proxied.body.startswith(b"warpd proxy: cannot reach the openai upstream")
    assert final["aborted"] and final["blocks"][0]["type"] == "error"
    assert "cannot reach the openai upstream" in final["blocks"][0]["text"]


def test_passwords_in_upstream_and_proxy_urls_are_never_logged_or_shown(
    daemon: Daemon, short_tmp: Path
) -> None:
    # A gateway URL with user:password, and an HTTPS_PROXY whose password
    # has expired (407): aiohttp's errors name those URLs.
    refusals = 0

    def refuse_with_407(server: socket.socket) -> None:
        nonlocal refusals
        while True:
            try:
                peer, _ = server.accept()
            except OSError:
                return
            with peer:
                peer.recv(65536)
                peer.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Content-Length: 0\r\n\r\n")
                refusals += 1

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # nothing listens there once closed
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=refuse_with_407, args=(server,), daemon=True).start()
    env = proxy_env(short_tmp, daemon.address)
    env.update(HTTPS_PROXY=f"http://corp:PROXY-SECRET@127.0.0.1:{server.getsockname()[1]}",
               NO_PROXY="")
    sub = daemon.subscriber("--session", "cap")
    try:
        with ProxyProcess(short_tmp, "--session", "cap", "--log-level", "DEBUG",
                          "--upstream", f"openai=http://gw:GW-SECRET@127.0.0.1:{dead}/v1",
                          "--upstream", "anthropic=https://api.anthropic.example",
                          env=env) as proxy:
            answers = [exchange(proxy.url, "POST", path, chat_request()) for path in
                       ("/openai/v1/chat/completions", "/anthropic/v1/messages")]
            messages = sub.messages_until_final(2)
            log = proxy.log()
    finally:
        server.close()
        sub.close()
    assert [a.status for a in answers] == [502, 502] and refusals == 1
    shown = [log, daemon.log(), b"\n".join(sub.lines).decode(),
             *(a.body.decode() for a in answers)]
    assert "cannot reach the openai upstream http://***@127.0.0.1" in shown[0]
    assert "Proxy Authentication Required" in shown[2]
    for text in shown:
        assert "GW-SECRET" not in text and "PROXY-SECRET" not in text
    assert all(m["session"] == "cap" for m in messages)


def test_an_upstream_url_with_a_password_is_basic_auth_unless_the_client_sends_its_own(
    daemon: Daemon, upstream: FakeUpstream, short_tmp: Path
) -> None:
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE)
    gateway = upstream.url.replace("http://", "http://gw:s3cret@") + "/v1"
    sub = daemon.subscriber("--session", "cap")
    try:
        with ProxyProcess(short_tmp, "--session", "cap", "--upstream", f"openai={gateway}",
                          env=proxy_env(short_tmp, daemon.address)) as proxy:
            answers = [exchange(proxy.url, "POST", "/openai/v1/chat/completions", chat_request(),
                                headers) for headers in ({"Authorization": "Bearer sk-own"}, {})]
        finals = [m for m in sub.messages_until_final(2) if m["complete"]]
    finally:
        sub.close()
    assert [a.body for a in answers] == [TEXT_WITH_USAGE] * 2
    assert [r.headers.get("Authorization") for r in upstream.received] == [
        "Bearer sk-own", "Basic Z3c6czNjcmV0"]  # gw:s3cret
    assert [f.get("aborted") for f in finals] == [None, None]


def test_without_a_daemon_the_proxy_forwards_and_warns_once(
    upstream: FakeUpstream, short_tmp: Path
) -> None:
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE)
    with ProxyProcess(short_tmp, *upstream_options(upstream),
                      env=proxy_env(short_tmp, None)) as proxy:
        answers = [exchange(proxy.url, "POST", "/openai/v1/chat/completions", chat_request())
                   for _ in range(3)]
        time.sleep(0.3)
        log = proxy.log()
    assert [a.body for a in answers] == [TEXT_WITH_USAGE] * 3
    assert log.count("no warpd daemon at") == 1, log
    assert "forwarding goes on without capture" in log


def test_credentials_reach_the_upstream_and_nothing_else(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE)
    sub = daemon.subscriber("--session", "*")
    try:
        exchange(proxy.url, "POST", "/openai/v1/chat/completions?api-key=" + SECRET,
                 chat_request(), {"Authorization": f"Bearer {SECRET}", "x-api-key": SECRET,
                                  "api-key": SECRET, "Cookie": f"session={SECRET}"})
        sub.messages_until_final()
    finally:
        sub.close()
    (received,) = upstream.received
    assert received.headers["Authorization"] == f"Bearer {SECRET}"
    assert received.headers["x-api-key"] == received.headers["api-key"] == SECRET
    assert received.headers["Cookie"] == f"session={SECRET}"
    assert received.query == f"api-key={SECRET}" and SECRET in upstream.log()
    time.sleep(0.2)
    # The proxy logs at DEBUG here: still nothing.
    assert SECRET not in proxy.log() and "POST /openai/v1/chat/completions" in proxy.log()
    assert SECRET.encode() not in b"\n".join(sub.lines)
    assert SECRET not in daemon.log()


def test_a_client_leaving_mid_answer_gives_an_aborted_stream(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE * 4, pieces=40, pace=0.05)
    sub = daemon.subscriber("--session", "cap")
    try:
        host, port = proxy.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            body = json.dumps(chat_request()).encode()
            raw.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: " +
                        f"{host}:{port}".encode() + b"\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            seen = b""
            while b'"lo "' not in seen:  # some text has reached the session too
                seen += raw.recv(4096)
            assert seen.startswith(b"HTTP/1.1 200")
        final = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert final["aborted"] and final["abort_reason"] == "the client disconnected mid-answer"
    assert final["blocks"][0]["truncated"]


@pytest.mark.parametrize("silent", ["before its headers", "after its first piece"])
def test_a_client_leaving_while_the_upstream_is_silent_ends_the_stream_at_once(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess, silent: str
) -> None:
    # A reasoning model thinking, or an upstream that hangs: the client gives
    # up (its timeout, Ctrl-C) while nothing comes. The stream must not stay
    # live until the upstream next sends something, nor the upstream go on.
    release = threading.Event()
    hold = {"hold_head" if silent == "before its headers" else "hold": release}
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE, pieces=4, **hold)
    sub = daemon.subscriber("--session", "cap")
    try:
        host, port = proxy.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            body = json.dumps(chat_request()).encode()
            raw.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: " +
                        f"{host}:{port}".encode() + b"\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            assert sub.read_message()["request"]["prompt"] == "Say hi"
            if silent == "after its first piece":
                assert raw.recv(4096).startswith(b"HTTP/1.1 200")
            left = time.monotonic()
        final = sub.messages_until_final()[-1]
        # Ended while the upstream still holds its answer (it waits up to 10 s).
        assert time.monotonic() - left < 5, final
    finally:
        release.set()
        sub.close()
    assert final["aborted"]
    assert final["abort_reason"].startswith("the client disconnected")
    time.sleep(0.5)
    assert upstream.completed == 0  # the upstream connection was closed, not read to the end


def test_an_upstream_breaking_mid_answer_breaks_the_clients_answer_too(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE, pieces=10, cut_after=3)
    sub = daemon.subscriber("--session", "cap")
    try:
        with pytest.raises(http.client.IncompleteRead):
            exchange(proxy.url, "POST", "/openai/v1/chat/completions", chat_request())
        final = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert final["aborted"]
    assert final["abort_reason"].startswith("the upstream connection broke mid-answer")


def test_twenty_concurrent_streams_all_arrive(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    upstream.choose = lambda p, b: Answer(
        TEXT_WITH_USAGE.replace(b'"Hel"', f'"{b["messages"][-1]["content"]}"'.encode()),
        pieces=10, pace=0.01,
    )
    sub = daemon.subscriber("--session", "cap")
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(
                lambda n: exchange(proxy.url, "POST", "/openai/v1/chat/completions",
                                   chat_request(f"N{n:02}")), range(20)))
        messages = sub.messages_until_final(20)
    finally:
        sub.close()
    assert [a.body for a in answers] == [
        TEXT_WITH_USAGE.replace(b'"Hel"', f'"N{n:02}"'.encode()) for n in range(20)]
    finals = [m for m in messages if m["complete"] and not m["streaming"]]
    assert len({m["stream"] for m in finals}) == 20
    for final in finals:
        assert not final.get("aborted")
        prompt = final["request"]["prompt"]
        assert final["blocks"][0]["text"] == f"{prompt}lo wörld ✓"


def test_browser_requests_bad_hosts_and_unknown_paths_are_refused(
    upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    origin = exchange(proxy.url, "POST", "/openai/v1/chat/completions", chat_request(),
                      {"Origin": "https://evil.example"})
    assert origin.status == 403
    assert origin.body == b"warpd proxy: requests from web pages (with an Origin header) " \
                          b"are refused\n"
    rebinding = exchange(proxy.url, "GET", "/openai/v1/models", None,
                         {"Host": f"evil.example:{proxy.url.rsplit(':', 1)[1]}"})
    assert rebinding.status == 403 and b"Host" in rebinding.body
    unknown = exchange(proxy.url, "GET", "/v2/chat/completions")
    assert unknown.status == 404 and b"no route for this path" in unknown.body
    for climbing in ("/openai/v1/../../admin", "/anthropic/v1/%2e%2e/%2e%2e/admin"):
        assert exchange(proxy.url, "GET", climbing).status == 404
    assert upstream.received == []


def test_ollamas_openai_compatible_api_at_the_root_is_forwarded_and_captured(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    # goose's Ollama provider posts to OLLAMA_HOST + /v1/chat/completions.
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE, pieces=4)
    sub = daemon.subscriber("--session", "cap")
    try:
        answer = exchange(proxy.url, "POST", "/v1/chat/completions", chat_request())
        final = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert (answer.status, answer.body) == (200, TEXT_WITH_USAGE)
    assert [r.path for r in upstream.received] == ["/v1/chat/completions"]
    assert not final.get("aborted") and final["blocks"][0]["text"] == "Hello wörld ✓"


def test_other_paths_under_a_provider_are_forwarded_but_not_captured(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess
) -> None:
    models = b'{"object":"list","data":[]}'
    upstream.choose = lambda p, b: Answer(models, "application/json")
    proxied = exchange(proxy.url, "GET", "/openai/v1/models?limit=2&after=x")
    assert proxied.body == models
    (received,) = upstream.received
    assert (received.method, received.path, received.query) == ("GET", "/v1/models",
                                                                "limit=2&after=x")
    status = json.loads(daemon.run("status", "--json", check=True).stdout)
    assert all(s["session"] != "cap" for s in status["sessions"])


def test_listening_beyond_loopback_is_refused(short_tmp: Path) -> None:
    result = subprocess.run(
        [*ProxyProcess.command("--listen", "0.0.0.0:0")], capture_output=True,
        env=proxy_env(short_tmp, None), timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 1
    assert b"the proxy listens on loopback only" in result.stderr
    assert b"Traceback" not in result.stderr


def test_answers_share_push_connections_and_survive_a_daemon_restart(
    daemon: Daemon, upstream: FakeUpstream, proxy: ProxyProcess, short_tmp: Path
) -> None:
    upstream.choose = lambda p, b: Answer(TEXT_WITH_USAGE, pieces=3)
    sub = daemon.subscriber("--session", "cap")
    try:
        for _ in range(3):
            exchange(proxy.url, "POST", "/openai/v1/chat/completions", chat_request())
            sub.messages_until_final()
    finally:
        sub.close()
    # One WebSocket handshake for three answers one after another.
    assert daemon.log().count("push session=cap") == 1
    daemon.stop()
    with Daemon(short_tmp) as restarted:
        sub = restarted.subscriber("--session", "cap")
        try:
            proxied = exchange(proxy.url, "POST", "/openai/v1/chat/completions", chat_request())
            final = sub.messages_until_final()[-1]
        finally:
            sub.close()
    assert proxied.body == TEXT_WITH_USAGE
    assert not final.get("aborted") and final["blocks"][0]["text"] == "Hello wörld ✓"
    assert "no warpd daemon" not in proxy.log() and "lost the warpd daemon" not in proxy.log()
