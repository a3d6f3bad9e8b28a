"""``warpd run -- COMMAND`` with real clients nobody here wrote: the openai and anthropic SDKs.

Each client runs twice as a real subprocess with the same environment: once
straight against the fake upstream, once under ``warpd run``, which takes
the upstream from that environment (OPENAI_BASE_URL, ANTHROPIC_BASE_URL) and
points the client at its proxy. The client must get the same results; the
session must get one stream per request, streamed ones equal to ``warpd
convert`` of what the upstream sent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.capture import capture_command, comparable, converted_final, proxy_env
from tests.capture_clients import REQUESTS
from tests.conftest import FIXTURES_DIR
from tests.daemon import TIMEOUT_UNIT, Daemon
from tests.fake_upstream import Answer, FakeUpstream, provider_answer
from tests.ingest_streams import ANTHROPIC_THINKING_TOOL, RESPONSES_MIXED
from tests.test_ingest_whole import ANTHROPIC_MESSAGE, CHAT_COMPLETION, RESPONSE
from tests.test_openai_chat import TEXT_WITH_USAGE

SECRET = "sk-run-test-9876543210-do-not-leak"


def recorded_or(name: str, fallback: bytes, suffix: str) -> tuple[bytes, str]:
    """A recorded fixture when ../shared is there, else the suite's own stream."""
    path = FIXTURES_DIR / name
    return (path.read_bytes(), path.suffix) if path.is_file() else (fallback, suffix)


# API path -> (format, stream bytes and their wire form, the whole answer).
ANSWERS: dict[str, tuple[str, tuple[bytes, str], dict[str, Any]]] = {
    "/v1/chat/completions": (
        "openai", recorded_or("openai_chat_parallel_tool_calls.sse", TEXT_WITH_USAGE, ".sse"),
        CHAT_COMPLETION),
    "/v1/responses": (
        "openai-responses",
        recorded_or("openai_responses_output_text.jsonl", RESPONSES_MIXED, ".jsonl"), RESPONSE),
    "/v1/messages": (
        "anthropic", recorded_or("anthropic_text_then_tool_use.sse", ANTHROPIC_THINKING_TOOL,
                                 ".sse"), ANTHROPIC_MESSAGE),
}


def choose(path: str, body: dict[str, Any]) -> Answer:
    _, (data, suffix), whole = ANSWERS[path]
    if body.get("stream"):
        return provider_answer(data, suffix, pieces=10, pace=0.002)
    return Answer(json.dumps(whole).encode(), "application/json", pieces=2)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(choose) as fake:
        yield fake


def client_env(home: Path, upstream: FakeUpstream, daemon: Daemon | None) -> dict[str, str]:
    """What a user's shell holds: the daemon's address, the provider's URLs and keys."""
    env = proxy_env(home, daemon.address if daemon is not None else None)
    env.update(
        OPENAI_BASE_URL=f"{upstream.url}/v1",
        ANTHROPIC_BASE_URL=upstream.url,
        OPENAI_API_KEY=SECRET,
        ANTHROPIC_API_KEY=SECRET,
    )
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, env=env, timeout=12 * TIMEOUT_UNIT)


def client(sdk: str) -> list[str]:
    return [sys.executable, "-m", "tests.capture_clients", sdk]


