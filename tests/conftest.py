"""Shared test helpers: the recorded fixtures, and timeouts scaled for slow machines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The recorded provider streams live beside the project, never inside it.
FIXTURES_DIR = ROOT.parent / "shared" / "fixtures" / "streams"

# Every timeout in the tests is a multiple of this unit (WARPD_TEST_TIMEOUT_SCALE
# stretches it on slow CI machines).
TIMEOUT_UNIT = float(os.environ.get("WARPD_TEST_TIMEOUT_SCALE", "1")) * 5.0


def fixture_files(*patterns: str) -> list[Path]:
    """The recorded fixtures matching ``patterns``, or a skip param when the folder is absent.

    Use as ``@pytest.mark.parametrize("path", fixture_files("openai_chat_*.sse"))``.
    """
    if not FIXTURES_DIR.is_dir():
        return [
            pytest.param(
                None,
                marks=pytest.mark.skip(
                    reason=f"recorded fixtures not found at {FIXTURES_DIR} "
                    "(they live in ../shared beside the project checkout)"
                ),
                id="no-fixtures",
            )
        ]  # type: ignore[list-item]
    found = sorted({p for pattern in patterns for p in FIXTURES_DIR.glob(pattern)})
    assert found, f"no fixture matches {patterns} in {FIXTURES_DIR}"
    return found
