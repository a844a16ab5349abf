"""Byte sources: what :func:`~anthropic_rx.from_sse_bytes` accepts, opened as one :class:`Body`.

An ``httpx.Response`` (already read, or streaming asynchronously or synchronously; its headers
become the body's meta), all the bytes at once, an async iterable or a plain iterable of chunks.
Opening reads nothing: the driver does.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

import httpx

from ._drivers import Body
from ._meta import ResponseMeta

__all__ = ["ByteSource", "open_body"]

ByteSource = (
    Iterable[bytes] | AsyncIterable[bytes] | httpx.Response | bytes | bytearray | memoryview
)


def open_body(source: ByteSource) -> Body:
    """``source`` as a body to drive: its chunks, how to close them and, for a response, its
    meta. Reads nothing: the driver does."""
    if isinstance(source, httpx.Response):
        meta = ResponseMeta.from_headers(source.status_code, source.headers)
        if getattr(source, "_content", None) is not None:
            return Body(iter((source.content,)), None, meta)
        if isinstance(source.stream, httpx.AsyncByteStream):
            return Body(source.aiter_bytes(), source.aclose, meta)
        return Body(source.iter_bytes(), source.close, meta)
    if isinstance(source, bytes | bytearray | memoryview):
        return Body(iter((bytes(source),)))
    if isinstance(source, AsyncIterable):
        return Body(aiter(source))
    return Body(iter(source))
