"""The renderer's header shows what a captured stream asked for (the ``request`` field)."""

from __future__ import annotations

import pytest

from tests.test_render import WIDTHS, check_output, clock, render, text_stream
from warpd.blocks import BlockAssembler
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