def stream_number(message: dict[str, Any]) -> int:
    return int(message["stream"].rsplit("/", 1)[1])


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_sdk_clients_get_what_they_get_directly_and_the_session_every_answer(
    daemon: Daemon, upstream: FakeUpstream, short_tmp: Path, sdk: str
) -> None:
    env = client_env(short_tmp, upstream, daemon)
    direct = run(client(sdk), env)
    assert direct.returncode == 0, direct.stderr.decode()
    sub = daemon.subscriber("--session", sdk)
    try:
        under = run(capture_command("run", "--session", sdk, "--", *client(sdk)), env)
        streamed, whole = REQUESTS[sdk]
        messages = sub.messages_until_final(streamed + whole, timeout=4 * TIMEOUT_UNIT)
    finally:
        sub.close()
    assert under.returncode == 0, under.stderr.decode()
    # Every SDK object the client built, byte for byte the same JSON.
    assert json.loads(under.stdout) == json.loads(direct.stdout)
    finals = sorted((m for m in messages if m["complete"] and not m["streaming"]),
                    key=stream_number)
    assert len(finals) == streamed + whole
    firsts = {m["stream"]: m for m in reversed(messages)}
    for final, received in zip(finals, upstream.received[len(upstream.received) // 2:],
                               strict=True):
        format, (data, _), _ = ANSWERS[received.path]
        assert firsts[final["stream"]]["request"]["model"] == json.loads(received.body)["model"]
        if json.loads(received.body).get("stream"):
            assert comparable(final) == comparable(converted_final(data, format))
        else:
            assert not final.get("aborted") and final["blocks"], final
    # The key went where the SDK sent it, and nowhere else.
    assert all(SECRET in (r.headers.get("Authorization", "") + r.headers.get("X-Api-Key", ""))
               for r in upstream.received)
    assert SECRET.encode() not in under.stderr
    assert SECRET.encode() not in b"\n".join(sub.lines)


def test_openai_cli_under_warpd_run(
    daemon: Daemon, upstream: FakeUpstream, short_tmp: Path
) -> None:
    cli = shutil.which("openai", path=os.path.dirname(sys.executable))
    if cli is None:
        import openai

        pytest.skip(f"the installed openai package ({openai.__version__}) has no `openai` CLI")
    env = client_env(short_tmp, upstream, daemon)
    args = [cli, "api", "chat.completions.create", "-m", "gpt-4o", "-g", "user", "Hi"]
    direct = run(args, env)
    under = run(capture_command("run", "--", *args), env)
    assert under.returncode == direct.returncode == 0
    assert under.stdout == direct.stdout


def test_without_a_daemon_the_command_succeeds_and_is_warned_once(
    upstream: FakeUpstream, short_tmp: Path
) -> None:
    env = client_env(short_tmp, upstream, None)
    direct = run(client("anthropic"), env)
    under = run(capture_command("run", "--", *client("anthropic")), env)
    assert under.returncode == 0, under.stderr.decode()
    assert json.loads(under.stdout) == json.loads(direct.stdout)
    stderr = under.stderr.decode()
    assert stderr.count("no warpd daemon at") == 1, stderr
    assert "Traceback" not in stderr


def test_the_command_gets_the_proxy_in_each_providers_own_form(short_tmp: Path) -> None:
    env = proxy_env(short_tmp, None)
    env["NO_PROXY"] = "internal.example"
    show = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
            "('OPENAI_BASE_URL', 'ANTHROPIC_BASE_URL', 'OLLAMA_HOST', 'NO_PROXY', 'no_proxy')}))")
    result = run(capture_command("run", "-q", "--", sys.executable, "-c", show), env)
    assert result.returncode == 0, result.stderr.decode()
    seen = json.loads(result.stdout)
    proxy = seen["OLLAMA_HOST"]
    assert proxy.startswith("http://127.0.0.1:") and proxy.rsplit(":", 1)[1].isdigit()
    assert seen["OPENAI_BASE_URL"] == f"{proxy}/openai/v1"
    assert seen["ANTHROPIC_BASE_URL"] == f"{proxy}/anthropic"
    assert seen["NO_PROXY"] == "internal.example,127.0.0.1,localhost"
    assert seen["no_proxy"] == "127.0.0.1,localhost"
    assert result.stderr == b""


