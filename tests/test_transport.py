"""The HTTP/1.1 transport, against raw servers on loopback that send exactly the bytes we choose."""

from __future__ import annotations

import asyncio
import re
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx._pools import _proxied
from anthropic_rx._transport import (
    _HIGH_WATER,
    StreamingTransport,
    UnsafeRequestError,
    _origin_of,
    _request_head,
    aiter_decoded,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback TCP server running ``handler`` for each connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self.closed_by_client = 0
        self.ended = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self.ended += 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request's head and body (by its Content-Length); ``None`` at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_by_client += 1
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@asynccontextmanager
async def serving(
    handler: Handler, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[RawServer, str]]:
    raw = RawServer(handler)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield (
            raw,
            f"{scheme}://127.0.0.1:{port}" if not ssl_context else f"{scheme}://localhost:{port}",
        )
    finally:
        server.close()
        await server.wait_closed()


def replying(*responses: bytes, keep_open: bool = True) -> Callable[[RawServer], Handler]:
    """A handler answering each request on a connection with the next of ``responses``."""

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for response in responses:
                if await raw.read_request(reader) is None:
                    return
                writer.write(response)
                await writer.drain()
            if keep_open:
                await raw.read_request(reader)

        return handler

    return make


@asynccontextmanager
async def server_of(
    make: Callable[[RawServer], Handler],
) -> AsyncIterator[tuple[RawServer, httpx.AsyncClient]]:
    holder: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(holder[0])(reader, writer)

    async with serving(handler) as (raw, url):
        holder.append(raw)
        async with httpx.AsyncClient(
            transport=StreamingTransport(), base_url=url, timeout=5.0
        ) as http:
            yield raw, http


def chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return body + b"0\r\n" + trailer + b"\r\n"


OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"


# --- framing -----------------------------------------------------------------------------------


async def test_content_length_body_and_request_bytes() -> None:
    async with server_of(replying(OK_HEAD + b"content-length: 5\r\n\r\nhello")) as (raw, http):
        response = await http.post("/v1/messages?x=1", content=b'{"a": 1}', headers={"k": "v"})
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["content-type"] == "text/plain"
    assert response.http_version == "HTTP/1.1"
    request = raw.requests[0]
    assert request.startswith(b"POST /v1/messages?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in request
    assert b"\r\nk: v\r\n" in request
    assert b"\r\nContent-Length: 8\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a": 1}')


async def test_chunked_body_with_extensions_and_trailers() -> None:
    body = chunked(b"hel", b"lo ", b"world", trailer=b"x-trailer: 1\r\n").replace(
        b"3\r\nlo ", b"3;name=value\r\nlo "
    )
    response_bytes = OK_HEAD + b"transfer-encoding: chunked\r\n\r\n" + body
    async with server_of(replying(response_bytes, response_bytes)) as (raw, http):
        first = await http.post("/", content=b"")
        second = await http.post("/", content=b"")
    assert first.text == second.text == "hello world"
    assert raw.connections == 1  # kept alive across the trailers


async def test_body_until_close_when_there_is_no_length() -> None:
    response = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"
    async with server_of(replying(response, keep_open=False)) as (raw, http):
        first = await http.post("/", content=b"")
        second = await http.post("/", content=b"")
    assert first.text == second.text == "all of it"
    assert raw.connections == 2  # such a body ends the connection


async def test_no_body_for_204_and_head_and_informational_responses_skipped() -> None:
    responses = (
        b"HTTP/1.1 204 No Content\r\n\r\n",
        OK_HEAD + b"content-length: 100\r\n\r\n",  # HEAD: the length is not followed by a body
        b"HTTP/1.1 100 Continue\r\n\r\n" + OK_HEAD + b"content-length: 2\r\n\r\nok",
    )
    async with server_of(replying(*responses)) as (raw, http):
        assert (await http.post("/", content=b"")).content == b""
        assert (await http.head("/")).content == b""
        third = await http.post("/", content=b"")
    assert third.status_code == 200
    assert third.text == "ok"
    assert raw.connections == 1


async def test_bare_lf_heads_and_chunk_lines_are_accepted() -> None:
    response = b"HTTP/1.1 200 OK\ntransfer-encoding: chunked\n\n2\nok\n0\n\n"
    async with server_of(replying(response)) as (_, http):
        assert (await http.post("/", content=b"")).text == "ok"


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_cutting_of_the_response_bytes_gives_the_same_body(data: st.DataObject) -> None:
    pieces = data.draw(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6))
    response = OK_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunked(*pieces)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(response) - 1), max_size=12)))
    parts = [response[a:b] for a, b in zip([0, *cuts], [*cuts, len(response)], strict=True)]

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0)

        return handler

    async def run() -> bytes:
        async with server_of(make) as (_, http):
            return (await http.post("/", content=b"")).content

    assert asyncio.run(run()) == b"".join(pieces)


