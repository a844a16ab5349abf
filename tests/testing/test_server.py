"""The loopback server: concurrency, keep-alive, disconnects, shutdown, bad requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from anthropic_rx import testing

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Hi"}],
}
REQUEST = json.dumps(BODY).encode()


@contextlib.asynccontextmanager
async def raw_connection(
    base_url: str,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A plain TCP connection to the server, closed on exit."""
    url = urlsplit(base_url)
    assert url.hostname is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def post_bytes(body: bytes = REQUEST, path: str = "/v1/messages") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def test_base_url_is_loopback_with_a_free_port() -> None:
    fake = testing.FakeAnthropic()
    async with fake.serve() as first, fake.serve() as second:
        assert first.startswith("http://127.0.0.1:")
        assert first != second
        async with httpx.AsyncClient() as http:
            for url in (first, second):
                assert (await http.post(f"{url}/v1/messages", json=BODY)).status_code == 200
    assert fake.connections == 2


async def test_fifty_concurrent_streams_over_one_server() -> None:
    fake = testing.FakeAnthropic()
    replies = [testing.Reply(id=f"msg_{n}").text(*[f"w{n} "] * 10) for n in range(50)]
    for reply in replies:
        fake.add_stream(reply, tokens_per_second=200)  # 10 deltas: at least 50 ms each

    async def fetch(http: httpx.AsyncClient) -> bytes:
        async with http.stream("POST", "/v1/messages", json=BODY) as response:
            assert response.status_code == 200
            return await response.aread()

    started = time.monotonic()
    async with (
        fake.serve() as base_url,
        httpx.AsyncClient(
            base_url=base_url, limits=httpx.Limits(max_connections=100), timeout=10.0
        ) as http,
    ):
        bodies = await asyncio.gather(*(fetch(http) for _ in range(50)))
        elapsed = time.monotonic() - started

    assert sorted(bodies) == sorted(reply.to_sse() for reply in replies)
    assert elapsed < 2.0  # concurrent, not 50 x 50 ms
    assert fake.connections == 50
    assert (fake.open_streams, fake.disconnects, fake.pending) == (0, 0, 0)


async def test_keep_alive_reuses_one_connection() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("one")).add_error(529).add_stream(testing.text_reply("two"))

    async with fake.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
        first = await http.post("/v1/messages", json=BODY)
        second = await http.post("/v1/messages", json=BODY)
        third = await http.post("/v1/messages", json=BODY)

    assert first.headers["transfer-encoding"] == "chunked"
    assert b'"text":"one"' in first.content
    assert second.status_code == 529
    assert b'"text":"two"' in third.content
    assert fake.connections == 1


async def test_a_dropped_connection_is_not_reused() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("x"), disconnect_after=20).add_connection_error()

    async with fake.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/v1/messages", json=BODY)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/v1/messages", json=BODY)
        assert (await http.post("/v1/messages", json=BODY)).status_code == 200

    assert fake.connections == 3


async def test_server_notices_a_client_that_leaves_while_nothing_is_sent() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("x"), stall_after=0)

    async with fake.serve() as base_url:
        async with raw_connection(base_url) as (reader, writer):
            writer.write(post_bytes())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert fake.open_streams == 1
        await fake.wait_closed()
        assert fake.disconnects == 1


async def test_server_notices_a_client_that_leaves_during_latency() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("x"), latency=5.0)

    async with fake.serve() as base_url:
        async with raw_connection(base_url) as (_, writer):
            writer.write(post_bytes())
            await writer.drain()
            for _ in range(200):
                if fake.open_streams:
                    break
                await asyncio.sleep(0.005)
            assert fake.open_streams == 1
        await fake.wait_closed()
        assert fake.disconnects == 1


async def test_leaving_serve_ends_streaming_responses_and_closes_sockets() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("x"), stall_after=30)
    async with httpx.AsyncClient(timeout=5.0) as http:
        async with fake.serve() as base_url:
            request = http.build_request("POST", f"{base_url}/v1/messages", json=BODY)
            response = await http.send(request, stream=True)
            chunks = response.aiter_raw()
            first = await anext(chunks)
            assert len(first) == 30
            assert fake.open_streams == 1
        # The server is gone: the body ends broken, the count is back to zero.
        with pytest.raises(httpx.RemoteProtocolError):
            await anext(chunks)
        await response.aclose()

    assert (fake.open_streams, fake.disconnects) == (0, 0)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.post(f"{base_url}/v1/messages", json=BODY)


async def test_leaving_serve_closes_idle_keep_alive_connections() -> None:
    fake = testing.FakeAnthropic()
    async with contextlib.AsyncExitStack() as stack:
        async with fake.serve() as base_url:
            reader, writer = await stack.enter_async_context(raw_connection(base_url))
            writer.write(post_bytes())
            await reader.readuntil(b"0\r\n\r\n")  # the end of the chunked body
            assert fake.open_streams == 0
        # The server closed the connection it was keeping alive.
        assert await reader.read() == b""
    assert fake.connections == 1


async def test_a_request_that_is_not_http_gets_400() -> None:
    fake = testing.FakeAnthropic()
    async with fake.serve() as base_url, raw_connection(base_url) as (reader, writer):
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        answer = await reader.read()  # the server closes after answering
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert fake.requests == []


async def test_pipelined_requests_on_one_connection() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("one"), tokens_per_second=100)
    fake.add_stream(testing.text_reply("two"))
    async with fake.serve() as base_url, raw_connection(base_url) as (reader, writer):
        writer.write(post_bytes() + post_bytes())
        await writer.drain()
        first = await reader.readuntil(b"0\r\n\r\n")
        second = await reader.readuntil(b"0\r\n\r\n")

    assert b'"text":"one"' in first
    assert b'"text":"two"' in second
    assert [r.path for r in fake.requests] == ["/v1/messages", "/v1/messages"]
    assert fake.connections == 1


async def test_a_connection_error_closes_without_answering() -> None:
    fake = testing.FakeAnthropic()
    fake.add_connection_error()
    async with fake.serve() as base_url, raw_connection(base_url) as (reader, writer):
        writer.write(post_bytes())
        assert await reader.read() == b""
    assert len(fake.requests) == 1
