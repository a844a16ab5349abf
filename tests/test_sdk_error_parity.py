"""HTTP error responses: the same outcome as the official SDK, or a more precise one."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import httpx2
import pytest

import anthropic_rx as arx
from tests.conftest import fixture_bytes

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hi"}],
}

# The SDK's class for each status, and ours (more precise where the SDK has only a status).
CASES = [
    (400, "invalid_request_error", "BadRequestError", arx.BadRequestError),
    (401, "authentication_error", "AuthenticationError", arx.AuthenticationError),
    (402, "billing_error", "PaymentRequiredError", arx.BillingError),
    (403, "permission_error", "PermissionDeniedError", arx.PermissionDeniedError),
    (404, "not_found_error", "NotFoundError", arx.NotFoundError),
    (413, "request_too_large", "ContentTooLargeError", arx.RequestTooLargeError),
    (429, "rate_limit_error", "RateLimitError", arx.RateLimitError),
    (500, "api_error", "InternalServerError", arx.InternalServerError),
    (504, "timeout_error", "GatewayTimeoutError", arx.GatewayTimeoutError),
    (529, "overloaded_error", "OverloadedError", arx.OverloadedError),
]


def error_body(error_type: str, status: int) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": error_type, "message": f"status {status}"}}
    ).encode()


def headers(status: int) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "request-id": f"req_{status}",
        "retry-after-ms": "1",
    }


def sdk_outcome(status: int, error_type: str) -> tuple[anthropic.APIStatusError, int]:
    attempts = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal attempts
        attempts += 1
        return httpx2.Response(
            status, headers=headers(status), content=error_body(error_type, status)
        )

    sdk = anthropic.Anthropic(
        api_key="k", http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    try:
        with sdk.messages.stream(**PARAMS) as stream:
            stream.get_final_message()
    except anthropic.APIStatusError as exc:
        return exc, attempts
    raise AssertionError("the SDK did not raise")


async def our_outcome(status: int, error_type: str) -> tuple[arx.APIError, int]:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return httpx.Response(
            status, headers=headers(status), content=error_body(error_type, status)
        )

    async with arx.Client(transport=httpx.MockTransport(handler)) as client:
        try:
            await arx.final_message(client.stream(**PARAMS))
        except arx.APIError as exc:
            return exc, attempts
    raise AssertionError("anthropic-rx did not raise")


@pytest.mark.parametrize(("status", "error_type", "sdk_class", "our_class"), CASES)
async def test_http_error_matches_the_sdk(
    status: int, error_type: str, sdk_class: str, our_class: type[arx.APIError]
) -> None:
    theirs, their_attempts = sdk_outcome(status, error_type)
    ours, our_attempts = await our_outcome(status, error_type)

    assert type(theirs).__name__ == sdk_class
    assert type(ours) is our_class
    assert ours.status_code == theirs.status_code == status
    assert ours.request_id == theirs.request_id == f"req_{status}"
    assert our_attempts == their_attempts  # the same retry policy: 2 retries of 429 and 5xx
    # Catching the 5xx family works the same way in both.
    assert isinstance(ours, arx.InternalServerError) == isinstance(
        theirs, anthropic.InternalServerError
    )
    # Ours carries the API's own words and type, not a dump of the body.
    assert ours.message == f"status {status}"
    assert ours.error_type == error_type


async def test_in_stream_overload_is_more_precise_than_the_sdk() -> None:
    data = fixture_bytes("docs_error_overloaded_midstream")

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    sdk = anthropic.Anthropic(
        api_key="k", http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    with pytest.raises(anthropic.APIStatusError) as theirs:
        with sdk.messages.stream(**PARAMS) as stream:
            stream.get_final_message()
    assert not isinstance(theirs.value, anthropic.OverloadedError)

    with pytest.raises(arx.OverloadedError) as ours:
        await arx.final_message(arx.from_sse_bytes(data))
    assert ours.value.partial_message is not None
    assert ours.value.partial_message.content[0].model_dump()["text"] == "Hello"
