"""Classifying an HTTP response: an event stream to read, or the typed error it is.

The error body is read within a size and time limit and the API key blanked in it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import httpx
import pydantic_core

from ._events import json_with_lone_surrogates_replaced
from ._exceptions import AnthropicRxError, ProtocolError, api_error_from_body
from ._meta import ResponseMeta
from ._redact import _REDACTED, _echoable
from ._transport import aiter_decoded

_ERROR_BODY_LIMIT = 64 * 1024
_EXCERPT = 500


def _meta_of(response: httpx.Response, secret: str | None) -> ResponseMeta:
    """The response's meta, with the API key blanked where a proxy echoed it back."""
    headers: Mapping[str, str] = response.headers
    secret = _echoable(secret)
    if secret and any(secret in value for value in headers.values()):
        headers = {k: v.replace(secret, _REDACTED) for k, v in headers.items()}
    return ResponseMeta.from_headers(response.status_code, headers)


async def _check_response(
    response: httpx.Response, *, secret: str | None = None, limit: float | None = None
) -> AnthropicRxError | None:
    """``None`` for an event stream to read; else the error it is (its body read and closed).

    The error body is read for at most ``limit`` seconds (what arrived by then describes the
    error); the API key, where the body or a header echoes it, is blanked.
    """
    meta = _meta_of(response, secret)
    content_type = response.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()  # case-insensitive (RFC 9110)
    if response.status_code < 300 and media_type == "text/event-stream":
        return None
    raw = await _read_limited(response, limit)
    await response.aclose()
    secret = _echoable(secret)
    if secret:
        raw = raw.replace(secret.encode(), _REDACTED.encode())
    text = raw.decode("utf-8", errors="replace")
    body: object
    try:
        body = pydantic_core.from_json(raw) if raw else None
    except ValueError:
        # Valid JSON that is not Unicode (an escaped lone surrogate) still names its error.
        parsed = json_with_lone_surrogates_replaced(raw)
        body = parsed if parsed is not None else _excerpt(text)
    if response.status_code >= 300:
        fallback = f"HTTP {response.status_code}" + (f": {_excerpt(text)}" if text.strip() else "")
        return api_error_from_body(
            body, status_code=response.status_code, fallback_message=fallback, meta=meta
        )
    error = api_error_from_body(body, status_code=response.status_code, fallback_message="")
    if error.error_type is not None:  # an API error object, sent with a success status
        error.meta = meta
        return error
    return ProtocolError(
        f"expected a text/event-stream response, got HTTP {response.status_code} "
        f"{content_type or 'with no content type'}: {_excerpt(text) or '(empty body)'}",
        meta=meta,
    )


async def _read_limited(response: httpx.Response, limit: float | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    # What arrived before a failure, a stall or the size limit is enough to describe the error.
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(limit):
            async for chunk in aiter_decoded(response):
                chunks.append(chunk)
                size += len(chunk)
                if size >= _ERROR_BODY_LIMIT:
                    break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."