async def test_large_and_streamed_request_bodies_are_sent_whole() -> None:
    big = bytes(range(256)) * 40_000  # 10 MB: more than the socket takes at once

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await asyncio.sleep(0.05)  # a slow reader: the client must wait for the socket
                request = await raw.read_request(reader)
                if request is None:
                    return
                size = len(request.split(b"\r\n\r\n", 1)[1])
                body = str(size).encode()
                writer.write(OK_HEAD + b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()

        return handler

    async def pieces() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async with server_of(make) as (raw, http):
        assert (await http.post("/", content=big)).text == str(len(big))
        assert (await http.post("/", content=pieces())).text == "6"
    streamed = raw.requests[1]
    assert b"\r\nContent-Length: 6\r\n" in streamed
    assert b"transfer-encoding" not in streamed.lower()


async def test_a_request_the_server_does_not_read_times_out_writing() -> None:
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(3)  # never reads

        return handler

    async with server_of(make) as (_, http):
        with pytest.raises(httpx.WriteTimeout):
            await http.post("/", content=b"x" * 64_000_000, timeout=httpx.Timeout(5.0, write=0.2))


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (b"SMTP ready\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "invalid status line"),
        (OK_HEAD + b"bad header\r\n\r\n", "invalid header line"),
        (OK_HEAD + b"content-length: ten\r\n\r\n", "invalid content-length"),
        (OK_HEAD + b"transfer-encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (OK_HEAD + b"transfer-encoding: chunked\r\n\r\n-1\r\n", "invalid chunk size"),
        (OK_HEAD + b"transfer-encoding: chunked\r\n\r\n1_0\r\n", "invalid chunk size"),
        (OK_HEAD + b"transfer-encoding: chunked\r\n\r\n2\r\nokay\r\n", "longer than its size"),
        (OK_HEAD + b"x: " + b"a" * 70_000 + b"\r\n\r\n", "headers too long"),
        (OK_HEAD + b"transfer-encoding: chunked\r\n\r\n" + b"1" * 5000, "line too long"),
    ],
)
async def test_malformed_responses_are_remote_protocol_errors(
    response: bytes, message: str
) -> None:
    async with server_of(replying(response)) as (_, http):
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await http.post("/", content=b"")


async def test_bytes_after_a_complete_response_end_its_connection() -> None:
    stray = OK_HEAD + b"content-length: 2\r\n\r\nok\r\nextra\r\n"
    async with server_of(replying(stray, stray)) as (raw, http):
        assert (await http.post("/", content=b"")).text == "ok"
        assert (await http.post("/", content=b"")).text == "ok"
    assert raw.connections == 2  # what follows a response is no next response: not reused


async def test_disconnect_before_a_response_and_mid_body() -> None:
    async with server_of(replying(b"", keep_open=False)) as (_, http):
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post("/", content=b"")
    cut = OK_HEAD + b"content-length: 100\r\n\r\nonly part"
    async with server_of(replying(cut, keep_open=False)) as (_, http):
        async with http.stream("POST", "/", content=b"") as response:
            received: list[bytes] = []
            with pytest.raises(httpx.RemoteProtocolError, match="before the response ended"):
                await read_into(response, received)
    assert b"".join(received) == b"only part"  # what came before the cut is delivered first


async def read_into(response: httpx.Response, received: list[bytes]) -> None:
    async for chunk in response.aiter_raw():
        received.append(chunk)


async def test_connect_error_and_read_timeout() -> None:
    async with httpx.AsyncClient(transport=StreamingTransport()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post("http://127.0.0.1:9/", content=b"")

    def silent(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            await asyncio.sleep(5)

        return handler

    async with server_of(silent) as (_, http):
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/", content=b"", timeout=httpx.Timeout(5.0, read=0.1))


async def test_unsupported_scheme_and_closed_transport() -> None:
    transport = StreamingTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.UnsupportedProtocol):
            await http.get("ftp://127.0.0.1/")
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:9/"))


# --- connections -------------------------------------------------------------------------------


async def test_a_response_closed_early_closes_its_connection() -> None:
    big = OK_HEAD + b"content-length: 1000000\r\n\r\n" + b"x" * 1_000_000
    small = OK_HEAD + b"content-length: 2\r\n\r\nok"

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            writer.write(big if raw.connections == 1 else small)
            await writer.drain()
            await raw.read_request(reader)

        return handler

    async with server_of(make) as (raw, http):
        async with http.stream("POST", "/", content=b"") as response:
            async for _ in response.aiter_raw():
                break
        assert (await http.post("/", content=b"")).text == "ok"
        for _ in range(100):
            if raw.ended:
                break
            await asyncio.sleep(0.01)
        assert raw.ended == 1  # the cut connection is closed, the other still open
    assert raw.connections == 2  # the cut one was not reused


async def test_connection_closed_by_the_server_while_idle_is_not_reused() -> None:
    response = OK_HEAD + b"content-length: 2\r\nconnection: close\r\n\r\nok"
    async with server_of(replying(response, keep_open=False)) as (raw, http):
        for _ in range(3):
            assert (await http.post("/", content=b"")).text == "ok"
    assert raw.connections == 3


async def test_a_slow_reader_stops_the_socket_being_read() -> None:
    size = 20 * 1024 * 1024
    sent = asyncio.Event()

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            writer.write(OK_HEAD + b"content-length: %d\r\n\r\n" % size)
            writer.write(b"x" * size)
            try:
                async with asyncio.timeout(0.5):
                    await writer.drain()
                sent.set()
            except TimeoutError:
                pass  # the client stopped reading: the bytes wait in the server's buffer
            await raw.read_request(reader)

        return handler

    transport = StreamingTransport()
    async with serving(lambda r, w: handlers[0](r, w)) as (raw, url):
        handlers = [make(raw)]
        async with httpx.AsyncClient(transport=transport, base_url=url) as http:
            async with http.stream("POST", "/", content=b"") as response:
                await asyncio.sleep(0.7)  # read nothing
                (connection,) = transport._open
                assert connection._paused
                assert connection.parser.held <= _HIGH_WATER + 1024 * 1024  # one socket read past
                assert not sent.is_set()
                total = 0
                async for chunk in response.aiter_raw():
                    total += len(chunk)
    assert total == size


async def test_aclose_closes_idle_and_open_connections() -> None:
    response = OK_HEAD + b"transfer-encoding: chunked\r\n\r\n2\r\nok\r\n"  # never ends
    transport = StreamingTransport()
    async with serving(lambda r, w: handler(r, w)) as (raw, url):
        handler = replying(OK_HEAD + b"content-length: 2\r\n\r\nok", response)(raw)
        http = httpx.AsyncClient(transport=transport, base_url=url)
        await http.post("/", content=b"")
        response_cm = http.stream("POST", "/", content=b"")
        streamed = await response_cm.__aenter__()
        assert len(transport._open) == 1
        await http.aclose()
        assert not transport._open
        assert not any(transport._idle.values())
        with pytest.raises(httpx.HTTPError):
            async for _ in streamed.aiter_raw():
                pass


async def test_tls_with_the_given_context() -> None:
    trustme = pytest.importorskip("trustme", reason="trustme is in the test dependency group")
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(OK_HEAD + b"content-length: 6\r\n\r\nsecret")
        await writer.drain()
        await raw.read_request(reader)

    async with serving(handler, ssl_context=server_context) as (raw, url):
        transport = StreamingTransport(ssl_context=client_context)
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.post(url, content=b"")).text == "secret"
        async with httpx.AsyncClient(transport=StreamingTransport()) as http:
            with pytest.raises(httpx.ConnectError):  # not trusted by the default context
                await http.post(url, content=b"")


# --- the client's choice -----------------------------------------------------------------------


def test_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert not _proxied("https://api.anthropic.com")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert _proxied("https://api.anthropic.com")
    assert not _proxied("http://127.0.0.1:8080")
    monkeypatch.setenv("NO_PROXY", "api.anthropic.com")
    assert not _proxied("https://api.anthropic.com")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    assert _proxied("http://example.test")


async def test_the_client_uses_httpx_own_transport_behind_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("never"))
    async with fake.serve() as base_url, arx.Client(base_url=base_url, max_retries=0) as client:
        # The request goes to the (closed) proxy port, not to the fake: proxies are honoured.
        with pytest.raises(arx.APIConnectionError):
            await arx.final_message(client.stream(model="m", max_tokens=1, messages=[]))
    assert fake.requests == []


