"""warpd: LLM delta streams in, live terminal blocks out.

A local daemon (``warpd serve``) assembles provider streams pushed to it into
blocks and fans them out to every subscribed terminal. See README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from warpd.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    # The clients pull in websockets; import them only when asked for.
    if name in ("Client", "AsyncClient"):
        from warpd import client

        return getattr(client, name)
    raise AttributeError(f"module 'warpd' has no attribute {name!r}")