def test_an_ollama_client_reaches_the_ollama_upstream_from_ollama_host(
    daemon: Daemon, upstream: FakeUpstream, short_tmp: Path
) -> None:
    generate = b'{"model":"llama3","response":"Hi","done":false}\n' \
               b'{"model":"llama3","response":" there","done":true,"done_reason":"stop"}\n'
    upstream.choose = lambda path, body: provider_answer(generate, ".ndjson")
    env = proxy_env(short_tmp, daemon.address)
    env["OLLAMA_HOST"] = upstream.url.removeprefix("http://")  # host:port, as Ollama takes it
    request = (
        "import http.client, os, sys; host = os.environ['OLLAMA_HOST'].removeprefix('http://');"
        "c = http.client.HTTPConnection(host); c.request('POST', '/api/generate', "
        "body='{\"model\": \"llama3\", \"prompt\": \"Say hi\"}'); "
        "sys.stdout.buffer.write(c.getresponse().read())"
    )
    sub = daemon.subscriber("--session", "ollama")
    try:
        result = run(capture_command("run", "--session", "ollama", "--", sys.executable, "-c",
                                     request), env)
        messages = sub.messages_until_final()
    finally:
        sub.close()
    assert result.returncode == 0 and result.stdout == generate
    assert upstream.received[0].path == "/api/generate"
    assert messages[0]["request"] == {"model": "llama3", "prompt": "Say hi"}
    assert messages[-1]["blocks"][0]["text"] == "Hi there"


@pytest.mark.parametrize(
    ("code", "status"),
    [("sys.exit(7)", 7), ("os.kill(os.getpid(), signal.SIGKILL)", 128 + signal.SIGKILL)],
    ids=["exit-7", "killed"],
)
def test_the_commands_exit_status_is_kept(short_tmp: Path, code: str, status: int) -> None:
    program = f"import os, signal, sys; {code}"
    result = run(capture_command("run", "-q", "--", sys.executable, "-c", program),
                 proxy_env(short_tmp, None))
    assert result.returncode == status, result.stderr.decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_are_passed_on_to_the_command(short_tmp: Path, signum: int) -> None:
    program = (
        "import signal, sys, time\n"
        f"signal.signal({int(signum)}, lambda *a: sys.exit(40 + {int(signum)}))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    process = subprocess.Popen(
        capture_command("run", "-q", "--", sys.executable, "-c", program),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=proxy_env(short_tmp, None),
        start_new_session=True,  # no terminal: the signal comes from kill, not Ctrl-C
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signum)
        assert process.wait(timeout=4 * TIMEOUT_UNIT) == 40 + signum
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_a_command_not_found_is_127_and_one_line(short_tmp: Path) -> None:
    result = run(capture_command("run", "-q", "--", "no-such-command-warpd"),
                 proxy_env(short_tmp, None))
    assert result.returncode == 127
    assert result.stderr == b"warpd run: no-such-command-warpd: command not found\n"


def test_no_command_and_bad_options_are_one_line_errors(short_tmp: Path) -> None:
    env = proxy_env(short_tmp, None)
    # Usage errors: the command's usage, then the reason; status 2.
    for args, message in [
        ([], b"warpd run: error: give the command to run after --"),
        (["--upstream", "mistral=http://x", "--", "true"],
         b"warpd run: error: argument --upstream: 'mistral=http://x': unknown provider 'mistral'"),
    ]:
        result = run(capture_command("run", *args), env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1].startswith(message), result.stderr
    result = run(capture_command("run", "--session", "bad name", "--", "true"), env)
    assert result.returncode == 1
    assert result.stderr.startswith(b"warpd run: --session: invalid session name")
    bad = {**env, "OPENAI_BASE_URL": "ftp://example"}
    result = run(capture_command("run", "--", "true"), bad)
    assert result.returncode == 1
    assert result.stderr == b"warpd run: OPENAI_BASE_URL=ftp://example: expected an http:// " \
                            b"or https:// URL\n"


def test_the_session_is_the_commands_name_by_default(
    daemon: Daemon, upstream: FakeUpstream, short_tmp: Path
) -> None:
    agent = short_tmp / "my-agent"
    agent.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv[1:] = ['anthropic']\n"
                     "runpy.run_module('tests.capture_clients', run_name='__main__')\n")
    agent.chmod(0o755)
    sub = daemon.subscriber("--session", "*")
    try:
        result = run(capture_command("run", "--", str(agent)),
                     client_env(short_tmp, upstream, daemon))
        final = sub.messages_until_final()[-1]
    finally:
        sub.close()
    assert result.returncode == 0, result.stderr.decode()
    assert b"capturing to session 'my-agent'" in result.stderr
    assert final["session"] == "my-agent"