# --- the client over it: every ending leaves no connection open ---------------------------------

PARAMS: dict[str, Any] = {
    "model": "m",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


async def test_every_ending_of_a_client_stream_releases_its_connection() -> None:
    fake = testing.FakeAnthropic()
    slow = testing.text_reply(*(["tick "] * 200))
    async with fake.serve() as base_url, arx.Client(base_url=base_url, max_retries=0) as client:
        transport = client._pools.acquire()._transport
        assert isinstance(transport, StreamingTransport)

        async def text_of_reply() -> str:
            message = await arx.final_message(client.stream(**PARAMS))
            return "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))

        async def settled() -> None:
            for _ in range(200):
                if not transport._open:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"{len(transport._open)} connections still open")

        for _ in range(3):  # completed: the connection goes back to the pool and is reused
            fake.add_stream(testing.text_reply("a", "b"))
            assert await text_of_reply() == "ab"
            await settled()
        assert fake.connections == 1
        fake.add_stream(testing.text_reply("cut short"), truncate_after=120)
        with pytest.raises(arx.IncompleteStreamError):
            await arx.final_message(client.stream(**PARAMS))
        await settled()
        fake.add_error(529, "overloaded_error", "busy")
        with pytest.raises(arx.OverloadedError):
            await arx.final_message(client.stream(**PARAMS))
        await settled()
        fake.add_stream(slow, tokens_per_second=200)
        async for _ in arx.to_async_iterator(client.stream(**PARAMS)):
            break  # dispose mid-body: the connection is closed, not reused
        await settled()
        await fake.wait_closed()
        fake.add_stream(slow, tokens_per_second=200)
        task = asyncio.create_task(arx.final_message(client.stream(**PARAMS)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settled()
        fake.add_stream(testing.text_reply("after"))
        assert await text_of_reply() == "after"
        await settled()


async def test_an_answer_before_the_whole_request_was_read_is_taken_at_once() -> None:
    # A proxy refusing a request too large answers after its headers and stops reading.
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"type":"error","error":{"type":"request_too_large","message":"big"}}'
            writer.write(
                b"HTTP/1.1 413 Too Large\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            await asyncio.sleep(2)  # reads nothing more, closes nothing

        return handler

    loop = asyncio.get_running_loop()
    async with server_of(make) as (raw, http):
        started = loop.time()
        response = await http.post(
            "/", content=b"x" * 64_000_000, timeout=httpx.Timeout(10.0, write=5.0)
        )
        assert loop.time() - started < 1.5  # not after the write timeout
        assert response.status_code == 413
        assert b"request_too_large" in response.content
    assert raw.connections == 1


async def test_ipv6_loopback() -> None:
    try:
        server = await asyncio.start_server(lambda r, w: None, "::1", 0)
    except OSError:
        pytest.skip(reason="no IPv6 loopback on this machine")
    server.close()
    await server.wait_closed()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        host = [line for line in request.split(b"\r\n") if line.lower().startswith(b"host:")]
        writer.write(OK_HEAD + b"content-length: %d\r\n\r\n%s" % (len(host[0]), host[0]))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=StreamingTransport()) as http:
            response = await http.post(f"http://[::1]:{port}/", content=b"")
    finally:
        server.close()
        await server.wait_closed()
    assert response.text == f"Host: [::1]:{port}"


async def test_a_connection_of_a_closed_event_loop_is_closed_not_reused() -> None:
    # One transport used from successive event loops (one client behind several to_iterator
    # calls): the idle connection of a loop that is gone cannot be used from this one.
    response = OK_HEAD + b"content-length: 2\r\n\r\nok"
    transport = StreamingTransport()
    async with serving(lambda r, w: handler(r, w)) as (raw, url):
        handler = replying(response)(raw)

        async def on_its_own_loop() -> str:
            http = httpx.AsyncClient(transport=transport)  # not closed: the pool outlives it
            return (await http.post(url, content=b"")).text

        assert await asyncio.to_thread(asyncio.run, on_its_own_loop()) == "ok"
        assert raw.ended == 0  # kept alive in the pool, its loop closed
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.post(url, content=b"")).text == "ok"
        for _ in range(100):
            if raw.ended:
                break
            await asyncio.sleep(0.01)
    assert raw.connections == 2
    assert raw.ended >= 1  # the stale one was closed, not left open


