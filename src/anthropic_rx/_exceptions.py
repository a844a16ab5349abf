"""The exceptions of requests and streams, all under one root.

Misuse (a missing parameter, a bad option) raises the built-in ``TypeError`` or ``ValueError``
at call time instead.

```
AnthropicRxError
├── APIConnectionError            could not reach / lost the API; __cause__ = the httpx error
│   └── APITimeoutError           (+ TimeoutError) connect / read / total / idle
├── APIError                      the API said no: .error_type .message .status_code .body
│   ├── BadRequestError           invalid_request_error / 400
│   ├── AuthenticationError       authentication_error / 401
│   ├── BillingError              billing_error / 402
│   ├── PermissionDeniedError     permission_error / 403
│   ├── NotFoundError             not_found_error / 404
│   ├── RequestTooLargeError      request_too_large / 413
│   ├── RateLimitError            rate_limit_error / 429 (.retry_after)
│   └── InternalServerError       api_error / 500 (and any other 5xx)
│       ├── GatewayTimeoutError   timeout_error / 504
│       └── OverloadedError       overloaded_error / 529
└── StreamError                   the stream is not one, or went wrong once open
    ├── ProtocolError (+ValueError) not text/event-stream, bad JSON, impossible event order
    └── IncompleteStreamError     the body ended without message_stop
```

The class of an API error is chosen by ``error.type`` first (an ``overloaded_error`` sent as an
in-stream ``event: error`` after HTTP 200 *is* an :class:`OverloadedError`), by HTTP status
second; an unknown type with an unknown status is a plain :class:`APIError`. The server-side
failures share :class:`InternalServerError`, so one ``except`` catches every 5xx, as with the
official SDK.

Every error raised after the stream opened carries ``.partial_message``: the message accumulated
from the events received so far (``None`` when not even ``message_start`` arrived). Cancellation
is never an error: ``asyncio.CancelledError`` is not caught or wrapped by this library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._events import Message
    from ._meta import ResponseMeta

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AnthropicRxError",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "GatewayTimeoutError",
    "IncompleteStreamError",
    "InternalServerError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "RequestTooLargeError",
    "StreamError",
    "api_error_class",
    "api_error_from_body",
]


class AnthropicRxError(Exception):
    """Root of every exception raised by anthropic-rx.

    Attributes:
        partial_message: the message accumulated before the failure, when the stream had opened.
        meta: the HTTP response meta (request id, rate limits, headers), when a response arrived.
    """

    partial_message: Message | None
    meta: ResponseMeta | None

    def __init__(
        self,
        message: str,
        *,
        partial_message: Message | None = None,
        meta: ResponseMeta | None = None,
    ) -> None:
        super().__init__(message)
        self.partial_message = partial_message
        self.meta = meta

    @property
    def request_id(self) -> str | None:
        """The ``request-id`` response header, when a response arrived."""
        return self.meta.request_id if self.meta is not None else None


class APIConnectionError(AnthropicRxError):
    """The API could not be reached, or the connection was lost mid-stream.

    ``__cause__`` holds the underlying transport error (an ``httpx.TransportError``).
    """


class APITimeoutError(APIConnectionError, TimeoutError):
    """A connect, read, total or idle timeout expired.

    Attributes:
        kind: which timeout expired: ``"connect"``, ``"read"``, ``"total"`` or ``"idle"``.
    """

    kind: str

    def __init__(
        self,
        message: str,
        *,
        kind: str = "read",
        partial_message: Message | None = None,
        meta: ResponseMeta | None = None,
    ) -> None:
        super().__init__(message, partial_message=partial_message, meta=meta)
        self.kind = kind


class APIError(AnthropicRxError):
    """The API answered with an error, as an HTTP error status or as an in-stream error event.

    Attributes:
        error_type: the API's ``error.type`` (e.g. ``"overloaded_error"``), or ``None`` when the
            body named none (a proxy's HTML page, an empty body).
        message: the API's ``error.message``, or a description of the response.
        status_code: the HTTP status; ``200`` for an error event inside a stream.
        body: the decoded JSON body (or event data) when it was JSON, else an excerpt of the text.
    """

    error_type: str | None
    message: str
    status_code: int | None
    body: object

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        status_code: int | None = None,
        body: object = None,
        partial_message: Message | None = None,
        meta: ResponseMeta | None = None,
    ) -> None:
        super().__init__(message, partial_message=partial_message, meta=meta)
        self.message = message
        self.error_type = error_type
        self.status_code = status_code
        self.body = body

    def __str__(self) -> str:
        parts = [self.message]
        if self.error_type:
            parts.append(f"type={self.error_type}")
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " | ".join(parts)


class BadRequestError(APIError):
    """``invalid_request_error`` / HTTP 400."""


class AuthenticationError(APIError):
    """``authentication_error`` / HTTP 401."""


class BillingError(APIError):
    """``billing_error`` / HTTP 402."""


class PermissionDeniedError(APIError):
    """``permission_error`` / HTTP 403."""


class NotFoundError(APIError):
    """``not_found_error`` / HTTP 404."""


class RequestTooLargeError(APIError):
    """``request_too_large`` / HTTP 413."""


class RateLimitError(APIError):
    """``rate_limit_error`` / HTTP 429.

    Attributes:
        retry_after: seconds the API asked to wait (``retry-after-ms`` / ``retry-after``), if any.
    """

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying, from the response headers, when they said."""
        return self.meta.retry_after if self.meta is not None else None


class InternalServerError(APIError):
    """``api_error`` / HTTP 500, and any other 5xx without a more specific class."""


class GatewayTimeoutError(InternalServerError):
    """``timeout_error`` / HTTP 504."""


class OverloadedError(InternalServerError):
    """``overloaded_error`` / HTTP 529."""


class StreamError(AnthropicRxError):
    """The response is not an event stream, or the stream went wrong once open."""


class ProtocolError(StreamError, ValueError):
    """The bytes or events broke the protocol.

    Raised for a response that is not ``text/event-stream``, undecodable or oversized lines,
    event data that is not the JSON the type requires, and impossible event orders (a delta for a
    block never started, a second ``message_start``...).
    """


class IncompleteStreamError(StreamError):
    """The body ended before ``message_stop``: the reply is truncated.

    ``partial_message`` holds what arrived.
    """


_BY_TYPE: Mapping[str, type[APIError]] = {
    "invalid_request_error": BadRequestError,
    "authentication_error": AuthenticationError,
    "billing_error": BillingError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "request_too_large": RequestTooLargeError,
    "rate_limit_error": RateLimitError,
    "api_error": InternalServerError,
    "timeout_error": GatewayTimeoutError,
    "overloaded_error": OverloadedError,
}

_BY_STATUS: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BillingError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
    500: InternalServerError,
    504: GatewayTimeoutError,
    529: OverloadedError,
}


