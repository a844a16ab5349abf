"""The exception tree and the choice of API error class."""

from __future__ import annotations

import pickle

import pytest

import anthropic_rx as arx
from anthropic_rx import (
    AnthropicRxError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    GatewayTimeoutError,
    IncompleteStreamError,
    InternalServerError,
    Message,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTooLargeError,
    ResponseMeta,
    StreamError,
)
from anthropic_rx._exceptions import api_error_class, api_error_from_body

# (class, error.type, HTTP status)
API_ERRORS: list[tuple[type[APIError], str, int]] = [
    (BadRequestError, "invalid_request_error", 400),
    (AuthenticationError, "authentication_error", 401),
    (BillingError, "billing_error", 402),
    (PermissionDeniedError, "permission_error", 403),
    (NotFoundError, "not_found_error", 404),
    (RequestTooLargeError, "request_too_large", 413),
    (RateLimitError, "rate_limit_error", 429),
    (InternalServerError, "api_error", 500),
    (GatewayTimeoutError, "timeout_error", 504),
    (OverloadedError, "overloaded_error", 529),
]

TREE: list[tuple[type[Exception], type[Exception]]] = [
    (APIConnectionError, AnthropicRxError),
    (APITimeoutError, APIConnectionError),
    (APIError, AnthropicRxError),
    (StreamError, AnthropicRxError),
    (ProtocolError, StreamError),
    (IncompleteStreamError, StreamError),
    *((cls, APIError) for cls, _, _ in API_ERRORS),
]

ALL_CLASSES: list[type[Exception]] = [AnthropicRxError, *(child for child, _ in TREE)]


@pytest.mark.parametrize(("child", "parent"), TREE, ids=[c.__name__ for c, _ in TREE])
def test_class_tree(child: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(child, parent)
    assert child is not parent
    assert issubclass(child, AnthropicRxError)
    assert issubclass(AnthropicRxError, Exception)


def test_direct_bases_of_the_branches() -> None:
    assert AnthropicRxError.__bases__ == (Exception,)
    for branch in (APIConnectionError, APIError, StreamError):
        assert branch.__bases__ == (AnthropicRxError,)
    assert APITimeoutError.__bases__ == (APIConnectionError, TimeoutError)
    assert ProtocolError.__bases__ == (StreamError, ValueError)
    assert IncompleteStreamError.__bases__ == (StreamError,)


def test_branches_are_disjoint() -> None:
    branches = (APIConnectionError, APIError, StreamError)
    for cls in ALL_CLASSES:
        assert sum(issubclass(cls, branch) for branch in branches) <= 1, cls


def test_timeout_is_also_a_builtin_timeout_error() -> None:
    assert issubclass(APITimeoutError, TimeoutError)
    assert issubclass(APITimeoutError, APIConnectionError)
    error = APITimeoutError("idle for 60s", kind="idle")
    assert error.kind == "idle"
    assert APITimeoutError("read").kind == "read"
    with pytest.raises(TimeoutError):
        raise error


def test_protocol_error_is_also_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)
    assert not issubclass(IncompleteStreamError, ValueError)
    with pytest.raises(ValueError, match="bad frame"):
        raise ProtocolError("bad frame")


def test_only_the_documented_extra_bases() -> None:
    for cls in ALL_CLASSES:
        if cls is APITimeoutError:
            assert issubclass(cls, TimeoutError)
        elif cls is ProtocolError:
            assert issubclass(cls, ValueError)
        else:
            assert not issubclass(cls, (TimeoutError, ValueError, OSError)), cls


def test_every_class_is_exported() -> None:
    for cls in ALL_CLASSES:
        assert getattr(arx, cls.__name__) is cls
        assert cls.__name__ in arx.__all__


def test_cancellation_is_not_in_the_tree() -> None:
    import asyncio

    assert not issubclass(asyncio.CancelledError, AnthropicRxError)
    assert not any(issubclass(cls, asyncio.CancelledError) for cls in ALL_CLASSES)


# --- api_error_class -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "error_type", "status"), API_ERRORS, ids=[c.__name__ for c, _, _ in API_ERRORS]
)
def test_class_by_type_and_by_status(cls: type[APIError], error_type: str, status: int) -> None:
    assert api_error_class(error_type, status) is cls
    assert api_error_class(error_type, None) is cls
    assert api_error_class(error_type, 200) is cls
    assert api_error_class(None, status) is cls
    assert api_error_class("future_error", status) is cls


@pytest.mark.parametrize(
    ("error_type", "status", "cls"),
    [
        ("overloaded_error", 200, OverloadedError),
        ("future_error", 529, OverloadedError),
        ("future_error", 503, InternalServerError),
        (None, 502, InternalServerError),
        (None, 599, InternalServerError),
        ("future_error", 418, APIError),
        (None, 418, APIError),
        (None, 200, APIError),
        ("future_error", None, APIError),
        (None, None, APIError),
        ("overloaded_error", 400, OverloadedError),
        ("rate_limit_error", 500, RateLimitError),
        ("invalid_request_error", 529, BadRequestError),
        ("api_error", 404, InternalServerError),
        ("Overloaded_Error", 418, APIError),
    ],
)
def test_type_beats_status(error_type: str | None, status: int | None, cls: type[APIError]) -> None:
    assert api_error_class(error_type, status) is cls


