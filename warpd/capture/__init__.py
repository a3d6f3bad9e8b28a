"""The capture proxy behind ``warpd run`` and ``warpd proxy`` (see docs/capture.md).

- :mod:`~warpd.capture.routes`: the route table, upstreams, the tool's variables;
- :mod:`~warpd.capture.proxy`: the aiohttp server and client that forward;
- :mod:`~warpd.capture.tee`: each answer's copy, pushed into the session;
- :mod:`~warpd.capture.request_summary`: the model and prompt of a request;
- :mod:`~warpd.capture.encoding`: undoing Content-Encoding for the copy;
- :mod:`~warpd.capture.runner`: running a command behind the proxy, or the proxy alone.

Only these import aiohttp; nothing else in warpd imports this package, so the
other commands start without it.
"""
