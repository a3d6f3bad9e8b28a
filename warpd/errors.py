"""The exceptions warpd raises, split by who is at fault.

::

    WarpdError
     ├── ConfigError          config.toml or a command-line option is wrong
     ├── UserError            any other mistake on the command line (a file that can't be read)
     ├── InputError           a producer sent bytes we cannot decode (the peer's fault)
     │    └── FrameTooLarge   one event was over the configured size limit
     └── ClientError          raised by warpd.Client and the CLI's client side
          ├── DaemonUnavailable   nothing is listening at the address tried
          └── PushRejected        the daemon refused or failed a pushed stream

Every message is one line a user can act on: what was wrong and where.
Decoders raise :class:`InputError` only in strict mode (otherwise an
irregular event is skipped or repaired and recorded as a warning); after one
the stream it hit is over, and the decoder that raised it must not be fed
again.
"""

from __future__ import annotations


class WarpdError(Exception):
    """Base class of every error warpd raises on purpose."""


class ConfigError(WarpdError):
    """The configuration (file, environment or options) is invalid."""


class UserError(WarpdError):
    """A mistake on the command line, reported as one line."""


class InputError(WarpdError):
    """A producer's upstream event could not be decoded.

    ``frame`` is the 1-based number of the event within its push connection
    (or input, for ``warpd convert``); callers that know a line number for it
    add their own context when they report it. ``code`` names the kind of
    fault (``invalid-json``, ``schema-mismatch``, … : the decoders'
    irregularity codes).
    """

    def __init__(
        self, message: str, *, frame: int | None = None, code: str = "bad-input"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.frame = frame
        self.code = code

    def __str__(self) -> str:
        if self.frame is None:
            return self.message
        return f"frame {self.frame}: {self.message}"


class FrameTooLarge(InputError):
    """One upstream event was larger than the configured limit."""


class StoreError(WarpdError):
    """The history file (``[history] path``) cannot be opened, read or written."""


class ClientError(WarpdError):
    """A client-side failure: connecting, pushing or subscribing."""


class DaemonUnavailable(ClientError):
    """No warpd daemon answered at the address tried."""


class PushRejected(ClientError):
    """The daemon reported an error for a pushed stream.

    ``frame`` is the daemon's 1-based frame number when the error names one.
    """

    def __init__(self, message: str, *, frame: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.frame = frame
