"""``warpd service install|uninstall``: the systemd user units for this warpd.

The unit texts are the templates shipped in ``warpd/units/`` (the repository's
``systemd/`` holds identical copies, checked by a test). Installing rewrites
the ``/usr/bin/warpd`` of their Exec lines to the warpd being run — the console
script beside ``sys.executable``, so a virtualenv or pipx install works without
activating anything — and writes them to ``$XDG_CONFIG_HOME/systemd/user``.
Neither command talks to systemd: they print the systemctl commands to run.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from warpd.errors import ConfigError

__all__ = [
    "UNIT_NAMES",
    "add_arguments",
    "install_units",
    "render_units",
    "run_service_command",
    "systemd_quote",
    "uninstall_units",
    "unit_template",
    "user_manager_running",
    "user_unit_dir",
    "warpd_command",
]

UNIT_NAMES = ("warpd.socket", "warpd.service")
# The executable the templates name; installing replaces it in Exec*= lines.
TEMPLATE_EXECUTABLE = "/usr/bin/warpd"


def unit_template(name: str) -> str:
    """The shipped text of unit ``name`` (one of :data:`UNIT_NAMES`)."""
    return resources.files("warpd").joinpath("units", name).read_text(encoding="utf-8")


def user_unit_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where systemd looks for a user's own units: ``$XDG_CONFIG_HOME/systemd/user``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def warpd_command() -> list[str]:
    """The command that starts this very warpd, for ExecStart=.

    ``sys.executable`` is deliberately not resolved: in a virtualenv it is a
    symlink to the base interpreter, which would lose the venv's packages.
    """
    python = Path(os.path.abspath(sys.executable))
    script = python.parent / "warpd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "warpd"]


def user_manager_running(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this user's systemd manager runs here: ``systemctl --user`` needs it.

    Told by its private socket, ``$XDG_RUNTIME_DIR/systemd/private``, which
    ``systemctl --user`` connects to; a container, or a login without
    ``pam_systemd``, has none.
    """
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR")
    if not runtime:
        return False
    try:
        return stat.S_ISSOCK(os.stat(Path(runtime) / "systemd" / "private").st_mode)
    except OSError:
        return False


NO_USER_MANAGER = """\
Note: no systemd user manager is running for you here (no
$XDG_RUNTIME_DIR/systemd/private), so the systemctl --user commands above will
fail. Either start one that outlives your logins, then log in again:
  loginctl enable-linger $USER
or do without systemd: run `warpd serve` (in a terminal, or tmux)."""


def systemd_quote(argument: str) -> str:
    """Quote one argument for an Exec*= line (specifiers, variables, spaces, quotes)."""
    if "\n" in argument:
        raise ConfigError(f"cannot put {argument!r} in a unit file: it contains a newline")
    # "%" starts a specifier and "$" a variable in Exec lines; doubling makes them literal.
    argument = argument.replace("%", "%%").replace("$", "$$")
    if argument and not any(char in argument for char in " \t\"'\\;"):
        return argument
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_units(command: Sequence[str] | None = None) -> dict[str, str]:
    """Unit name -> text, with Exec lines running ``command`` (:func:`warpd_command`)."""
    prefix = " ".join(systemd_quote(part) for part in (command or warpd_command()))
    units = {}
    for name in UNIT_NAMES:
        lines = []
        for line in unit_template(name).splitlines(keepends=True):
            key, equals, value = line.partition("=")
            if equals and key.startswith("Exec") and value.startswith(TEMPLATE_EXECUTABLE + " "):
                line = f"{key}={prefix}{value[len(TEMPLATE_EXECUTABLE) :]}"
            lines.append(line)
        units[name] = "".join(lines)
    return units


def install_units(directory: Path, units: Mapping[str, str]) -> list[Path]:
    """Write ``units`` into ``directory`` (created if needed); the paths written.

    Existing files are replaced, so installing again after moving warpd updates
    ExecStart. Each file is written beside its target then renamed over it.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in units.items():
            path = directory / name
            temporary = directory / f".{name}.tmp"
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
            written.append(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the units to {directory}: {exc.strerror}") from None
    return written


def uninstall_units(directory: Path) -> list[Path]:
    """Remove the units and their enablement links from ``directory``; the paths removed.

    The links are what ``systemctl --user enable`` made in ``*.wants/``
    directories; removing them is what ``disable`` would do.
    """
    removed = []
    try:
        for name in UNIT_NAMES:
            for link in sorted(directory.glob(f"*.wants/{name}")) + sorted(
                directory.glob(f"*.requires/{name}")
            ):
                if link.is_symlink():
                    link.unlink()
                    removed.append(link)
            path = directory / name
            if path.exists() or path.is_symlink():
                path.unlink()
                removed.append(path)
    except OSError as exc:
        raise ConfigError(f"cannot remove the units from {directory}: {exc.strerror}") from None
    return removed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``install|uninstall`` actions of ``warpd service`` and their options."""
    parser.description = (
        "Write (or remove) warpd.socket and warpd.service for systemd's user manager."
    )
    parser.set_defaults(run=run_service_command)
    actions = parser.add_subparsers(dest="service_action", required=True, metavar="ACTION")
    for action, text in (
        ("install", "write the units, with ExecStart= pointing at this warpd"),
        ("uninstall", "remove the units and their enablement links"),
    ):
        sub = actions.add_parser(action, help=text, description=text)
        sub.set_defaults(parser=sub)  # a typo is answered with this usage
        sub.add_argument(
            "--user",
            action="store_true",
            help="for the user's own systemd manager (the default and only mode)",
        )
        sub.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="unit directory (default: $XDG_CONFIG_HOME/systemd/user)",
        )


def run_service_command(args: argparse.Namespace) -> int:
    """Run ``warpd service ACTION`` from parsed arguments; returns the exit status."""
    directory: Path = args.dir or user_unit_dir()
    if args.service_action == "install":
        for path in install_units(directory, render_units()):
            print(f"wrote {path}")
        print(
            "\nNow run:\n"
            "  systemctl --user daemon-reload\n"
            "  systemctl --user enable --now warpd.socket\n"
            "(after an upgrade: systemctl --user restart warpd.service)"
        )
        if not user_manager_running():
            print("\n" + NO_USER_MANAGER)
        return 0
    removed = uninstall_units(directory)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print(f"no warpd units in {directory}; nothing removed")
        return 0
    print(
        "\nNow run:\n"
        "  systemctl --user stop warpd.socket warpd.service\n"
        "  systemctl --user daemon-reload"
    )
    return 0