async def test_a_body_closed_unread_does_not_leak_into_the_next_response() -> None:
    # The whole first body arrives, but its reader closes before taking it: the connection is
    # reusable (the response ended), and the next response must not start with its bytes.
    first = OK_HEAD + b"content-length: 5\r\n\r\nstale"
    second = OK_HEAD + b"content-length: 5\r\n\r\nfresh"
    async with server_of(replying(first, second)) as (raw, http):
        async with http.stream("POST", "/", content=b"") as response:
            await asyncio.sleep(0.05)  # the body is in, unread
        assert response.is_closed
        assert (await http.post("/", content=b"")).text == "fresh"
    assert raw.connections == 1


# --- request heads: no splitting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "message"),
    [
        ("GET", {"x": "a\r\nInjected: 1"}, "invalid value of header b'x'"),
        ("GET", {"x": "a\nInjected: 1"}, "invalid value"),
        ("GET", {"x": "a\rb"}, "invalid value"),
        ("GET", {"x": "a\x00b"}, "invalid value"),
        ("GET", {"x": " padded "}, "invalid value"),
        ("GET", {"bad name": "v"}, "invalid header name"),
        ("GET", {"x\r\nInjected": "v"}, "invalid header name"),
        ("GET", {"x:y": "v"}, "invalid header name"),
        ("GET", {"": "v"}, "invalid header name"),
        ("GET / HTTP/1.1\r\nX", {}, "invalid request method"),
        ("GET X", {}, "invalid request method"),
    ],
)
async def test_a_head_that_would_split_the_request_is_refused_unsent(
    method: str, headers: dict[str, str], message: str
) -> None:
    async with server_of(replying(OK_HEAD + b"content-length: 2\r\n\r\nok")) as (raw, http):
        with pytest.raises(UnsafeRequestError, match=re.escape(message)) as caught:
            await http.request(method, "/", headers=headers, content=b"")
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, httpx.LocalProtocolError)
        assert "Injected: 1" not in str(caught.value)  # a value is never quoted: it may be a key
        assert (await http.post("/", content=b"")).text == "ok"
    assert raw.requests == [raw.requests[0]]  # only the good request reached the server
    assert raw.connections == 1


