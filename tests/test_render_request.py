"""The renderer's header shows what a captured stream asked for (the ``request`` field)."""

from __future__ import annotations

import pytest

from tests.test_render import WIDTHS, assemble, check_output, clock, render, text_stream
from warpd.blocks import BlockAssembler
from warpd.ingest.deltas import StreamEnd, UpstreamError
from warpd.protocol import StreamMessage, StreamRequest


def asked(prompt: str) -> list[StreamMessage]:
    """A stream opened with a request (as warpd run opens them), then its text."""
    opened = BlockAssembler("default", "default/1", clock=clock,
                            request=StreamRequest(model="gpt-4o", prompt=prompt)).announce()
    opened.seq = 0
    return [opened, *text_stream("Hello there.\n", seed=1)]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_prompt_is_under_the_streams_rule_cut_to_one_row(width: int) -> None:
    prompt = "Why is the sky blue? " * 10
    lines, chunks = render(asked(prompt.strip()), width)
    check_output(chunks)
    rule = next(i for i, line in enumerate(lines) if line.startswith("── default/1"))
    shown = lines[rule + 1].rstrip()
    assert shown.startswith("› Why is the sky blue?") and shown.endswith("…")
    assert len(shown) <= width
    assert any("Hello there." in line for line in lines[rule + 2 :])


def test_a_prompt_cannot_act_on_the_terminal() -> None:
    lines, chunks = render(asked("hi\x1b]0;pwned\x07\x1b[2J"), 80)
    check_output(chunks)
    assert any(line.startswith("› hi^[]0;pwned^G^[[2J") for line in lines)


def test_plain_output_shows_it_too() -> None:
    lines, _ = render(asked("Say hi"), 80, plain=True)
    assert "› Say hi" in lines


def test_an_answer_that_names_no_model_shows_the_requests() -> None:
    # A 401 through warpd run: the stream opens with the request, then the
    # provider's error, which names no model: the header still says what was asked.
    opened = BlockAssembler("default", "default/1", clock=clock,
                            request=StreamRequest(model="gpt-4o", prompt="Hi")).announce()
    opened.seq = 0
    failed = assemble([[UpstreamError("Incorrect API key provided", code="invalid_api_key")],
                       [StreamEnd(aborted=True, reason="provider error")]])
    lines, chunks = render([opened, *failed], 80)
    check_output(chunks)
    rule = next(line for line in lines if line.startswith("── default/1"))
    assert "· gpt-4o ·" in rule
    # The answer's own model, when it names one, is what the header shows.
    lines, _ = render(asked("Hi"), 80)
    rule = next(line for line in lines if line.startswith("── default/1"))
    assert "· test-model ·" in rule and "gpt-4o" not in rule
