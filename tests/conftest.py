"""Shared test helpers: the recorded fixtures, and timeouts scaled for slow machines."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import ROOT, TIMEOUT_UNIT, Daemon
from tests.redis_server import REDIS_SERVER, RedisServer

__all__ = ["CASES_DIR", "FIXTURES_DIR", "ROOT", "TIMEOUT_UNIT", "case_file", "fixture_files"]

# The recorded provider streams live beside the project, never inside it.
FIXTURES_DIR = ROOT.parent / "shared" / "fixtures" / "streams"
# Inputs that failed when warpd was tried as a user would (../shared/cases/README.md).
CASES_DIR = ROOT.parent / "shared" / "cases"


def case_file(relative: str) -> Path:
    """``../shared/cases/RELATIVE``; the test is skipped when it is absent."""
    path = CASES_DIR / relative
    if not path.is_file():
        pytest.skip(f"{path} not found (the cases live in ../shared beside the project checkout)")
    return path


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


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (Unix socket paths are limited to ~107 bytes)."""
    workdir = Path(tempfile.mkdtemp(prefix="warpd-", dir="/tmp"))
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    """A real ``warpd serve`` on a temporary socket; stopped and checked after the test."""
    with Daemon(short_tmp) as started:
        yield started


@pytest.fixture
def redis_server(short_tmp: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, without persistence; stopped after."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (tools/install-test-deps installs it)")
    with RedisServer(short_tmp) as server:
        yield server