def test_a_target_with_whitespace_is_refused() -> None:
    for target in (b"/a b", b"/a\r\nX: y", b"", b"/\x7f"):
        request = SimpleNamespace(
            method="GET", url=SimpleNamespace(raw_path=target), headers=httpx.Headers()
        )
        with pytest.raises(UnsafeRequestError, match="invalid request target"):
            _request_head(request, b"")  # type: ignore[arg-type]


async def test_a_wrong_content_length_header_does_not_desynchronise_the_connection() -> None:
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await raw.read_request(reader)) is not None:
                body = request.split(b"\r\n\r\n", 1)[1]
                writer.write(OK_HEAD + b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()

        return handler

    async with server_of(make) as (raw, http):
        short = await http.post("/", content=b"hello world", headers={"Content-Length": "2"})
        chunked_claim = await http.post(
            "/", content=b"second", headers={"Transfer-Encoding": "chunked"}
        )
        get = await http.get("/", headers={"Content-Length": "7"})
        after = await http.post("/", content=b"third")
    assert (short.text, chunked_claim.text, get.text, after.text) == (
        "hello world",
        "second",
        "",
        "third",
    )
    assert raw.connections == 1
    assert all(request.lower().count(b"content-length:") == 1 for request in raw.requests)
    assert b"transfer-encoding" not in b"".join(raw.requests).lower()
    assert b"\r\nContent-Length: 0\r\n" in raw.requests[2]


# --- responses over a socket -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (OK_HEAD + b"transfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "transfer"),
        (OK_HEAD + b"transfer-encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n", "transfer"),
        (
            OK_HEAD + b"transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n"
            b"content-length: 11\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "transfer",
        ),
        (OK_HEAD + b"transfer-encoding: identity\r\ncontent-length: 2\r\n\r\nok", "transfer"),
        (OK_HEAD + b"content-length: " + b"9" * 5000 + b"\r\n\r\n", "invalid content-length"),
        (b"HTTP/1.1 " + b"2" * 5000 + b" OK\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n", "101"),
        (OK_HEAD + b"x: a\x00b\r\ncontent-length: 0\r\n\r\n", "invalid header line"),
        (OK_HEAD + b"x: a\r\n folded\r\ncontent-length: 0\r\n\r\n", "obsolete line folding"),
        (b"HTTP/2.0 200 OK\r\ncontent-length: 0\r\n\r\n", "unsupported HTTP version"),
    ],
)
async def test_bad_framing_and_huge_numbers_fail_the_request(response: bytes, message: str) -> None:
    async with server_of(replying(response)) as (_, http):
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            async with asyncio.timeout(5):
                await http.post("/", content=b"")


