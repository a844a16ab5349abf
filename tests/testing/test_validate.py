"""FakeAnthropic refuses a malformed Messages request as the API does: 400 invalid_request_error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import anthropic_rx as arx
from anthropic_rx import testing

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Hi"}],
}


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in BODY.items() if k != key}


# (body, the start of the error message: the field it names, then what is wrong)
MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "max-tokens-not-an-integer": (
        {**BODY, "max_tokens": "abc"},
        "max_tokens: Input should be a valid integer",
    ),
    "max-tokens-fractional": ({**BODY, "max_tokens": 1.5}, "max_tokens: Input should be a valid"),
    "max-tokens-boolean": ({**BODY, "max_tokens": True}, "max_tokens: Input should be a valid"),
    "max-tokens-zero": (
        {**BODY, "max_tokens": 0},
        "max_tokens: Input should be greater than or equal to 1",
    ),
    "max-tokens-missing": (without("max_tokens"), "max_tokens: Field required"),
    "model-missing": (without("model"), "model: Field required"),
    "model-not-a-string": ({**BODY, "model": 4}, "model: Input should be a valid string"),
    "messages-missing": (without("messages"), "messages: Field required"),
    "messages-a-string": ({**BODY, "messages": "hi"}, "messages: Input should be a valid list"),
    "messages-empty": ({**BODY, "messages": []}, "messages: at least one message is required"),
    "message-not-an-object": (
        {**BODY, "messages": ["hi"]},
        "messages.0: Input should be a valid dictionary",
    ),
    "role-system": (
        {**BODY, "messages": [{"role": "system", "content": "Be brief"}]},
        "messages.0.role: Input should be 'user' or 'assistant'",
    ),
    "role-missing": ({**BODY, "messages": [{"content": "Hi"}]}, "messages.0.role: Field required"),
    "content-missing": (
        {
            **BODY,
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user"},
            ],
        },
        "messages.2.content: Field required",
    ),
    "content-a-number": (
        {**BODY, "messages": [{"role": "user", "content": 7}]},
        "messages.0.content: Input should be a valid list",
    ),
    "content-block-without-type": (
        {**BODY, "messages": [{"role": "user", "content": [{"text": "Hi"}]}]},
        "messages.0.content.0.type: Field required",
    ),
    "content-empty-string": (
        {**BODY, "messages": [{"role": "user", "content": ""}]},
        "messages.0: all messages must have non-empty content",
    ),
}


@pytest.fixture(params=["memory", "loopback"])
def way_in(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def post(fake: testing.FakeAnthropic, way: str, body: Any) -> tuple[int, Any, str]:
    """POST ``body`` through ``way``; the status, the JSON answer and the request-id header."""
    timeout = httpx.Timeout(5.0)
    if way == "memory":
        async with httpx.AsyncClient(
            transport=fake.transport, base_url="http://fake.test", timeout=timeout
        ) as http:
            response = await http.post("/v1/messages", json=body)
    else:
        async with (
            fake.serve() as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=timeout) as http,
        ):
            response = await http.post("/v1/messages", json=body)
    content_type = response.headers.get("content-type", "")
    data = response.json() if content_type.startswith("application/json") else None
    return response.status_code, data, response.headers.get("request-id", "")


@pytest.mark.parametrize(("body", "message"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_gets_the_apis_400(
    way_in: str, body: dict[str, Any], message: str
) -> None:
    fake = testing.FakeAnthropic()
    status, data, request_id = await post(fake, way_in, body)
    assert status == 400
    assert data["type"] == "error"
    assert data["error"]["type"] == "invalid_request_error"
    assert data["error"]["message"].startswith(message)
    assert data["request_id"] == request_id == fake.requests[-1].request_id
    assert fake.requests[-1].response_status == 400
    await fake.wait_closed()


async def test_a_planned_response_waits_for_a_well_formed_request(way_in: str) -> None:
    fake = testing.FakeAnthropic(default=None)
    fake.add_stream(testing.text_reply("Hello"))
    status, data, _ = await post(fake, way_in, {**BODY, "max_tokens": "abc"})
    assert (status, data["error"]["type"]) == (400, "invalid_request_error")
    # The API would refuse the request whatever was planned; the plan answers the next one.
    assert fake.pending == 1
    async with fake.client(max_retries=0) as client:
        message = await arx.final_message(
            client.stream(
                model="claude-sonnet-4-5",
                max_tokens=64,
                messages=[{"role": "user", "content": "Hi"}],
            )
        )
    assert message.content == (arx.TextBlock(text="Hello"),)
    assert fake.pending == 0


async def test_the_client_raises_bad_request_naming_the_field() -> None:
    fake = testing.FakeAnthropic()
    async with fake.client(max_retries=2) as client:
        with pytest.raises(arx.BadRequestError) as caught:
            await arx.final_message(
                client.stream(
                    model="claude-sonnet-4-5",
                    max_tokens="abc",
                    messages=[{"role": "user", "content": "Hi"}],
                )
            )
    error = caught.value
    assert error.status_code == 400
    assert error.error_type == "invalid_request_error"
    assert error.message == "max_tokens: Input should be a valid integer"
    assert error.request_id == fake.requests[-1].request_id
    assert len(fake.requests) == 1  # a 400 is not retried
    await fake.wait_closed()


@pytest.mark.parametrize(("body", "message"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_validate_requests_false_answers_anything(
    way_in: str, body: dict[str, Any], message: str
) -> None:
    fake = testing.FakeAnthropic(validate_requests=False)
    status, data, _ = await post(fake, way_in, body)
    assert status == 200
    assert data is None  # a stream, not a JSON error
    assert fake.requests[-1].response_status == 200
    await fake.wait_closed()


async def test_a_well_formed_request_with_every_shape_of_content_is_answered() -> None:
    fake = testing.FakeAnthropic()
    body = {
        **BODY,
        "max_tokens": 64.0,  # a whole number is accepted as an integer
        "system": "Be brief",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"},
            {"role": "assistant", "content": ""},  # an empty final assistant turn is allowed
        ],
    }
    status, _, _ = await post(fake, "memory", body)
    assert status == 200
    await fake.wait_closed()
