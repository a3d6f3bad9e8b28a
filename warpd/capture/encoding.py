"""Undoing an answer's Content-Encoding, for the capture's copy only (sans-I/O).

The proxy forwards an answer's bytes as the upstream sent them, compressed
or not: the client asked for that encoding and decodes it itself. The copy
pushed into the session must be plain, so it goes through a
:class:`ContentDecoder`: ``gzip`` and ``deflate`` with the standard library,
``br`` and ``zstd`` when a module for them is installed (``brotli`` or
``brotlicffi``; ``zstandard``, or ``compression.zstd`` from Python 3.14);
:func:`content_decoder` raises :class:`UnsupportedEncoding` for any other,
and the proxy then forwards that answer without capturing it.

Output is bounded: a decoder given ``limit`` raises :class:`DecodedTooLarge`
once more than that many bytes came out, so a small compressed answer cannot
make a huge copy (a decompression bomb).
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Protocol


class UnsupportedEncoding(ValueError):
    """No decoder here for this Content-Encoding."""


class DecodedTooLarge(ValueError):
    """More than the allowed bytes came out of decoding."""


class _Stage(Protocol):
    def decode(self, data: bytes, budget: int) -> bytes: ...
    def flush(self) -> bytes: ...


class _Zlib:
    """gzip (``wbits`` 31), zlib-wrapped deflate (15) or raw deflate (-15)."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._z = zlib.decompressobj(wbits)
        self._seen = b""

    def decode(self, data: bytes, budget: int) -> bytes:
        if self._wbits == 15 and len(self._seen) < 2:
            # "deflate" should be zlib-wrapped, but servers send raw deflate
            # too: a zlib header's first two bytes are a multiple of 31.
            self._seen += data[: 2 - len(self._seen)]
            if len(self._seen) == 2 and int.from_bytes(self._seen, "big") % 31:
                self._wbits = -15
                self._z = zlib.decompressobj(-15)
        out = self._z.decompress(data, budget + 1)
        if self._z.unconsumed_tail:
            raise DecodedTooLarge
        return out

    def flush(self) -> bytes:
        return self._z.flush()


class _Module:
    """A decompressor object from an optional module (brotli, zstandard)."""

    def __init__(self, decompressor: Any) -> None:
        self._d = decompressor

    def decode(self, data: bytes, budget: int) -> bytes:
        method = getattr(self._d, "process", None) or self._d.decompress
        out: bytes = method(data)
        return out

    def flush(self) -> bytes:
        return b""


def _brotli() -> _Stage:
    for name in ("brotli", "brotlicffi"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return _Module(module.Decompressor())
    raise UnsupportedEncoding("br (install brotli to capture brotli-encoded answers)")


def _zstd() -> _Stage:
    try:
        zstd: Any = importlib.import_module("compression.zstd")
        return _Module(zstd.ZstdDecompressor())
    except ImportError:
        pass
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        raise UnsupportedEncoding(
            "zstd (install zstandard to capture zstd-encoded answers)"
        ) from None
    return _Module(zstandard.ZstdDecompressor().decompressobj())


def _stage(coding: str) -> _Stage:
    if coding in ("gzip", "x-gzip"):
        return _Zlib(31)
    if coding == "deflate":
        return _Zlib(15)
    if coding == "br":
        return _brotli()
    if coding == "zstd":
        return _zstd()
    raise UnsupportedEncoding(coding)


class ContentDecoder:
    """Decodes one answer's body, piece by piece, through each of its encodings in turn.

    Call :meth:`decode` with each piece and :meth:`flush` at the end; both
    return plain bytes. Raises :class:`DecodedTooLarge` past ``limit`` bytes
    out, and ``zlib.error`` (or the module's error) for corrupt input.
    """

    def __init__(self, codings: list[str], limit: int) -> None:
        # Applied in the order listed: decoded in the reverse order.
        self._stages = [_stage(c) for c in reversed(codings)]
        self._limit = limit
        self._out = 0

    def decode(self, data: bytes) -> bytes:
        for stage in self._stages:
            data = stage.decode(data, self._limit - self._out)
        return self._count(data)

    def flush(self) -> bytes:
        data = b""
        for stage in self._stages:
            # What the previous stage let go goes through this one before it ends.
            head = stage.decode(data, self._limit - self._out) if data else b""
            data = head + stage.flush()
        return self._count(data)

    def _count(self, data: bytes) -> bytes:
        self._out += len(data)
        if self._out > self._limit:
            raise DecodedTooLarge
        return data


def content_decoder(header: str | None, limit: int) -> ContentDecoder | None:
    """A decoder for a Content-Encoding header value, or None if the body is plain.

    Raises :class:`UnsupportedEncoding` naming the coding that cannot be undone.
    """
    if not header:
        return None
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    return ContentDecoder(codings, limit)