# --- api_error_from_body ---------------------------------------------------------------------


def test_from_body_of_an_in_stream_error() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    partial = Message(id="msg_1", model="m")
    meta = ResponseMeta.from_headers(200, {"request-id": "req_1"})
    error = api_error_from_body(
        body, status_code=200, fallback_message="fallback", partial_message=partial, meta=meta
    )
    assert type(error) is OverloadedError
    assert error.error_type == "overloaded_error"
    assert error.message == "Overloaded"
    assert error.status_code == 200
    assert error.body is body
    assert error.partial_message is partial
    assert error.meta is meta
    assert error.request_id == "req_1"


def test_from_body_of_an_http_error() -> None:
    body = {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}
    error = api_error_from_body(body, status_code=404, fallback_message="HTTP 404")
    assert type(error) is NotFoundError
    assert (error.error_type, error.message, error.status_code) == (
        "not_found_error",
        "model: x",
        404,
    )
    assert error.partial_message is None
    assert error.meta is None
    assert error.request_id is None


@pytest.mark.parametrize(
    "body",
    [
        None,
        "<html>502 Bad Gateway</html>",
        [],
        {},
        {"error": "overloaded_error"},
        {"error": {}},
        {"error": {"type": 5, "message": None}},
        {"type": "overloaded_error", "message": "top level, not under error"},
    ],
)
def test_from_body_without_error_details_uses_status_and_fallback(body: object) -> None:
    error = api_error_from_body(body, status_code=502, fallback_message="HTTP 502 Bad Gateway")
    assert type(error) is InternalServerError
    assert error.error_type is None
    assert error.message == "HTTP 502 Bad Gateway"
    assert error.body == body


def test_from_body_with_type_but_no_message() -> None:
    body = {"error": {"type": "rate_limit_error"}}
    error = api_error_from_body(body, status_code=None, fallback_message="rate limited")
    assert type(error) is RateLimitError
    assert error.message == "rate limited"


def test_from_body_with_unknown_type_keeps_it() -> None:
    body = {"error": {"type": "future_error", "message": "new"}}
    error = api_error_from_body(body, status_code=418, fallback_message="x")
    assert type(error) is APIError
    assert error.error_type == "future_error"
    assert error.message == "new"


# --- str, request id, retry after --------------------------------------------------------------


def test_str_names_type_status_and_request_id() -> None:
    meta = ResponseMeta.from_headers(529, {"request-id": "req_9"})
    error = OverloadedError("Overloaded", error_type="overloaded_error", status_code=529, meta=meta)
    text = str(error)
    assert "Overloaded" in text
    assert "overloaded_error" in text
    assert "529" in text
    assert "req_9" in text


def test_str_without_optional_parts() -> None:
    assert str(APIError("went wrong")) == "went wrong"
    text = str(APIError("went wrong", status_code=500))
    assert "500" in text
    assert "None" not in text


def test_request_id_comes_from_meta() -> None:
    assert APIError("x").request_id is None
    assert APIConnectionError("x").request_id is None
    meta = ResponseMeta.from_headers(500, {"Request-Id": "req_5"})
    assert APIError("x", meta=meta).request_id == "req_5"
    assert IncompleteStreamError("cut", meta=meta).request_id == "req_5"
    assert APITimeoutError("idle", kind="idle", meta=meta).request_id == "req_5"


def test_retry_after_comes_from_meta() -> None:
    assert RateLimitError("slow down").retry_after is None
    meta = ResponseMeta.from_headers(429, {"retry-after": "12"})
    assert RateLimitError("slow down", meta=meta).retry_after == 12.0
    meta_ms = ResponseMeta.from_headers(429, {"retry-after-ms": "1500", "retry-after": "12"})
    assert RateLimitError("slow down", meta=meta_ms).retry_after == 1.5
    no_hint = ResponseMeta.from_headers(429, {})
    assert RateLimitError("slow down", meta=no_hint).retry_after is None


def test_partial_message_defaults_to_none_and_is_kept() -> None:
    partial = Message(id="msg_1", model="m")
    assert StreamError("x").partial_message is None
    assert IncompleteStreamError("cut", partial_message=partial).partial_message is partial
    assert ProtocolError("bad", partial_message=partial).partial_message is partial


def test_errors_pickle_with_their_attributes() -> None:
    error = ProtocolError("bad frame")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ProtocolError
    assert str(again) == "bad frame"
    meta = ResponseMeta.from_headers(529, {"request-id": "req_3"})
    api = OverloadedError("Busy", error_type="overloaded_error", status_code=529, meta=meta)
    api_again = pickle.loads(pickle.dumps(api))
    assert type(api_again) is OverloadedError
    assert (api_again.error_type, api_again.status_code, api_again.request_id) == (
        "overloaded_error",
        529,
        "req_3",
    )
    assert str(api_again) == str(api)
    timeout = pickle.loads(pickle.dumps(APITimeoutError("idle", kind="idle")))
    assert timeout.kind == "idle"
