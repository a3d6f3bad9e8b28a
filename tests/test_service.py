"""``warpd service install|uninstall`` and the unit templates it writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TIMEOUT_UNIT
from warpd.cli.main import main
from warpd.cli.service import (
    UNIT_NAMES,
    install_units,
    render_units,
    systemd_quote,
    uninstall_units,
    unit_template,
    user_unit_dir,
    warpd_command,
)


def exec_lines(text: str) -> dict[str, str]:
    return {
        key: value
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if key.startswith("Exec")
    }


def test_repository_units_are_the_shipped_templates() -> None:
    # One source of truth: systemd/ is a copy of warpd/units/ (cp warpd/units/* systemd/).
    for name in UNIT_NAMES:
        assert (ROOT / "systemd" / name).read_text() == unit_template(name), name


def test_socket_unit_is_private_and_enabled_by_sockets_target() -> None:
    text = unit_template("warpd.socket")
    for line in (
        "ListenStream=%t/warpd/warpd.sock",
        "SocketMode=0600",
        "DirectoryMode=0700",
        "WantedBy=sockets.target",
    ):
        assert line in text.splitlines()


def test_render_points_exec_lines_at_the_given_warpd() -> None:
    units = render_units(["/home/me/my venv/bin/warpd"])
    service = exec_lines(units["warpd.service"])
    assert service["ExecStart"] == '"/home/me/my venv/bin/warpd" serve'
    # ExecReload signals the main process; it does not name warpd.
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert units["warpd.socket"] == unit_template("warpd.socket")


def test_render_with_python_module_fallback() -> None:
    units = render_units(["/opt/py/bin/python3", "-m", "warpd"])
    assert exec_lines(units["warpd.service"])["ExecStart"] == "/opt/py/bin/python3 -m warpd serve"


@pytest.mark.parametrize(
    ("argument", "quoted"),
    [
        ("/usr/bin/warpd", "/usr/bin/warpd"),
        ("/home/a b/warpd", '"/home/a b/warpd"'),
        ("/opt/100%/warpd", "/opt/100%%/warpd"),
        ("/opt/$HOME/warpd", "/opt/$$HOME/warpd"),
        ('/opt/"q"\\/warpd', '"/opt/\\"q\\"\\\\/warpd"'),
    ],
)
def test_systemd_quote(argument: str, quoted: str) -> None:
    assert systemd_quote(argument) == quoted


def test_systemd_quote_refuses_newlines() -> None:
    from warpd.errors import ConfigError

    with pytest.raises(ConfigError, match="newline"):
        systemd_quote("/a\nb")


def test_warpd_command_keeps_the_virtualenv_path() -> None:
    command = warpd_command()
    # Never resolved: a venv's python is a symlink to the base interpreter.
    bindir = Path(os.path.abspath(sys.executable)).parent
    assert Path(command[0]).parent == bindir
    if command[0].endswith("warpd"):
        assert command == [str(bindir / "warpd")]
    else:
        assert command == [os.path.abspath(sys.executable), "-m", "warpd"]


def test_user_unit_dir_follows_xdg_config_home() -> None:
    assert user_unit_dir({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/systemd/user")
    assert user_unit_dir({}) == Path.home() / ".config" / "systemd" / "user"


def test_install_then_uninstall(tmp_path: Path) -> None:
    directory = tmp_path / "systemd" / "user"
    units = render_units(["/x/warpd"])
    written = install_units(directory, units)
    assert sorted(p.name for p in written) == sorted(UNIT_NAMES)
    for path in written:
        assert path.read_text() == units[path.name]
    # Installing again (after moving warpd) replaces the files.
    install_units(directory, render_units(["/y/warpd"]))
    assert "ExecStart=/y/warpd serve" in (directory / "warpd.service").read_text()
    # What `systemctl --user enable warpd.socket` creates.
    wants = directory / "sockets.target.wants"
    wants.mkdir()
    (wants / "warpd.socket").symlink_to(directory / "warpd.socket")
    (wants / "other.socket").symlink_to(directory / "warpd.socket")
    removed = uninstall_units(directory)
    assert sorted(removed) == sorted([wants / "warpd.socket", *written])
    assert sorted(p.name for p in directory.rglob("*")) == ["other.socket", "sockets.target.wants"]
    assert uninstall_units(directory) == []


def run(argv: list[str]) -> int:
    return main(argv)


def test_service_commands_print_what_they_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["service", "install", "--user", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'warpd.service'}" in out
    assert "systemctl --user daemon-reload" in out
    assert "systemctl --user enable --now warpd.socket" in out
    command = " ".join(systemd_quote(part) for part in warpd_command())
    assert f"ExecStart={command} serve" in (tmp_path / "warpd.service").read_text()

    assert run(["service", "uninstall", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"removed {tmp_path / 'warpd.socket'}" in out
    assert not (tmp_path / "warpd.socket").exists()
    assert run(["service", "uninstall", "--dir", str(tmp_path)]) == 0
    assert "nothing removed" in capsys.readouterr().out


def test_warpd_service_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(ROOT)}

    def warpd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "warpd", "service", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=4 * TIMEOUT_UNIT,
        )

    installed = warpd("install", "--user")
    assert installed.returncode == 0, installed.stderr
    unit_dir = tmp_path / "config" / "systemd" / "user"
    assert f"wrote {unit_dir / 'warpd.service'}" in installed.stdout
    assert "systemctl --user enable --now warpd.socket" in installed.stdout
    exec_start = exec_lines((unit_dir / "warpd.service").read_text())["ExecStart"]
    # The unit runs the warpd that wrote it (the console script or python -m warpd).
    assert exec_start.startswith(os.path.dirname(os.path.abspath(sys.executable)))
    assert exec_start.endswith(" serve")
    removed = warpd("uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not any(unit_dir.iterdir())
    missing = warpd("frobnicate")
    assert missing.returncode == 2 and "invalid choice" in missing.stderr
