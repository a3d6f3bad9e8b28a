"""``systemd-analyze verify`` on the units as `warpd service install` writes them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_UNIT
from warpd.cli.service import install_units, render_units, warpd_command

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not found (Debian/Ubuntu: apt-get install systemd)",
)


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Iterator[Path]:
    # `verify --user` needs a runtime directory; root and CI containers have none.
    directory = tmp_path / "runtime"
    directory.mkdir(mode=0o700)
    yield directory


def verify(unit_dir: Path, runtime_dir: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "verify",
            "--user",
            "--man=no",
            str(unit_dir / "warpd.socket"),
            str(unit_dir / "warpd.service"),
        ],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "SYSTEMD_LOG_LEVEL": "notice"},
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT_UNIT,
    )


def test_installed_units_verify_cleanly(tmp_path: Path, runtime_dir: Path) -> None:
    # The ExecStart executable must exist for verify: the templates' /usr/bin/warpd
    # is replaced by this environment's warpd, exactly as `warpd service install` does.
    units = render_units(warpd_command())
    if not Path(warpd_command()[0]).exists():
        units = render_units([sys.executable, "-m", "warpd"])
    install_units(tmp_path / "units", units)
    result = verify(tmp_path / "units", runtime_dir)
    # verify exits 0 on some warnings ("Unknown key", "ignoring"): any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_catches_a_broken_unit(tmp_path: Path, runtime_dir: Path) -> None:
    # Shows the test above can fail: a misspelt option is reported.
    units = render_units([sys.executable, "-m", "warpd"])
    units["warpd.service"] = units["warpd.service"].replace("Restart=", "Restrat=")
    install_units(tmp_path / "units", units)
    result = verify(tmp_path / "units", runtime_dir)
    assert "Restrat" in result.stdout + result.stderr
