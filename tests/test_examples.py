"""The example streams warpd ships (warpd/examples/): each decodes to the blocks it shows.

They are what `warpd demo` pushes and what the README's tour relies on when
../shared is absent, so each is checked through a real `warpd convert`.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from fnmatch import fnmatch
from typing import Any

import pytest

from tests.daemon import ROOT, TIMEOUT_UNIT, warpd_command
from warpd.examples import EXAMPLES, read_example

EXAMPLES_DIR = ROOT / "warpd" / "examples"


def convert(name: str, *args: str) -> list[dict[str, Any]]:
    """The block messages of `warpd convert` of example ``name``, decoded."""
    result = subprocess.run(
        warpd_command("convert", str(EXAMPLES_DIR / name), *args),
        capture_output=True, timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def final(messages: list[dict[str, Any]]) -> dict[str, Any]:
    last = messages[-1]
    assert last["complete"] and not last["streaming"] and not last.get("aborted"), last
    assert all(b["complete"] for b in last["blocks"])
    # One stream per example.
    assert {m["stream"] for m in messages} == {"default/1"}
    return last


def test_openai_chat_example_is_two_parallel_tool_calls() -> None:
    messages = convert("openai_chat_parallel_tools.sse")
    last = final(messages)
    assert last["model"] == "gpt-4o-mini-2024-07-18"
    assert last["finish_reason"] == "tool_calls"
    assert last["usage"]["total_tokens"] == 170
    calls = [b["tool"] for b in last["blocks"]]
    assert [b["type"] for b in last["blocks"]] == ["tool_call", "tool_call"]
    assert [c["function"]["name"] for c in calls] == ["get_forecast", "get_forecast"]
    assert [json.loads(c["function"]["arguments"])["city"] for c in calls] == ["Lyon", "Annecy"]
    assert calls[0]["id"] != calls[1]["id"]
    # The arguments streamed in fragments, interleaved by call, as OpenAI sends them.
    fragments = [b for m in messages[:-1] for b in m["blocks"] if b["type"] == "tool_call"]
    assert len(fragments) > 10


def test_anthropic_example_is_thinking_then_text_then_a_tool() -> None:
    messages = convert("anthropic_thinking_tool.sse")
    last = final(messages)
    assert last["model"].startswith("claude-")
    assert last["finish_reason"] == "tool_use"
    reasoning, text, tool = last["blocks"]
    assert reasoning["type"] == "reasoning" and reasoning["text"].startswith("The user wants")
    assert reasoning["data"]["signature"]
    assert text["type"] == "text" and text["text"].endswith("to Annecy.")
    assert tool["type"] == "tool_call" and tool["tool"]["function"]["name"] == "search_trains"
    assert json.loads(tool["tool"]["function"]["arguments"])["arrive_by"] == "12:00"
    assert last["usage"]["output_tokens"] == 97


def test_ollama_example_is_thinking_then_a_markdown_answer() -> None:
    last = final(convert("ollama_chat.ndjson"))
    assert last["model"] == "qwen3:4b" and last["finish_reason"] == "stop"
    reasoning, text = last["blocks"]
    assert reasoning["type"] == "reasoning" and "Rhône Glacier" in reasoning["text"]
    assert text["type"] == "text" and "**Rhône**" in text["text"]
    assert text["text"].count("\n") == 4
    assert last["usage"]["eval_count"] == 64


def test_plain_text_example_is_one_text_block() -> None:
    data = read_example("plain.txt").decode()
    for args in ((), ("--format", "text")):
        last = final(convert("plain.txt", *args))
        assert [b["type"] for b in last["blocks"]] == ["text"]
        assert last["blocks"][0]["text"] == data


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_is_detected_as_its_format(name: str) -> None:
    """--format auto and the format EXAMPLES names give the same blocks."""
    auto = final(convert(name))
    named = final(convert(name, "--format", EXAMPLES[name]))
    for message in (auto, named):
        message.pop("created")
    assert auto == named


def test_every_example_file_is_listed_and_shipped_in_the_package() -> None:
    files = sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.name != "__init__.py"
                   and p.is_file())
    assert files == sorted(EXAMPLES)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["warpd.examples"]
    assert all(any(fnmatch(name, p) for p in patterns) for name in files)
    for name in files:
        assert read_example(name) == (EXAMPLES_DIR / name).read_bytes()