async def test_a_trailer_section_that_never_ends_fails_the_request() -> None:
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            writer.write(OK_HEAD + b"transfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n")
            for _ in range(200):  # 200 KB of trailer lines, never a blank one
                writer.write(b"x-t: " + b"a" * 1000 + b"\r\n")
                await writer.drain()

        return handler

    async with server_of(make) as (_, http):
        with pytest.raises(httpx.RemoteProtocolError, match="trailers too long"):
            async with asyncio.timeout(5):
                await http.post("/", content=b"")


# --- reuse -------------------------------------------------------------------------------------


async def test_a_complete_body_closed_unread_sees_the_server_close_the_idle_connection() -> None:
    size = _HIGH_WATER + 1000  # the socket is paused only once the whole body is in

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw.read_request(reader)
            if raw.connections == 1:
                writer.write(OK_HEAD + b"content-length: %d\r\n\r\n" % size + b"x" * size)
                await writer.drain()
                await asyncio.sleep(0.1)
                return  # closes the connection, idle by then
            writer.write(OK_HEAD + b"content-length: 2\r\n\r\nok")
            await writer.drain()
            await raw.read_request(reader)

        return handler

    transport = StreamingTransport()
    async with serving(lambda r, w: handlers[0](r, w)) as (raw, url):
        handlers = [make(raw)]
        async with httpx.AsyncClient(transport=transport, base_url=url, timeout=5.0) as http:
            async with http.stream("POST", "/", content=b"") as response:
                (connection,) = transport._open
                await asyncio.sleep(0.2)  # the whole body arrives, unread
            await asyncio.sleep(0.3)  # the server closes the idle connection meanwhile
            assert (await http.post("/", content=b"")).text == "ok"
            assert connection.parser.complete  # it was complete: it went back to the pool
            assert connection.closed  # and the close was seen: its socket was read again
    assert response.is_closed
    assert raw.connections == 2


