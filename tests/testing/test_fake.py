"""FakeAnthropic through a plain httpx.AsyncClient, in memory and over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

import anthropic_rx as arx
from anthropic_rx import testing

FIXTURES = Path(__file__).parent.parent / "fixtures"
PING = b'event: ping\ndata: {"type":"ping"}\n\n'
BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Hi"}],
}


@pytest.fixture
def fake() -> testing.FakeAnthropic:
    return testing.FakeAnthropic()


@pytest.fixture(params=["memory", "loopback"])
async def http(
    request: pytest.FixtureRequest, fake: testing.FakeAnthropic
) -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client reaching ``fake`` through each way in."""
    timeout = httpx.Timeout(5.0)
    if request.param == "memory":
        async with httpx.AsyncClient(
            transport=fake.transport, base_url="http://fake.test", timeout=timeout
        ) as client:
            yield client
    else:
        async with (
            fake.serve() as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=timeout) as client,
        ):
            yield client


def is_memory(http: httpx.AsyncClient) -> bool:
    return str(http.base_url).startswith("http://fake.test")


async def fetch(
    http: httpx.AsyncClient, body: Any = BODY, **options: Any
) -> tuple[httpx.Response, bytes]:
    """POST to /v1/messages and read the whole raw body."""
    async with http.stream("POST", "/v1/messages", json=body, **options) as response:
        data = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, data


async def read_into(received: bytearray, http: httpx.AsyncClient, **options: Any) -> None:
    """POST to /v1/messages and collect the raw body into ``received`` as it arrives."""
    async with http.stream("POST", "/v1/messages", json=BODY, **options) as response:
        async for chunk in response.aiter_raw():
            received += chunk


def reply() -> testing.Reply:
    return testing.Reply(id="msg_1").text("Hello", ", ", "world", "!")


# --- responses ------------------------------------------------------------------------------


