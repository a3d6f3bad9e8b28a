"""Terminal notifications and window titles for a subscriber (pure: messages in, bytes out).

When a stream completes or fails, :class:`Notifier` returns the escape
sequence that makes the terminal post a desktop notification, in the form
the terminal understands (as Warp's own agent integrations do):

======================  ==========================================  =========
terminal                sequence                                    protocol
======================  ==========================================  =========
Warp                    ``OSC 777 ; notify ; TITLE ; BODY BEL``     ``osc777``
iTerm2, WezTerm,        ``OSC 9 ; TITLE: BODY BEL``                 ``osc9``
Ghostty
kitty, foot             ``OSC 99 ; i=ID:d=0:e=1 ; base64(TITLE) ST``  ``osc99``
                        then ``p=body`` the same way, ``d=1``
======================  ==========================================  =========

Inside tmux (``$TMUX`` set) the sequence is wrapped for passthrough
(``ESC P tmux; …ESC\\``, every ESC inside doubled), which tmux forwards to
the terminal it runs in when ``allow-passthrough`` is on (tmux ≥ 3.3).

The title is the session and the outcome; the body a short summary of the
answer (or the error). Both come from an LLM or a producer: they are
neutralised, stripped of ``;`` (which would end the field early) and bounded
in length before they are put in a sequence. Only streams seen live are
notified about: replayed history (``--replay``) is not news.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

from warpd.protocol import HelloMessage, StreamMessage
from warpd.render.outcome import outcome
from warpd.render.untrusted import neutralise

PROTOCOLS = ("osc777", "osc9", "osc99")
TITLE_LIMIT = 60
BODY_LIMIT = 160
# Live streams remembered at most (those that never end are forgotten first).
_LIVE_MEMORY = 1024
_MARKUP = re.compile(r"(^|\s)(#{1,6}|>|[-*+]|\d+[.)])\s+|[*_`~]+")


def notification_protocol(env: Mapping[str, str]) -> str | None:
    """Which notification sequence the terminal in ``env`` (the environment) understands.

    ``TERM_PROGRAM`` names the terminal; inside tmux it says ``tmux``, so the
    variables terminals set for their shells (and which tmux panes inherit)
    are looked at too. ``None``: no known way.
    """
    program = env.get("TERM_PROGRAM", "")
    term = env.get("TERM", "")
    if program == "WarpTerminal":
        return "osc777"
    if program in ("iTerm.app", "WezTerm", "ghostty"):
        return "osc9"
    if term == "xterm-kitty" or term.startswith("foot"):
        return "osc99"
    # Hints that survive in a tmux pane started from the terminal.
    if env.get("WARP_IS_LOCAL_SHELL_SESSION") or env.get("WARP_SESSION_ID"):
        return "osc777"
    if env.get("KITTY_WINDOW_ID"):
        return "osc99"
    if (
        env.get("ITERM_SESSION_ID")
        or env.get("LC_TERMINAL") == "iTerm2"
        or env.get("WEZTERM_PANE")
        or env.get("GHOSTTY_RESOURCES_DIR")
    ):
        return "osc9"
    return None


def field(text: str, limit: int) -> str:
    """``text`` made safe for a sequence's field: one line, no controls, no ``;``, bounded."""
    text = " ".join(neutralise(text.replace("\n", " ").replace("\t", " ")).split())
    text = text.replace(";", ",")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def tmux_passthrough(sequence: str) -> str:
    """``sequence`` wrapped so tmux passes it to the outer terminal."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def notification(
    protocol: str, title: str, body: str, *, tmux: bool = False, ident: int = 1
) -> str:
    """The sequence posting a notification (``title``, ``body`` are made safe here)."""
    title, body = field(title, TITLE_LIMIT), field(body, BODY_LIMIT)
    if protocol == "osc777":
        sequence = f"\x1b]777;notify;{title};{body}\x07"
    elif protocol == "osc9":
        sequence = f"\x1b]9;{title}: {body}\x07" if body else f"\x1b]9;{title}\x07"
    elif protocol == "osc99":

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode("ascii")

        sequence = f"\x1b]99;i={ident}:d=0:e=1;{b64(title)}\x1b\\"
        sequence += f"\x1b]99;i={ident}:d=1:e=1:p=body;{b64(body)}\x1b\\"
    else:
        raise ValueError(f"unknown notification protocol {protocol!r}")
    return tmux_passthrough(sequence) if tmux else sequence


def window_title(sessions: Iterable[str], *, live: bool) -> str:
    """``warpd · SESSION`` and, while a stream is live, ``· streaming``."""
    names = ", ".join(field(name, 24) for name in sessions) or "warpd"
    return f"warpd · {names}" + (" · streaming" if live else "")


def title_sequence(title: str) -> str:
    """OSC 2: set the window (tmux: pane) title to ``title`` (made safe here)."""
    return f"\x1b]2;{field(title, TITLE_LIMIT + 30)}\x1b\\"


# xterm's title stack: keep the title there was, and put it back at the end.
SAVE_TITLE = "\x1b[22;2t"
RESTORE_TITLE = "\x1b[23;2t"


def summary(final: StreamMessage) -> str:
    """A short line about a complete stream: its answer's start, its tool calls, or its error."""
    errors = [b.error.message for b in final.blocks if b.error is not None and b.error.message]
    if errors:
        return errors[0]
    if final.aborted:
        return final.abort_reason or ""
    text = "".join(b.text or "" for b in final.blocks if b.type == "text")[: BODY_LIMIT * 4]
    text = _MARKUP.sub(r"\1", text)
    if text.strip():
        return text
    tools = [b.tool.function.name for b in final.blocks if b.tool is not None]
    if tools:
        return "tool calls: " + ", ".join(tools)
    return ""


class Notifier:
    """Notifications for the streams a subscriber sees end (see the module docstring).

    :meth:`feed` every message received; it returns the sequence to write to
    the terminal (``""`` when there is nothing to say).
    """

    def __init__(self, protocol: str, *, tmux: bool = False) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown notification protocol {protocol!r}")
        self._protocol = protocol
        self._tmux = tmux
        self._live: dict[str, None] = {}
        self._sent = 0

    def feed(self, message: object) -> str:
        """The notification this message calls for, if it ends a stream seen live."""
        if isinstance(message, HelloMessage):
            # After a reconnection, streams are numbered (or known) afresh.
            self._live.clear()
            return ""
        if not isinstance(message, StreamMessage):
            return ""
        if message.streaming or not message.complete:
            self._live[message.stream] = None
            if len(self._live) > _LIVE_MEMORY:
                del self._live[next(iter(self._live))]
            return ""
        if message.stream not in self._live:
            return ""  # History, or a stream we never saw live.
        del self._live[message.stream]
        self._sent += 1
        title = f"{message.session}: {outcome(message)}"
        return notification(
            self._protocol, title, summary(message), tmux=self._tmux, ident=self._sent
        )