async def test_idle_connections_expire() -> None:
    response = OK_HEAD + b"content-length: 2\r\n\r\nok"
    async with serving(lambda r, w: handler(r, w)) as (raw, url):
        handler = replying(response, response, response)(raw)
        transport = StreamingTransport(keepalive_expiry=0.05)
        async with httpx.AsyncClient(transport=transport, base_url=url) as http:
            await http.post("/", content=b"")
            await http.post("/", content=b"")  # at once: reused
            assert raw.connections == 1
            await asyncio.sleep(0.15)
            await http.post("/", content=b"")  # idle too long: a new connection
    assert raw.connections == 2
    with pytest.raises(ValueError, match="keepalive_expiry"):
        StreamingTransport(keepalive_expiry=-1)


async def test_unasked_bytes_on_an_idle_connection_keep_it_from_reuse() -> None:
    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await raw.read_request(reader) is not None:
                writer.write(OK_HEAD + b"content-length: 2\r\n\r\nok")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")
                await writer.drain()

        return handler

    async with server_of(make) as (raw, http):
        assert (await http.post("/", content=b"")).text == "ok"
        await asyncio.sleep(0.15)
        assert (await http.post("/", content=b"")).text == "ok"
    assert raw.connections == 2


# --- the pool's limit --------------------------------------------------------------------------


async def test_connections_per_origin_are_capped_and_requests_wait_for_one() -> None:
    release = asyncio.Event()

    def make(raw: RawServer) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await raw.read_request(reader) is not None:
                await release.wait()
                writer.write(OK_HEAD + b"content-length: 2\r\n\r\nok")
                await writer.drain()

        return handler

    transport = StreamingTransport(max_connections_per_origin=2)
    async with serving(lambda r, w: handlers[0](r, w)) as (raw, url):
        handlers = [make(raw)]
        async with httpx.AsyncClient(transport=transport, base_url=url, timeout=5.0) as http:
            tasks = [asyncio.create_task(http.post("/", content=b"")) for _ in range(5)]
            await asyncio.sleep(0.2)
            assert raw.connections == 2
            assert len(raw.requests) == 2  # the others wait for a connection
            with pytest.raises(httpx.PoolTimeout):
                await http.post("/", content=b"", timeout=httpx.Timeout(5.0, pool=0.1))
            release.set()
            async with asyncio.timeout(5):
                responses = await asyncio.gather(*tasks)
    assert [response.text for response in responses] == ["ok"] * 5
    assert raw.connections == 2
    assert not transport._counts
    with pytest.raises(ValueError, match="at least 1"):
        StreamingTransport(max_connections_per_origin=0)


async def test_a_failed_connect_frees_its_slot() -> None:
    transport = StreamingTransport(max_connections_per_origin=1)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, pool=0.5)) as http:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await http.post("http://127.0.0.1:9/", content=b"")
    assert not transport._counts


# --- hosts and TLS -----------------------------------------------------------------------------


def test_the_host_is_the_ascii_form_of_the_url() -> None:
    assert _origin_of(httpx.URL("https://bücher.example/v1")) == (
        "https",
        "xn--bcher-kva.example",
        443,
    )
    assert _origin_of(httpx.URL("http://[::1]:8080/")) == ("http", "::1", 8080)
    with pytest.raises(httpx.UnsupportedProtocol):
        _origin_of(httpx.URL("ftp://example.test/"))


