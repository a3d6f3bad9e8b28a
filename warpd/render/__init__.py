"""The terminal renderer: block messages in, terminal bytes out (no I/O).

:class:`TerminalRenderer` is the entry point; the modules below it are its
parts: ``untrusted`` (neutralising LLM text), ``style`` (escape sequences),
``wrap`` (display cells, word wrap), ``markdown`` (block structure),
``inline`` (emphasis, code spans, links), ``tables``, ``code`` (Pygments
highlighting, line by line), ``views`` (what is shown of each block) and
``streams`` (of each stream: header, tail sections, status, footer).

Beside it, for the other outputs of ``warpd subscribe``: ``answer`` (the raw
text, ``--output text``) and ``notify`` (notifications, window titles).
These import none of the renderer, which is loaded on first use of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warpd.render.renderer import SYNC_BEGIN, SYNC_END, TerminalRenderer

__all__ = ["SYNC_BEGIN", "SYNC_END", "TerminalRenderer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from warpd.render import renderer

        return getattr(renderer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
