"""The HTTP client against the fake Anthropic, over real loopback HTTP and in memory."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import reactivex
from reactivex import operators as rx_ops

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx._retry import _retry_delay
from tests.conftest import fixture_bytes

SECRET = "sk-ant-test-SECRET-never-shown"
PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello"}],
}


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and counts responses whose body is still open on the client side."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.opened = 0
        self.closed = 0

    @property
    def open(self) -> int:
        return self.opened - self.closed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.opened += 1
        counter = self
        assert isinstance(response.stream, httpx.AsyncByteStream)
        inner_stream: httpx.AsyncByteStream = response.stream

        class Stream(httpx.AsyncByteStream):
            closed = False

            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in inner_stream:
                    yield chunk

            async def aclose(self) -> None:
                if not self.closed:
                    self.closed = True
                    counter.closed += 1
                await inner_stream.aclose()

        return httpx.Response(
            response.status_code, headers=response.headers, stream=Stream(), request=request
        )


@pytest.fixture
def fake() -> testing.FakeAnthropic:
    return testing.FakeAnthropic()


@pytest.fixture
async def served(fake: testing.FakeAnthropic) -> AsyncIterator[str]:
    async with fake.serve() as base_url:
        yield base_url


@pytest.fixture
async def client(served: str) -> AsyncIterator[arx.Client]:
    async with arx.Client(api_key=SECRET, base_url=served, max_retries=2) as c:
        yield c


async def wait_for(condition: Any, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- the happy path --------------------------------------------------------------------------


async def test_stream_over_loopback_gives_the_message(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(testing.text_reply("Hello", ", world"))
    message = await arx.final_message(client.stream(**PARAMS))
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "text", "text": "Hello, world"}
    ]
    assert len(fake.requests) == 1
    body = fake.requests[0].json
    assert body["stream"] is True
    assert body["model"] == "claude-sonnet-4-5"
    assert body["messages"] == PARAMS["messages"]
    await fake.wait_closed()


async def test_every_fixture_streams_through_the_client(
    fake: testing.FakeAnthropic, client: arx.Client, fixture_stream: bytes
) -> None:
    fake.add_stream(fixture_stream, chunk_size=37)
    expected = arx.from_sse_bytes(fixture_stream)
    ours: list[arx.MessageStreamEvent] = []
    theirs: list[arx.MessageStreamEvent] = []
    await _collect(client.stream(**PARAMS), ours)
    await _collect(expected, theirs)
    assert [e.model_dump() for e in ours] == [e.model_dump() for e in theirs]


async def _collect(
    events: reactivex.Observable[arx.MessageStreamEvent], into: list[arx.MessageStreamEvent]
) -> None:
    async for event in arx.to_async_iterator(events):
        into.append(event)


async def test_headers_betas_and_key(fake: testing.FakeAnthropic, served: str) -> None:
    async with arx.Client(
        api_key=SECRET,
        base_url=served,
        betas=["beta-a", "beta-b"],
        default_headers={"X-Team": "blue"},
    ) as client:
        fake.add_stream(testing.text_reply("ok"))
        events = client.stream(
            **PARAMS, betas=["beta-b", "beta-c"], extra_headers={"X-Trace": "t1"}
        )
        await arx.final_message(events)
    headers = fake.requests[0].headers
    assert headers["x-api-key"] == SECRET
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "beta-a,beta-b,beta-c"
    assert headers["x-team"] == "blue"
    assert headers["x-trace"] == "t1"
    assert headers["accept"] == "text/event-stream"
    assert headers["user-agent"].startswith("anthropic-rx/")
    fake.assert_sent(model="claude-sonnet-4-5", stream=True)


async def test_cold_nothing_sent_before_subscribe_one_request_per_subscription(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(testing.text_reply("one"))
    fake.add_stream(testing.text_reply("two"))
    events = client.stream(**PARAMS)
    await asyncio.sleep(0.05)
    assert fake.requests == []
    first = await arx.final_message(events)
    second = await arx.final_message(events)
    assert len(fake.requests) == 2
    assert first.content[0].model_dump()["text"] == "one"
    assert second.content[0].model_dump()["text"] == "two"


async def test_in_memory_transport(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(fixture_bytes("docs_tool_use"))
    async with arx.Client(transport=fake.transport) as client:
        message = await arx.final_message(client.stream(**PARAMS))
    assert message.content[1].model_dump()["input"] == {"location": "San Francisco, CA"}


async def test_pydantic_models_in_params_are_sent_as_api_json(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(fixture_bytes("docs_tool_use"))
    fake.add_stream(testing.text_reply("sunny"))
    first = await arx.final_message(client.stream(**PARAMS))
    follow_up = [
        *PARAMS["messages"],
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}],
        },
    ]
    await arx.final_message(client.stream(**{**PARAMS, "messages": follow_up}))
    sent = fake.requests[1].json["messages"][1]["content"]
    assert sent == first.model_dump(mode="json", exclude_none=True)["content"]
    assert "input_json" not in json.dumps(sent)


def test_required_params_and_json_checked_at_call_time() -> None:
    client = arx.Client(api_key=SECRET, base_url="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="max_tokens"):
        client.stream(model="m", messages=[])
    with pytest.raises(TypeError, match="JSON"):
        client.stream(**PARAMS, metadata={"x": object()})
    with pytest.raises(ValueError, match="stream"):
        client.stream(**PARAMS, stream=False)


def test_api_key_required_only_for_the_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        arx.Client()
    arx.Client(base_url="http://127.0.0.1:9")  # a proxy or the fake: no key needed
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1234/")
    client = arx.Client()
    assert client.base_url == "http://127.0.0.1:1234"
    assert SECRET not in repr(client)


# --- HTTP errors and retries -----------------------------------------------------------------

STATUSES = [
    (400, "invalid_request_error", arx.BadRequestError, False),
    (401, "authentication_error", arx.AuthenticationError, False),
    (402, "billing_error", arx.BillingError, False),
    (403, "permission_error", arx.PermissionDeniedError, False),
    (404, "not_found_error", arx.NotFoundError, False),
    (413, "request_too_large", arx.RequestTooLargeError, False),
    (429, "rate_limit_error", arx.RateLimitError, True),
    (500, "api_error", arx.InternalServerError, True),
    (504, "timeout_error", arx.GatewayTimeoutError, True),
    (529, "overloaded_error", arx.OverloadedError, True),
]


@pytest.mark.parametrize(("status", "error_type", "cls", "retried"), STATUSES)
async def test_http_errors_are_typed_and_retried_when_they_may_be(
    fake: testing.FakeAnthropic,
    client: arx.Client,
    status: int,
    error_type: str,
    cls: type[arx.APIError],
    retried: bool,
) -> None:
    for _ in range(3):
        fake.add_error(status, error_type, f"it said {status}", headers={"retry-after-ms": "1"})
    with pytest.raises(cls) as caught:
        await arx.final_message(client.stream(**PARAMS))
    error = caught.value
    assert error.status_code == status
    assert error.error_type == error_type
    assert error.message == f"it said {status}"
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error.partial_message is None
    assert len(fake.requests) == (3 if retried else 1)
    assert SECRET not in f"{error!s} {error!r} {error.body!r}"
    await fake.wait_closed()


async def test_retry_then_success(fake: testing.FakeAnthropic, client: arx.Client) -> None:
    fake.add_error(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "1"})
    fake.add_error(500, "api_error", "oops", headers={"retry-after": "0"})
    fake.add_stream(testing.text_reply("finally"))
    message = await arx.final_message(client.stream(**PARAMS))
    assert message.content[0].model_dump()["text"] == "finally"
    assert len(fake.requests) == 3


async def test_x_should_retry_overrides_the_status(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_error(400, "invalid_request_error", "retry me", headers={"x-should-retry": "true"})
    fake.add_stream(testing.text_reply("ok"))
    await arx.final_message(client.stream(**PARAMS))
    assert len(fake.requests) == 2

    fake.add_error(529, "overloaded_error", "do not", headers={"x-should-retry": "false"})
    with pytest.raises(arx.OverloadedError):
        await arx.final_message(client.stream(**PARAMS))
    assert len(fake.requests) == 3


async def test_retry_after_is_honoured(fake: testing.FakeAnthropic, client: arx.Client) -> None:
    fake.add_error(429, "rate_limit_error", "slow down", headers={"retry-after-ms": "300"})
    fake.add_stream(testing.text_reply("ok"))
    started = time.monotonic()
    await arx.final_message(client.stream(**PARAMS))
    assert time.monotonic() - started >= 0.3


async def test_rate_limit_error_carries_retry_after_and_limits(
    fake: testing.FakeAnthropic, served: str
) -> None:
    fake.add_error(
        429,
        "rate_limit_error",
        "slow down",
        headers={
            "retry-after": "7",
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2026-11-25T10:00:00Z",
        },
    )
    async with arx.Client(base_url=served, max_retries=0) as client:
        with pytest.raises(arx.RateLimitError) as caught:
            await arx.final_message(client.stream(**PARAMS))
    error = caught.value
    assert error.retry_after == 7.0
    assert error.meta is not None
    limits = error.meta.rate_limits["requests"]
    assert (limits.limit, limits.remaining) == (50, 0)
    assert limits.reset is not None and limits.reset.hour == 10


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    assert _retry_delay(0, 2.5) == 2.5
    assert 0.375 <= _retry_delay(0, None) <= 0.5
    assert 0.75 <= _retry_delay(1, None) <= 1.0
    assert 6.0 <= _retry_delay(10, None) <= 8.0
    assert _retry_delay(0, 600.0) <= 0.5  # too long to wait inside one call: back off instead


async def test_connection_errors_are_retried_then_raised(fake: testing.FakeAnthropic) -> None:
    fake.add_connection_error()
    fake.add_stream(testing.text_reply("second try"))
    async with arx.Client(transport=fake.transport, max_retries=1) as client:
        message = await arx.final_message(client.stream(**PARAMS))
    assert message.content[0].model_dump()["text"] == "second try"

    async with arx.Client(base_url="http://127.0.0.1:9", max_retries=0) as client:
        with pytest.raises(arx.APIConnectionError) as caught:
            await arx.final_message(client.stream(**PARAMS))
    assert isinstance(caught.value.__cause__, httpx.TransportError)


async def test_a_proxy_html_page_is_a_typed_error_with_an_excerpt(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    page = b"<html><head><title>413</title></head><body>Request Entity Too Large</body></html>"
    fake.add_response(413, page)
    with pytest.raises(arx.RequestTooLargeError) as caught:
        await arx.final_message(client.stream(**PARAMS))
    assert "Request Entity Too Large" in str(caught.value)
    assert caught.value.error_type is None
    assert caught.value.status_code == 413


async def test_a_json_body_instead_of_a_stream_is_a_protocol_error(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_response(200, b'{"id": "msg_1", "type": "message"}', content_type="application/json")
    with pytest.raises(arx.ProtocolError) as caught:
        await arx.final_message(client.stream(**PARAMS))
    error = caught.value
    assert "text/event-stream" in str(error) and "application/json" in str(error)
    assert '"msg_1"' in str(error)
    assert error.meta is not None and error.meta.status_code == 200
    assert error.request_id is not None
    assert len(fake.requests) == 1


async def test_an_error_object_with_status_200_is_typed(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}'
    fake.add_response(200, body, content_type="application/json")
    with pytest.raises(arx.OverloadedError, match="busy"):
        await arx.final_message(client.stream(**PARAMS))


# --- after the stream opened -----------------------------------------------------------------


async def test_in_stream_error_is_emitted_then_typed_by_final_message(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(fixture_bytes("docs_error_overloaded_midstream"))
    events = [e async for e in arx.to_async_iterator(client.stream(**PARAMS))]
    assert isinstance(events[-1], arx.ErrorEvent)
    assert events[-1].response_meta is not None

    fake.add_stream(fixture_bytes("docs_error_overloaded_midstream"))
    with pytest.raises(arx.OverloadedError) as caught:
        await arx.final_message(client.stream(**PARAMS))
    error = caught.value
    assert error.status_code == 200
    assert error.partial_message is not None
    assert error.partial_message.content[0].model_dump()["text"] == "Hello"
    assert error.request_id == fake.requests[-1].response_headers["request-id"]
    assert len(fake.requests) == 2  # never retried after events


async def test_truncated_body_is_incomplete_with_the_partial_message(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    data = fixture_bytes("docs_basic_text")
    fake.add_stream(data, truncate_after=data.index(b"content_block_stop"))
    with pytest.raises(arx.IncompleteStreamError) as caught:
        await arx.final_message(client.stream(**PARAMS))
    partial = caught.value.partial_message
    assert partial is not None
    assert partial.content[0].model_dump()["text"] == "Hello!"
    assert caught.value.request_id is not None
    assert len(fake.requests) == 1


async def test_connection_lost_mid_body_is_a_connection_error_with_partial(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    data = fixture_bytes("docs_basic_text")
    fake.add_stream(data, disconnect_after=data.index(b"content_block_stop"))
    with pytest.raises(arx.APIConnectionError) as caught:
        await arx.final_message(client.stream(**PARAMS))
    assert caught.value.partial_message is not None
    assert len(fake.requests) == 1


async def test_idle_timeout_is_not_reset_by_pings(fake: testing.FakeAnthropic, served: str) -> None:
    start = testing.Reply().events()[:1]
    pings = [{"type": "ping"}] * 40
    fake.add_stream(testing.sse_bytes(start + pings), chunk_size=None, delay=0.02)
    async with arx.Client(base_url=served, idle_timeout=0.3, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(arx.APITimeoutError) as caught:
            await arx.final_message(client.stream(**PARAMS))
    assert caught.value.kind == "idle"
    assert isinstance(caught.value, TimeoutError)
    assert 0.3 <= time.monotonic() - started < 0.8  # pings arrived all along: idle anyway
    assert caught.value.partial_message is not None
    await fake.wait_closed()


async def test_stall_hits_the_idle_timeout(fake: testing.FakeAnthropic, served: str) -> None:
    data = fixture_bytes("docs_basic_text")
    fake.add_stream(data, stall_after=data.index(b"content_block_delta"))
    async with arx.Client(base_url=served, idle_timeout=0.2, max_retries=0) as client:
        with pytest.raises(arx.APITimeoutError) as caught:
            await arx.final_message(client.stream(**PARAMS))
    assert caught.value.kind in {"idle", "read"}
    await fake.wait_closed()


async def test_total_timeout(fake: testing.FakeAnthropic, served: str) -> None:
    fake.add_stream(testing.text_reply(*(["word "] * 50)), tokens_per_second=50)
    async with arx.Client(base_url=served, timeout=0.3, idle_timeout=5, max_retries=0) as c:
        with pytest.raises(arx.APITimeoutError) as caught:
            await arx.final_message(c.stream(**PARAMS))
    assert caught.value.kind == "total"
    await fake.wait_closed()


async def test_total_timeout_counts_the_wait_for_the_response(
    fake: testing.FakeAnthropic, served: str
) -> None:
    fake.add_stream(testing.text_reply(*(["word "] * 20)), latency=0.2, tokens_per_second=50)
    async with arx.Client(base_url=served, timeout=0.3, idle_timeout=5, max_retries=0) as c:
        started = time.monotonic()
        with pytest.raises(arx.APITimeoutError) as caught:
            await arx.final_message(c.stream(**PARAMS))
    assert caught.value.kind == "total"
    # The body's share is what the headers left of the budget, not a fresh 0.3 s.
    assert time.monotonic() - started < 0.45
    await fake.wait_closed()


async def test_idle_timeout_bounds_the_wait_for_the_response(
    fake: testing.FakeAnthropic, served: str
) -> None:
    fake.add_stream(testing.text_reply("late"), latency=1.0)
    async with arx.Client(base_url=served, idle_timeout=0.2, max_retries=0) as c:
        started = time.monotonic()
        with pytest.raises(arx.APITimeoutError) as caught:
            await arx.final_message(c.stream(**PARAMS))
    assert caught.value.kind == "idle"
    assert caught.value.partial_message is None  # nothing had arrived
    assert time.monotonic() - started < 0.7
    await fake.wait_closed()


@pytest.mark.parametrize("transport", ["loopback", "memory"])
async def test_a_per_call_idle_timeout_may_exceed_the_clients(
    fake: testing.FakeAnthropic, served: str, transport: str
) -> None:
    data = fixture_bytes("docs_basic_text")
    fake.add_stream(data, stall_after=data.index(b"event: content_block_delta"), stall_for=0.4)
    options: dict[str, Any] = (
        {"base_url": served} if transport == "loopback" else {"transport": fake.transport}
    )
    async with arx.Client(idle_timeout=0.1, max_retries=0, **options) as c:
        message = await arx.final_message(c.stream(idle_timeout=2.0, **PARAMS))
    assert message.stop_reason == "end_turn"


async def test_a_key_too_short_to_tell_from_text_leaves_headers_and_bodies_alone(
    fake: testing.FakeAnthropic, served: str
) -> None:
    # Only a key long enough to be told from ordinary text is blanked where echoed back.
    fake.add_stream(testing.text_reply("hi"), headers={"x-note": "keep-alive"})
    fake.add_error(400, "invalid_request_error", "bad key k")
    async with arx.Client(api_key="k", base_url=served, max_retries=0) as c:
        starts = [
            e
            async for e in arx.to_async_iterator(c.stream(**PARAMS))
            if isinstance(e, arx.MessageStartEvent)
        ]
        with pytest.raises(arx.BadRequestError) as caught:
            await arx.final_message(c.stream(**PARAMS))
    meta = starts[0].response_meta
    assert meta is not None
    assert meta.headers["x-note"] == "keep-alive"
    assert caught.value.message == "bad key k"


async def test_meta_reachable_inside_the_pipeline(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(
        testing.text_reply("hi"), headers={"anthropic-ratelimit-tokens-remaining": "1234"}
    )
    starts = [
        e
        async for e in arx.to_async_iterator(client.stream(**PARAMS))
        if isinstance(e, arx.MessageStartEvent)
    ]
    meta = starts[0].response_meta
    assert meta is not None
    assert meta.request_id == fake.requests[0].response_headers["request-id"]
    assert meta.rate_limits["tokens"].remaining == 1234


# --- closing: zero open responses on every terminal path ------------------------------------


@pytest.fixture
def counting(fake: testing.FakeAnthropic) -> CountingTransport:
    return CountingTransport(fake.transport)


@pytest.fixture
async def counted_client(counting: CountingTransport) -> AsyncIterator[arx.Client]:
    async with arx.Client(transport=counting, max_retries=1, idle_timeout=0.5) as client:
        yield client


async def test_no_open_response_after_completion_errors_and_retries(
    fake: testing.FakeAnthropic, counting: CountingTransport, counted_client: arx.Client
) -> None:
    data = fixture_bytes("docs_basic_text")
    fake.add_stream(data)
    fake.add_stream(fixture_bytes("docs_error_overloaded_midstream"))
    fake.add_stream(data, truncate_after=100)
    fake.add_stream(data.replace(b'"Hello"', b'"Hello'))  # bad JSON
    fake.add_error(529, "overloaded_error", "busy", headers={"retry-after-ms": "1"})
    fake.add_error(400, "invalid_request_error", "no")
    outcomes: list[str] = []
    for _ in range(5):
        try:
            await arx.final_message(counted_client.stream(**PARAMS))
            outcomes.append("ok")
        except arx.AnthropicRxError as exc:
            outcomes.append(type(exc).__name__)
        await wait_for(lambda: counting.open == 0)
    assert outcomes == [
        "ok",
        "OverloadedError",
        "IncompleteStreamError",
        "ProtocolError",
        "BadRequestError",
    ]
    assert counting.opened == 6


async def test_no_open_response_after_dispose_break_cancel_and_subscriber_error(
    fake: testing.FakeAnthropic, counting: CountingTransport, counted_client: arx.Client
) -> None:
    slow = testing.text_reply(*(["tick "] * 200))
    # dispose through an operator
    fake.add_stream(slow, tokens_per_second=200)
    got = [
        e async for e in arx.to_async_iterator(counted_client.stream(**PARAMS).pipe(rx_ops.take(3)))
    ]
    assert len(got) == 3
    await wait_for(lambda: counting.open == 0)
    # break out of async for
    fake.add_stream(slow, tokens_per_second=200)
    async for _ in arx.to_async_iterator(counted_client.stream(**PARAMS)):
        break
    await wait_for(lambda: counting.open == 0)
    # cancel the consuming task
    fake.add_stream(slow, tokens_per_second=200)
    task = asyncio.create_task(arx.final_message(counted_client.stream(**PARAMS)))
    await wait_for(lambda: counting.opened == 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: counting.open == 0)
    # a subscriber whose code raises
    fake.add_stream(slow, tokens_per_second=200)
    errors: list[Exception] = []

    def explode(event: arx.MessageStreamEvent) -> None:
        raise RuntimeError("subscriber bug")

    counted_client.stream(**PARAMS).subscribe(explode, errors.append)
    await wait_for(lambda: bool(errors))
    assert isinstance(errors[0], RuntimeError)
    await wait_for(lambda: counting.open == 0)
    assert counting.opened == 4


async def test_dispose_over_loopback_closes_the_server_side_stream(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(testing.text_reply(*(["tick "] * 500)), tokens_per_second=500)
    got = []
    async for event in arx.to_async_iterator(client.stream(**PARAMS)):
        got.append(event)
        if len(got) == 5:
            break
    await fake.wait_closed()
    assert fake.disconnects == 1


async def test_streams_of_one_client_share_its_connection_pool(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(testing.text_reply("a"))
    fake.add_stream(testing.text_reply("b"))
    await arx.final_message(client.stream(**PARAMS))
    await arx.final_message(client.stream(**PARAMS))
    assert fake.connections == 1


async def test_given_http_client_is_not_closed(fake: testing.FakeAnthropic) -> None:
    async with httpx.AsyncClient(transport=fake.transport) as http:
        async with arx.Client(http_client=http) as client:
            fake.add_stream(testing.text_reply("x"))
            await arx.final_message(client.stream(**PARAMS))
        assert not http.is_closed
    with pytest.raises(ValueError, match="not both"):
        arx.Client(http_client=http, transport=fake.transport)


def test_to_iterator_drives_the_client_from_sync_code() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("sync", " world"), chunk_size=8)
    client = arx.Client(transport=fake.transport)
    texts = [
        e.delta.text
        for e in arx.to_iterator(client.stream(**PARAMS))
        if isinstance(e, arx.ContentBlockDeltaEvent) and isinstance(e.delta, arx.TextDelta)
    ]
    assert "".join(texts) == "sync world"


def test_subscribing_without_a_loop_says_what_to_do() -> None:
    client = arx.Client(base_url="http://127.0.0.1:9")
    errors: list[Exception] = []
    client.stream(**PARAMS).subscribe(on_error=errors.append)
    assert isinstance(errors[0], RuntimeError)
    assert "to_iterator" in str(errors[0])