def api_error_class(error_type: str | None, status_code: int | None) -> type[APIError]:
    """The exception class for an API error: by ``error.type`` first, then by HTTP status.

    Unknown 5xx statuses map to :class:`InternalServerError`; anything else unknown to
    :class:`APIError`.
    """
    if error_type is not None and error_type in _BY_TYPE:
        return _BY_TYPE[error_type]
    if status_code is not None:
        if status_code in _BY_STATUS:
            return _BY_STATUS[status_code]
        if status_code >= 500:
            return InternalServerError
    return APIError


def api_error_from_body(
    body: object,
    *,
    status_code: int | None,
    fallback_message: str,
    partial_message: Message | None = None,
    meta: ResponseMeta | None = None,
) -> APIError:
    """The typed :class:`APIError` for an error body (an HTTP error's or an ``error`` event's)."""
    error_type, message = error_details(body)
    cls = api_error_class(error_type, status_code)
    return cls(
        message or fallback_message,
        error_type=error_type,
        status_code=status_code,
        body=body,
        partial_message=partial_message,
        meta=meta,
    )


def error_details(body: Any) -> tuple[str | None, str | None]:
    """``(error.type, error.message)`` from an API error body, or ``(None, None)``."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            etype = error.get("type")
            emsg = error.get("message")
            return (
                etype if isinstance(etype, str) else None,
                emsg if isinstance(emsg, str) else None,
            )
    return None, None