async def test_tls_offers_alpn_http_1_1() -> None:
    trustme = pytest.importorskip("trustme", reason="trustme is in the test dependency group")
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    server_context.set_alpn_protocols(["h2", "http/1.1"])
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    chosen: list[str | None] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chosen.append(writer.get_extra_info("ssl_object").selected_alpn_protocol())
        await raw.read_request(reader)
        writer.write(OK_HEAD + b"content-length: 2\r\n\r\nok")
        await writer.drain()
        await raw.read_request(reader)

    async with serving(handler, ssl_context=server_context) as (raw, url):
        transport = StreamingTransport(ssl_context=client_context)
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.post(url, content=b"")).text == "ok"
    assert chosen == ["http/1.1"]


# --- memory: compressed bodies -----------------------------------------------------------------


def gzipped_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + compressor.flush()


async def test_a_gzip_bomb_is_decoded_in_bounded_pieces_for_a_slow_consumer() -> None:
    size = 64 * 1024 * 1024
    bomb = gzipped_zeros(size)
    assert len(bomb) * 900 < size  # inflates about a thousandfold
    response_bytes = (
        OK_HEAD + b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(bomb) + bomb
    )
    async with server_of(replying(response_bytes)) as (_, http):
        tracemalloc.start()
        try:
            total = 0
            largest = 0
            async with http.stream("POST", "/", content=b"") as response:
                async for piece in aiter_decoded(response):
                    total += len(piece)
                    largest = max(largest, len(piece))
                    assert not any(piece[:16])
                    await asyncio.sleep(0)  # a consumer slower than the socket
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == size
    assert largest <= 64 * 1024
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "identity", "unknown"])
async def test_decoded_bodies_match_httpx(coding: str) -> None:
    text = b"hello, streamed world " * 5000
    if coding == "gzip":
        encoded = zlib.compress(text, wbits=zlib.MAX_WBITS | 16)
    elif coding == "deflate":
        encoded = zlib.compress(text)
    elif coding == "raw-deflate":
        encoded = zlib.compress(text, wbits=-zlib.MAX_WBITS)
    else:
        encoded = text
    name = b"deflate" if coding == "raw-deflate" else coding.encode()
    response_bytes = OK_HEAD + b"content-encoding: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        name,
        len(encoded),
        encoded,
    )
    async with server_of(replying(response_bytes, response_bytes)) as (_, http):
        async with http.stream("POST", "/", content=b"") as response:
            ours = b"".join([piece async for piece in aiter_decoded(response)])
        theirs = (await http.post("/", content=b"")).content
    assert ours == theirs == text


async def test_a_corrupt_compressed_body_is_a_decoding_error() -> None:
    encoded = zlib.compress(b"x" * 1000, wbits=zlib.MAX_WBITS | 16)
    corrupt = encoded[:10] + b"\xff" * 20 + encoded[30:]
    response_bytes = OK_HEAD + b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (
        len(corrupt),
        corrupt,
    )
    async with server_of(replying(response_bytes)) as (_, http):
        async with http.stream("POST", "/", content=b"") as response:
            with pytest.raises(httpx.DecodingError) as caught:
                async for _ in aiter_decoded(response):
                    pass
    assert caught.value.request is response.request


async def test_large_raw_pieces_are_handed_out_64_kib_at_most() -> None:
    size = 3 * 1024 * 1024
    response_bytes = OK_HEAD + b"content-length: %d\r\n\r\n" % size + b"y" * size
    async with server_of(replying(response_bytes)) as (_, http):
        async with http.stream("POST", "/", content=b"") as response:
            await asyncio.sleep(0.2)  # let a lot pile up unread
            sizes = [len(piece) async for piece in response.aiter_raw()]
    assert sum(sizes) == size
    assert max(sizes) <= 64 * 1024
