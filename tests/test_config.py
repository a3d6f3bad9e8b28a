"""config.toml: the documented defaults, and clear errors for mistakes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.daemon import warpd_command
from warpd.config import Config, load_config, parse_config
from warpd.errors import ConfigError


def test_the_repository_config_documents_exactly_the_defaults() -> None:
    assert load_config(ROOT / "config.toml") == Config()


def test_an_empty_file_is_the_defaults() -> None:
    assert parse_config("") == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[limits]\nmax_frame_byte = 5\n", r"unknown field `max_frame_byte` - at `\$.limits`"),
        ("[server]\nlisten = 'unix:/x'\n", r"Expected `array`, got `str` - at `\$.server.listen`"),
        ("[limits]\noutbox_bytes = 0\n", r"outbox_bytes must be positive, got 0 - at `\$.limits`"),
        ("[log]\nlevel = 'LOUD'\n", r"Invalid enum value 'LOUD' - at `\$.log.level`"),
        ("[limits\n", r"not valid TOML"),
        ("[sever]\n", r"unknown field `sever`"),
    ],
)
def test_mistakes_are_errors_naming_the_file_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^my\.toml: .*" + message):
        parse_config(text, "my.toml")


def test_serve_with_a_bad_config_says_so_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[limits]\nmax_frame_bytes = 'big'\n")
    result = subprocess.run(
        warpd_command("serve", "--config", str(bad), "--listen", str(tmp_path / "s.sock")),
        capture_output=True, timeout=30,
    )
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Expected `int`, got `str` - at `$.limits.max_frame_bytes`" in lines[0]
    assert str(bad) in lines[0]


def test_serve_with_a_missing_config_file_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        warpd_command("serve", "--config", str(tmp_path / "nope.toml")),
        capture_output=True, timeout=30,
    )
    assert result.returncode == 1
    assert b"cannot read config" in result.stderr and b"Traceback" not in result.stderr
