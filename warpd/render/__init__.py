"""The terminal renderer: block messages in, terminal bytes out (no I/O).

:class:`TerminalRenderer` is the entry point; the modules below it are its
parts: ``untrusted`` (neutralising LLM text), ``style`` (escape sequences),
``wrap`` (display cells, word wrap), ``markdown`` (light markdown, tables)
and ``views`` (what is shown of each stream and block).
"""

from warpd.render.renderer import SYNC_BEGIN, SYNC_END, TerminalRenderer

__all__ = ["SYNC_BEGIN", "SYNC_END", "TerminalRenderer"]
