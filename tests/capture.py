"""Helpers of the capture tests: a real ``warpd proxy`` process, raw HTTP exchanges."""

from __future__ import annotations

import http.client
import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from tests.daemon import TIMEOUT_UNIT, clean_env, warpd_command
from tests.fake_upstream import FakeUpstream
from warpd.blocks import is_final
from warpd.ingest.convert import convert
from warpd.protocol import encode

_EXPORT = re.compile(r"export OPENAI_BASE_URL=(http://\S+)/openai/v1")


def capture_command(*args: str) -> list[str]:
    """``warpd run|proxy ARGS`` as the user runs it."""
    return warpd_command(*args)


def upstream_options(upstream: FakeUpstream) -> list[str]:
    """--upstream options sending every provider to the fake upstream."""
    return [
        "--upstream", f"openai={upstream.url}/v1",
        "--upstream", f"anthropic={upstream.url}",
        "--upstream", f"ollama={upstream.url}",
    ]


class ProxyProcess:
    """``warpd proxy`` on a free loopback port, logging to ``home/proxy.log``."""

    @staticmethod
    def command(*args: str) -> list[str]:
        return capture_command("proxy", *args)

    def __init__(self, home: Path, *args: str, env: dict[str, str]) -> None:
        self.log_path = home / "proxy.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, stderr=self._log, env=env
        )
        self.url = self._read_url()

    def _read_url(self) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        out = b""
        deadline = time.monotonic() + 2 * TIMEOUT_UNIT
        while (found := _EXPORT.search(out.decode())) is None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                raise AssertionError(f"warpd proxy printed no export line: {out!r}\n{self.log()}")
            out += chunk
        self.exports = out.decode()
        return found.group(1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=4 * TIMEOUT_UNIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        status = self.stop()
        log = self.log()
        assert "Traceback" not in log, log
        assert status == 0, f"warpd proxy exited with {status}:\n{log}"


def proxy_env(home: Path, daemon_address: str | None) -> dict[str, str]:
    env = clean_env(home, NO_COLOR="1")
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OLLAMA_HOST", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    if daemon_address is not None:
        env["WARPD_ADDR"] = daemon_address
    else:
        env["WARPD_ADDR"] = f"unix:{home / 'no-daemon.sock'}"
    return env


@dataclass
class Exchange:
    """One HTTP exchange as the client saw it: status, headers, the raw body bytes."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def exchange(url: str, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> Exchange:
    """Send one request with http.client (no decompression, no redirects); read it whole."""
    match = re.match(r"http://([^:/]+):(\d+)(.*)", url)
    assert match is not None, url
    connection = http.client.HTTPConnection(match.group(1), int(match.group(2)),
                                            timeout=4 * TIMEOUT_UNIT)
    data = body if isinstance(body, bytes) or body is None else msgspec.json.encode(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        connection.request(method, match.group(3) + path, body=data, headers=all_headers)
        response = connection.getresponse()
        content = response.read()
        return Exchange(response.status, response.reason, response.getheaders(), content)
    finally:
        connection.close()


# Fields that differ between a captured stream and `warpd convert` by nature.
RUN_FIELDS = ("seq", "epoch", "created", "request", "session", "stream")


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """A final message without its run fields, block ids reduced to their index."""
    out = {k: v for k, v in message.items() if k not in RUN_FIELDS}
    out["blocks"] = [{k: v for k, v in b.items() if k != "id"} for b in message["blocks"]]
    return out


def converted_final(data: bytes, format: str = "auto") -> dict[str, Any]:
    """`warpd convert`'s final message for ``data``, as a dict."""
    last = [m for m in convert([data], format=format) if is_final(m)][-1]
    decoded: dict[str, Any] = msgspec.json.decode(encode(last))
    return decoded
