"""warpd: LLM delta streams in, live terminal blocks out.

A local daemon (``warpd serve``) assembles provider streams pushed to it into
blocks and fans them out to every subscribed terminal. See README.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
