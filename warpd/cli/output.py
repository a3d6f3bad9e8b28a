"""What ``warpd subscribe`` writes besides rendered blocks: the block messages as
JSON lines or SSE (safe to print on a terminal), the answers' raw text, and
terminal notifications."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from warpd.controls import escape_unsafe

__all__ = [
    "NotificationOutput",
    "jsonl_writer",
    "sse_writer",
    "terminal_safe_json",
    "text_writer",
]


def jsonl_writer(
    out: BinaryIO, *, received: Callable[[], float] | None = None
) -> Callable[[Any, bytes], None]:
    """``write(message, data)``: the message's JSON bytes ``data`` as one line.

    With ``received`` (a clock giving Unix time), each line also gets the
    field ``"received": SECONDS`` — when the message arrived, so that
    ``warpd play`` can replay a capture at its pace (docs/protocol.md,
    "Captures"). It is added here, not sent by the daemon: the wire message
    is the line without it.
    """

    def write(message: Any, data: bytes) -> None:
        line = terminal_safe_json(data)
        if received is not None and line.endswith(b"}"):
            line = line[:-1] + b',"received":%.6f}' % received()
        out.write(line + b"\n")
        out.flush()

    return write


def sse_writer(out: BinaryIO) -> Callable[[Any, bytes], None]:
    """``write(message, data)``: one SSE event (``id:`` its seq, ``event:`` its type)."""

    def write(message: Any, data: bytes) -> None:
        seq = getattr(message, "seq", None)
        kind = type(message).__struct_config__.tag
        head = f"id: {seq}\n" if isinstance(seq, int) and seq else ""
        out.write(f"{head}event: {kind}\ndata: ".encode() + terminal_safe_json(data) + b"\n\n")
        out.flush()

    return write


def _json_escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}"


def terminal_safe_json(data: bytes) -> bytes:
    """JSON bytes with every character a terminal could act on escaped as ``\\uXXXX``.

    JSON itself escapes only the C0 controls; DEL, the C1 controls, the bidi
    controls and the line and paragraph separators (:data:`warpd.controls.UNSAFE`)
    would reach the terminal raw. Escaped, the JSON value is the same.
    """
    # Every unsafe character a JSON encoder leaves raw is DEL or beyond ASCII.
    if data.isascii() and b"\x7f" not in data:
        return data
    text = data.decode("utf-8", "replace")
    safe = escape_unsafe(text, _json_escape)
    return data if safe is text else safe.encode()


def text_writer(out: BinaryIO, *, neutralised: bool) -> tuple[
    Callable[[Any, bytes], None], Callable[[], None]
]:
    """``write(message, data)`` and ``close()`` for ``--output text``: the answers' raw text.

    ``neutralised``: the output is a terminal, so control characters in the
    text are shown, not obeyed (see :mod:`warpd.render.answer`).
    """
    from warpd.render.answer import AnswerText

    answer = AnswerText(neutralised=neutralised)

    def emit(text: str) -> None:
        if text:
            out.write(text.encode("utf-8", "replace"))
            out.flush()

    def write(message: Any, data: bytes) -> None:
        emit(answer.feed(message))

    def close() -> None:
        emit(answer.close())

    return write, close


class NotificationOutput:
    """Posts a terminal notification when a stream completes or fails (``--notify``).

    The sequence goes to the first of stdout and stderr that is a terminal;
    ``emit`` (pretty output's, which writes between its updates) is used
    when that is stdout. The terminal is recognised from the environment
    (see :mod:`warpd.render.notify`); inside tmux the passthrough form is
    used. When there is no terminal or no known sequence, :attr:`problem`
    says why and nothing is sent.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        stdout: BinaryIO,
        stderr: BinaryIO,
        emit: Callable[[bytes], None] | None = None,
    ) -> None:
        from warpd.render.notify import Notifier, notification_protocol

        self.notifier: Notifier | None = None
        self.problem = ""
        self._emit: Callable[[bytes], None] | None = None
        protocol = notification_protocol(env)
        if stdout.isatty():
            self._emit = emit or _writer(stdout)
        elif stderr.isatty():
            self._emit = _writer(stderr)
        if protocol is None:
            program = env.get("TERM_PROGRAM") or env.get("TERM") or "unknown"
            self.problem = (
                f"--notify: no known notification sequence for this terminal ({program}); "
                "Warp, iTerm2, WezTerm, Ghostty, kitty and foot have one"
            )
        elif self._emit is None:
            self.problem = "--notify: neither stdout nor stderr is a terminal to notify on"
        else:
            self.notifier = Notifier(protocol, tmux=bool(env.get("TMUX")))

    def write(self, message: Any, data: bytes = b"") -> None:
        """Take one message; post the notification it calls for, if any."""
        if self.notifier is None or self._emit is None:
            return
        sequence = self.notifier.feed(message)
        if sequence:
            self._emit(sequence.encode())


def _writer(stream: BinaryIO) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return write