async def test_stream_status_headers_and_bytes(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    sent = reply()
    fake.add_stream(sent, headers={"Anthropic-Ratelimit-Requests-Remaining": "7"})

    response, data = await fetch(http)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["request-id"] == "req_fake_0001"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "7"
    assert data == sent.to_sse()
    assert fake.pending == 0
    await fake.wait_closed()
    assert fake.disconnects == 0


async def test_stream_from_a_recorded_file_and_from_event_dicts(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    path = FIXTURES / "docs_tool_use.sse"
    fake.add_stream(path).add_stream(str(path)).add_stream([{"type": "ping"}])

    assert (await fetch(http))[1] == path.read_bytes()
    assert (await fetch(http))[1] == path.read_bytes()
    assert (await fetch(http))[1] == PING


async def test_api_error_body_carries_the_request_id(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.add_error(529).add_error(429, headers={"retry-after": "3"})
    fake.add_error(400, "invalid_request_error", "max_tokens: too large")

    overloaded, data = await fetch(http)
    assert overloaded.status_code == 529
    assert overloaded.headers["content-type"] == "application/json"
    assert json.loads(data) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": overloaded.headers["request-id"],
    }
    limited, data = await fetch(http)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert json.loads(data)["error"]["type"] == "rate_limit_error"
    bad, data = await fetch(http)
    assert json.loads(data)["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: too large",
    }
    assert int(bad.headers["content-length"]) == len(data)


async def test_raw_response(fake: testing.FakeAnthropic, http: httpx.AsyncClient) -> None:
    page = b"<html><body>413 Request Entity Too Large</body></html>"
    fake.add_response(413, page).add_response(200, b'{"ok":true}', content_type="application/json")

    response, data = await fetch(http)
    assert (response.status_code, data) == (413, page)
    assert response.headers["content-type"] == "text/html"
    assert response.headers["content-length"] == str(len(page))
    assert response.reason_phrase == "Request Entity Too Large"
    response, data = await fetch(http)
    assert (response.status_code, data) == (200, b'{"ok":true}')
    assert response.headers["content-type"] == "application/json"


async def test_truncate_after_ends_the_body_cleanly(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    full = reply().to_sse()
    fake.add_stream(reply(), truncate_after=100).add_response(200, b"0123456789", truncate_after=4)

    response, data = await fetch(http)

    assert response.status_code == 200
    assert data == full[:100]
    assert (await fetch(http))[1] == b"0123"
    await fake.wait_closed()
    assert fake.disconnects == 0


async def test_disconnect_after_breaks_the_body(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    full = reply().to_sse()
    fake.add_stream(reply(), disconnect_after=150)
    received = bytearray()

    with pytest.raises(httpx.RemoteProtocolError):
        await read_into(received, http)

    assert bytes(received) == full[:150]
    await fake.wait_closed()
    assert fake.disconnects == 0  # the server dropped it, not the client
    # The fake goes on answering.
    assert (await fetch(http))[0].status_code == 200


async def test_stall_sends_nothing_until_the_client_times_out(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    full = reply().to_sse()
    fake.add_stream(reply(), stall_after=120)
    received = bytearray()
    started = time.monotonic()

    with pytest.raises(httpx.ReadTimeout):
        await read_into(received, http, timeout=httpx.Timeout(5.0, read=0.2))

    assert time.monotonic() - started >= 0.2
    assert bytes(received) == full[:120]
    await fake.wait_closed()
    assert fake.disconnects == 1


async def test_a_timed_stall_with_pings_then_the_rest(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    full = reply().to_sse()
    at = full.index(b"event: content_block_delta")
    fake.add_stream(reply(), stall_after=at, stall_for=0.2, stall_ping_every=0.05)
    started = time.monotonic()

    _, data = await fetch(http)

    assert time.monotonic() - started >= 0.2
    assert data.startswith(full[:at])
    assert data.endswith(full[at:])
    pings = data[at : len(data) - len(full) + at]
    assert pings == PING * (len(pings) // len(PING))
    assert 2 <= len(pings) // len(PING) <= 4


async def test_error_after_sends_an_in_stream_error(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.add_stream(reply(), error_after=(3, "overloaded_error", "Overloaded"))

    response, data = await fetch(http)

    assert response.status_code == 200
    frames = [f for f in data.split(b"\n\n") if f]
    assert len(frames) == 4
    assert frames[-1] == (
        b'event: error\ndata: {"type":"error","error":'
        b'{"type":"overloaded_error","message":"Overloaded"}}'
    )
    with pytest.raises(arx.OverloadedError) as caught:
        await arx.final_message(arx.from_sse_bytes(data))
    partial = caught.value.partial_message
    assert partial is not None
    assert partial.content[0] == arx.TextBlock(text="Hello")


async def test_tokens_per_second_paces_the_deltas(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.add_stream(reply(), tokens_per_second=100)  # 4 deltas: at least 40 ms
    started = time.monotonic()

    _, data = await fetch(http)

    assert time.monotonic() - started >= 0.038
    assert data == reply().to_sse()


async def test_delay_and_latency(fake: testing.FakeAnthropic, http: httpx.AsyncClient) -> None:
    fake.add_stream(reply(), delay=0.01)  # 8 events, one chunk each
    fake.add_stream(reply(), latency=0.1)
    started = time.monotonic()
    assert (await fetch(http))[1] == reply().to_sse()
    assert time.monotonic() - started >= 0.075

    started = time.monotonic()
    async with http.stream("POST", "/v1/messages", json=BODY) as response:
        assert time.monotonic() - started >= 0.095
        await response.aread()


async def test_latency_longer_than_the_read_timeout(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.add_stream(reply(), latency=1.0)

    with pytest.raises(httpx.ReadTimeout):
        await fetch(http, timeout=httpx.Timeout(5.0, read=0.1))

    await fake.wait_closed()
    assert fake.disconnects == 1


async def test_chunk_size_is_visible_in_memory(fake: testing.FakeAnthropic) -> None:
    full = reply().to_sse()
    fake.add_stream(reply(), chunk_size=7)
    async with (
        httpx.AsyncClient(transport=fake.transport) as http,
        http.stream("POST", "http://fake.test/v1/messages", json=BODY) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_raw()]

    assert b"".join(chunks) == full
    assert {len(c) for c in chunks[:-1]} == {7}
    assert 1 <= len(chunks[-1]) <= 7


async def test_default_chunks_are_one_event_each(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(reply())
    async with (
        httpx.AsyncClient(transport=fake.transport) as http,
        http.stream("POST", "http://fake.test/v1/messages", json=BODY) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_raw()]

    assert chunks == [testing.sse_bytes([event]) for event in reply().events()]


async def test_chunk_size_over_loopback_keeps_the_bytes(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.add_stream(reply(), chunk_size=3, tokens_per_second=1000)
    assert (await fetch(http))[1] == reply().to_sse()


async def test_connection_error(fake: testing.FakeAnthropic, http: httpx.AsyncClient) -> None:
    fake.add_connection_error()

    with pytest.raises(httpx.TransportError) as caught:
        await fetch(http)

    expected = httpx.ConnectError if is_memory(http) else httpx.RemoteProtocolError
    assert isinstance(caught.value, expected)
    (request,) = fake.requests
    assert (request.response_status, request.response_headers) == (None, {})
    assert (await fetch(http))[0].status_code == 200


# --- routing and defaults ---------------------------------------------------------------------


async def test_only_streamed_posts_to_messages_take_a_planned_response(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.add_stream(reply())

    missing = await http.get("/v1/models")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert missing.json()["request_id"] == missing.headers["request-id"]
    unstreamed = await http.post("/v1/messages", json={**BODY, "stream": False})
    assert unstreamed.status_code == 400
    assert "stream" in unstreamed.json()["error"]["message"]
    not_json = await http.post("/v1/messages", content=b"{nope")
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"

    assert fake.pending == 1
    assert len(fake.requests) == 3
    assert (await fetch(http))[1] == reply().to_sse()


async def test_default_echoes_the_last_user_message_word_by_word(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    body = {
        **BODY,
        "model": "claude-haiku-4-5",
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "what  is up?"}]},
        ],
    }
    _, data = await fetch(http, body)

    events = [e async for e in arx.to_async_iterator(arx.from_sse_bytes(data))]
    deltas = [e.delta for e in events if isinstance(e, arx.ContentBlockDeltaEvent)]
    texts = [d.text for d in deltas if isinstance(d, arx.TextDelta)]
    assert len(texts) == len(deltas)
    assert texts == ["You", " said:", " what", "  is", " up?"]
    message = await arx.final_message(arx.from_sse_bytes(data))
    assert message.model == "claude-haiku-4-5"
    assert message.content == (arx.TextBlock(text="You said: what  is up?"),)


async def test_default_can_be_a_reply_a_function_or_nothing(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.default = reply()
    assert (await fetch(http))[1] == reply().to_sse()

    seen: list[testing.RecordedRequest] = []

    def answer(request: testing.RecordedRequest) -> testing.FakeResponse:
        seen.append(request)
        return testing.FakeResponse.error(503, message=request.json["model"])

    fake.default = answer
    response, data = await fetch(http)
    assert response.status_code == 503
    assert json.loads(data)["error"] == {"type": "api_error", "message": "claude-sonnet-4-5"}
    assert [r.json for r in seen] == [fake.requests[-1].json]
    assert seen[0].response_status is None
    assert fake.requests[-1].response_status == 503

    fake.default = testing.Echo("Echo: ")
    assert b'"text":" Hi"' in (await fetch(http))[1]

    fake.default = None
    response, data = await fetch(http)
    assert response.status_code == 500
    assert json.loads(data)["error"]["type"] == "api_error"


# --- recorded requests --------------------------------------------------------------------------


async def test_requests_are_recorded(fake: testing.FakeAnthropic, http: httpx.AsyncClient) -> None:
    await fetch(
        http,
        headers={"X-Api-Key": "sk-secret", "Anthropic-Beta": "a"},
        params={"beta": "true"},
    )

    (request,) = fake.requests
    assert request.request_id == "req_fake_0001"
    assert request.response_status == 200
    assert request.response_headers["request-id"] == "req_fake_0001"
    assert request.response_headers["content-type"] == "text/event-stream; charset=utf-8"
    assert request.method == "POST"
    assert request.path == "/v1/messages"
    assert request.query == "beta=true"
    assert request.headers["x-api-key"] == "sk-secret"
    assert request.headers["anthropic-beta"] == "a"
    assert request.json == BODY
    assert json.loads(request.content) == BODY
    assert "sk-secret" not in repr(request)
    assert "sk-secret" not in repr(fake.requests)


async def test_assert_sent(fake: testing.FakeAnthropic) -> None:
    with pytest.raises(AssertionError, match="no request"):
        fake.assert_sent(model="x")
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http:
        await fetch(http, headers={"x-api-key": "sk-secret", "anthropic-version": "2023-06-01"})

    last = fake.assert_sent(
        model="claude-sonnet-4-5",
        stream=True,
        messages=ANY,
        headers={"Anthropic-Version": "2023-06-01", "anthropic-beta": None},
    )
    assert last is fake.requests[-1]

    with pytest.raises(AssertionError) as caught:
        fake.assert_sent(
            model="claude-opus-4-1",
            system="be brief",
            headers={"x-api-key": "sk-other", "anthropic-version": None, "x-missing": "1"},
        )
    text = str(caught.value)
    assert "'model': expected 'claude-opus-4-1', sent 'claude-sonnet-4-5'" in text
    assert "'system' was not sent" in text
    assert "header 'x-api-key': expected '***', sent '***'" in text
    assert "header 'anthropic-version' was sent" in text
    assert "header 'x-missing' was not sent" in text
    assert "sk-secret" not in text


async def test_assert_sent_on_a_body_that_is_not_json(fake: testing.FakeAnthropic) -> None:
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http:
        await http.post("/v1/messages", content=b"plain")

    fake.assert_sent()
    with pytest.raises(AssertionError, match="not a JSON object"):
        fake.assert_sent(model="x")


# --- open streams and disconnects ---------------------------------------------------------------


async def test_closing_the_response_mid_stream_is_a_disconnect(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    first_event = len(testing.sse_bytes(reply().events()[:1]))
    fake.add_stream(reply(), stall_after=first_event)

    async with http.stream("POST", "/v1/messages", json=BODY) as response:
        chunk = await anext(response.aiter_raw())
        assert chunk.startswith(b"event: message_start")
        assert fake.open_streams == 1

    await fake.wait_closed()
    assert fake.open_streams == 0
    assert fake.disconnects == 1


async def test_closing_a_paced_stream_mid_body_is_a_disconnect(
    fake: testing.FakeAnthropic, http: httpx.AsyncClient
) -> None:
    fake.add_stream(testing.text_reply(*["word "] * 200), tokens_per_second=200)

    async with http.stream("POST", "/v1/messages", json=BODY) as response:
        async for chunk in response.aiter_raw():
            if b"content_block_delta" in chunk:
                break

    await fake.wait_closed()
    assert (fake.open_streams, fake.disconnects) == (0, 1)


async def test_wait_closed_lists_what_is_still_open(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(reply(), stall_after=10)
    async with (
        httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http,
        http.stream("POST", "/v1/messages", json=BODY),
    ):
        with pytest.raises(
            AssertionError, match=r"(?s)1 response.*req_fake_0001 POST /v1/messages"
        ):
            await fake.wait_closed(timeout=0.05)
    await fake.wait_closed(timeout=0.05)


async def test_a_finished_body_is_closed_before_the_client_closes_it(
    fake: testing.FakeAnthropic,
) -> None:
    fake.add_stream(reply())
    async with (
        httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http,
        http.stream("POST", "/v1/messages", json=BODY) as response,
    ):
        await response.aread()
        assert fake.open_streams == 0
    assert fake.disconnects == 0


# --- with anthropic_rx.Client -------------------------------------------------------------------


@pytest.fixture(params=["memory", "loopback"])
async def client(
    request: pytest.FixtureRequest, fake: testing.FakeAnthropic
) -> AsyncIterator[arx.Client]:
    if request.param == "memory":
        async with fake.client(api_key="sk-test", max_retries=0) as client:
            yield client
    else:
        async with (
            fake.serve() as base_url,
            arx.Client(base_url=base_url, api_key="sk-test", max_retries=0) as client,
        ):
            yield client


async def test_client_gets_the_planned_message(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    sent = testing.Reply(id="msg_1").thinking("hm", signature="s").tool_use("f", {"a": [1, 2]})
    fake.add_stream(sent, chunk_size=5)

    message = await arx.final_message(
        client.stream(model="claude-sonnet-4-5", max_tokens=64, messages=BODY["messages"])
    )

    assert message == sent.message()
    fake.assert_sent(
        model="claude-sonnet-4-5",
        max_tokens=64,
        stream=True,
        headers={"x-api-key": "sk-test", "anthropic-version": "2023-06-01"},
    )
    await fake.wait_closed()


async def test_client_leaving_early_closes_the_stream(
    fake: testing.FakeAnthropic, client: arx.Client
) -> None:
    fake.add_stream(reply(), stall_after=len(reply().to_sse()) - 40)
    events = client.stream(model="m", max_tokens=8, messages=BODY["messages"])

    async with arx.to_async_iterator(events) as iterator:
        async for event in iterator:
            if isinstance(event, arx.ContentBlockDeltaEvent):
                break

    await fake.wait_closed()
    assert fake.disconnects == 1


async def test_client_sees_planned_errors(fake: testing.FakeAnthropic, client: arx.Client) -> None:
    fake.add_error(529).add_stream(reply(), truncate_after=200)
    events = client.stream(model="m", max_tokens=8, messages=BODY["messages"])

    with pytest.raises(arx.OverloadedError) as overloaded:
        await arx.final_message(events)
    assert overloaded.value.request_id == "req_fake_0001"
    with pytest.raises(arx.IncompleteStreamError):
        await arx.final_message(events)
    await fake.wait_closed()


def test_repr_and_plan_errors() -> None:
    fake = testing.FakeAnthropic(default=None)
    fake.add_error(500)
    assert repr(fake) == "FakeAnthropic(pending=1, requests=0, open_streams=0)"
    with pytest.raises(TypeError, match="FakeResponse"):
        fake.add(reply())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exclude each other"):
        fake.add_stream(reply(), truncate_after=1, disconnect_after=2)
    with pytest.raises(ValueError, match="between events"):
        fake.add_stream(reply(), stall_after=3, stall_ping_every=0.1)
    with pytest.raises(ValueError, match="need stall_after"):
        fake.add_stream(reply(), stall_for=1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        fake.add_stream(reply(), chunk_size=0)
    with pytest.raises(ValueError, match="tokens_per_second"):
        fake.add_stream(reply(), tokens_per_second=0)
    with pytest.raises(ValueError, match="status"):
        fake.add_error(101)
    with pytest.raises(ValueError, match="content-length"):
        fake.add_response(200, b"x", headers={"Content-Length": "5"})
    with pytest.raises(ValueError, match="error_after"):
        fake.add_stream(reply(), error_after=(-1, "api_error", "x"))
    with pytest.raises(FileNotFoundError):
        fake.add_stream(FIXTURES / "missing.sse")
    assert fake.pending == 1


async def test_a_default_of_the_wrong_type_fails_loudly(fake: testing.FakeAnthropic) -> None:
    fake.default = lambda request: "text"  # type: ignore[assignment,return-value]
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http:
        with pytest.raises(TypeError, match="expected a Reply"):
            await http.post("/v1/messages", json=BODY)


async def test_many_streams_run_concurrently_in_memory(fake: testing.FakeAnthropic) -> None:
    for _ in range(20):
        fake.add_stream(reply(), tokens_per_second=50)  # 4 deltas: about 80 ms each
    started = time.monotonic()
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http:
        bodies = await asyncio.gather(*(fetch(http) for _ in range(20)))

    assert all(data == reply().to_sse() for _, data in bodies)
    assert time.monotonic() - started < 1.0  # not 20 x 80 ms


async def test_closing_from_another_task_while_one_reads(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(reply(), stall_after=10)
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http:
        request = http.build_request("POST", "/v1/messages", json=BODY)
        response = await http.send(request, stream=True)
        reader = asyncio.create_task(response.aread())
        await asyncio.sleep(0.02)

        await response.aclose()

        assert (fake.open_streams, fake.disconnects) == (0, 1)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader


async def test_pacing_puts_each_delta_at_the_start_of_a_chunk(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(reply(), chunk_size=50, tokens_per_second=1000)
    async with (
        httpx.AsyncClient(transport=fake.transport, base_url="http://fake.test") as http,
        http.stream("POST", "/v1/messages", json=BODY) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_raw()]

    assert b"".join(chunks) == reply().to_sse()
    assert all(len(chunk) <= 50 for chunk in chunks)
    starts = [c for c in chunks if c.startswith(b"event: content_block_delta\ndata: {")]
    assert len(starts) == 4
    assert {len(c) for c in starts} == {50}


def test_echo_is_a_value() -> None:
    assert testing.echo == testing.Echo()
    assert testing.Echo("A: ", tokens_per_second=5).prefix == "A: "
    with pytest.raises(AttributeError):
        testing.echo.prefix = "changed"  # type: ignore[misc]
