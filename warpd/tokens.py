"""The TCP bearer token's file, which the daemon writes and local clients read.

Both sides need it, so it lives below both (the daemon's handshake checks are
in :mod:`warpd.daemon.auth`). The file holds one line, is 0600 and ours:
:func:`load_or_create_token` creates it atomically, :func:`read_token` refuses
anything else.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from warpd.errors import ConfigError

__all__ = [
    "MIN_TOKEN_CHARS",
    "TOKEN_BYTES",
    "check_private",
    "generate_token",
    "load_or_create_token",
    "read_token",
    "validate_token",
]

# 32 random bytes = 256 bits, written as 43 URL-safe base64 characters.
TOKEN_BYTES = 32
# 22 base64 characters carry 132 bits: the shortest token we accept from a user.
MIN_TOKEN_CHARS = 22
# A token file is one short line; anything bigger is not ours.
_MAX_TOKEN_FILE = 4096


def check_private(
    path: Path, info: os.stat_result, *, kind: str, expect: Callable[[int], bool], fix: str
) -> None:
    """Raise ConfigError unless ``info`` is a ``kind`` owned by us with no group/other bits."""
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"{path} is a symbolic link; warpd needs a real {kind} there")
    if not expect(info.st_mode):
        raise ConfigError(f"{path} is not a {kind}")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise ConfigError(
            f"{path} is owned by uid {info.st_uid}, not by you (uid {uid}); "
            f"refusing to use a {kind} someone else controls"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} has mode {mode:04o}; it must be private to you ({fix} {path})")


def generate_token() -> str:
    """A new random token: 256 bits from ``secrets``, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def validate_token(token: str, *, where: str) -> str:
    """Return ``token`` if it is usable in a header and long enough; ConfigError otherwise.

    ``where`` names its origin for the message (e.g. ``"config.toml [tcp] token"``).
    """
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(f"{where}: the token must be printable ASCII without spaces")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{where}: the token is {len(token)} characters; at least {MIN_TOKEN_CHARS} "
            "(128 bits) are required, e.g. from "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def read_token(path: Path) -> str:
    """Read the token from ``path``, which must be a regular 0600 file of ours.

    Raises :class:`ConfigError` when it is missing, someone else's, readable by
    others, or not a valid token.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"no token file at {path}: is warpd serving on TCP on this machine?"
        ) from None
    except OSError as exc:
        if os.path.islink(path):
            raise ConfigError(f"{path} is a symbolic link; warpd needs a real file there") from None
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    try:
        check_private(path, os.fstat(fd), kind="file", expect=stat.S_ISREG, fix="chmod 600")
        data = os.read(fd, _MAX_TOKEN_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_TOKEN_FILE:
        raise ConfigError(f"{path} is too large to be a warpd token file")
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} does not contain a warpd token (not ASCII)") from None
    return validate_token(token, where=str(path))


def load_or_create_token(path: Path) -> str:
    """The daemon's token: read from ``path``, or generated and written there (0600).

    The file appears atomically, complete, and is never replaced: when two
    daemons race, both end up with the same token. The directory must exist
    (:func:`prepare_socket_dir` it first when it is the runtime directory).
    """
    try:
        return read_token(path)
    except ConfigError:
        if os.path.lexists(path):
            raise
    token = generate_token()
    try:
        # mkstemp creates the file 0600; linking it into place fails if a
        # file appeared meanwhile, so a reader never sees a half-written token.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".token-")
    except OSError as exc:
        raise ConfigError(f"cannot write the token file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            return read_token(path)
    finally:
        os.unlink(temporary)
    return token
