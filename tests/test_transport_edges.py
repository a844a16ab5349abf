"""The transport at its edges: requests waiting for a connection that are cancelled, woken on
another event loop, or outlive the transport; a connect that times out; a server that cuts a
request still being written; codings decoded through httpx's registry by the bounded path."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from httpx._decoders import SUPPORTED_DECODERS, ContentDecoder

from anthropic_rx._transport import StreamingTransport, _origin_of, aiter_decoded
from tests.test_transport import OK_HEAD, Handler, RawServer, replying, server_of, serving

WAIT = 5.0
PARTIAL = OK_HEAD + b"content-length: 10\r\n\r\n12345"  # a body that never ends on its own
WHOLE = OK_HEAD + b"content-length: 2\r\n\r\nok"


def answering(response: bytes) -> Handler:
    """A handler answering every request on a connection with ``response``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reading = RawServer(handler)  # its request reader only
        while await reading.read_request(reader) is not None:
            writer.write(response)
            await writer.drain()

    return handler


@asynccontextmanager
async def one_slot(response: bytes) -> AsyncIterator[tuple[StreamingTransport, str]]:
    """A transport allowed one connection per origin, and a server answering ``response``."""
    transport = StreamingTransport(max_connections_per_origin=1)
    async with serving(answering(response)) as (_, url):
        try:
            yield transport, url
        finally:
            await transport.aclose()


def get(url: str, **timeouts: float | None) -> httpx.Request:
    timeout = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": None, **timeouts}
    return httpx.Request("POST", url + "/", content=b"", extensions={"timeout": timeout})


async def waiting_for_a_slot(transport: StreamingTransport, url: str, count: int) -> None:
    """Until ``count`` requests wait for a connection of ``url``'s origin (bounded)."""
    origin = _origin_of(httpx.URL(url))
    async with asyncio.timeout(WAIT):
        while len(transport._waiters.get(origin, ())) < count:  # noqa: ASYNC110 - a queue's length
            await asyncio.sleep(0.005)


# --- waiting for a connection ----------------------------------------------------------------


@pytest.mark.parametrize("order", ["cancelled, then freed", "freed, then cancelled"])
async def test_a_request_cancelled_while_waiting_for_a_connection_passes_its_turn_on(
    order: str,
) -> None:
    """Whether the waiting request is cancelled before the slot is freed or after it was
    woken for it, the next request in line gets the slot (it would wait forever else: its
    pool timeout is ``None``)."""
    async with one_slot(PARTIAL) as (transport, url):
        holder = await transport.handle_async_request(get(url))
        second = asyncio.create_task(transport.handle_async_request(get(url)))
        await waiting_for_a_slot(transport, url, 1)
        third = asyncio.create_task(transport.handle_async_request(get(url)))
        await waiting_for_a_slot(transport, url, 2)
        # In one turn of the loop, so the two happen in the order named.
        if order == "cancelled, then freed":
            second.cancel()
            await holder.aclose()  # its body is cut: the connection closes, its slot frees
        else:
            await holder.aclose()
            second.cancel()
        async with asyncio.timeout(WAIT):
            with pytest.raises(asyncio.CancelledError):
                await second
            response = await third
        assert response.status_code == 200
        await response.aclose()
    assert not transport._counts and not any(transport._waiters.values())


async def test_requests_waiting_for_a_connection_fail_when_the_transport_closes() -> None:
    async with one_slot(PARTIAL) as (transport, url):
        holder = await transport.handle_async_request(get(url))
        waiting = [asyncio.create_task(transport.handle_async_request(get(url))) for _ in range(3)]
        await waiting_for_a_slot(transport, url, 3)
        await transport.aclose()  # the held connection closed, every waiter woken to fail
        async with asyncio.timeout(WAIT):
            for task in waiting:
                with pytest.raises(RuntimeError, match="the transport is closed"):
                    await task
        await holder.aclose()


async def test_a_request_waiting_on_another_event_loop_is_woken_when_a_slot_frees() -> None:
    """One transport, two event loops (a bridge's thread): a slot freed on one loop wakes
    the request waiting for it on the other, through that loop."""
    async with one_slot(PARTIAL) as (transport, url):
        holder = await transport.handle_async_request(get(url))
        result: list[Any] = []

        def other_loop() -> None:
            async def run() -> int:
                response = await transport.handle_async_request(get(url))
                await response.aclose()
                return response.status_code

            try:
                result.append(asyncio.run(asyncio.wait_for(run(), WAIT)))
            except BaseException as exc:  # reported by the assertion below
                result.append(exc)

        thread = threading.Thread(target=other_loop)
        thread.start()
        try:
            await waiting_for_a_slot(transport, url, 1)
            await holder.aclose()
        finally:
            await asyncio.to_thread(thread.join, WAIT)
        assert result == [200]


async def test_a_waiter_whose_event_loop_was_closed_is_passed_over() -> None:
    """A request left waiting on a loop that was closed under it (not by ``asyncio.run``,
    which cancels its tasks first) cannot be woken: the slot goes to the next in line."""
    async with one_slot(PARTIAL) as (transport, url):
        holder = await transport.handle_async_request(get(url))
        origin = _origin_of(httpx.URL(url))

        left: list[asyncio.Task[httpx.Response]] = []

        def abandoned_loop() -> None:
            loop = asyncio.new_event_loop()
            left.append(loop.create_task(transport.handle_async_request(get(url))))

            async def registered() -> None:
                while not transport._waiters.get(origin):  # noqa: ASYNC110 - a queue's length
                    await asyncio.sleep(0.005)

            loop.run_until_complete(asyncio.wait_for(registered(), WAIT))
            loop.close()  # its task still waits for a slot

        await asyncio.to_thread(abandoned_loop)
        assert not left[0].done()  # still waiting, on a loop that will never run it
        after = asyncio.create_task(transport.handle_async_request(get(url)))
        await waiting_for_a_slot(transport, url, 2)
        await holder.aclose()
        async with asyncio.timeout(WAIT):
            response = await after
        assert response.status_code == 200
        await response.aclose()


# --- connecting and writing ------------------------------------------------------------------


@contextmanager
def backlog_full() -> Iterator[int]:
    """A loopback port whose accept queue is full: a new connect gets no answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):  # backlog 0 admits one or two: more than enough to fill it
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_connect_that_gets_no_answer_is_a_connect_timeout_and_frees_its_slot() -> None:
    transport = StreamingTransport(max_connections_per_origin=1)
    with backlog_full() as port:
        url = f"http://127.0.0.1:{port}"
        for _ in range(2):  # the slot of the first is free for the second
            async with asyncio.timeout(WAIT):
                with pytest.raises(httpx.ConnectTimeout, match="timed out connecting"):
                    await transport.handle_async_request(get(url, connect=0.2))
    assert not transport._counts
    await transport.aclose()


async def test_a_server_cutting_a_request_still_being_written_fails_it_at_once() -> None:
    """No write timeout: without the cut ending the wait to send the rest, it never ends."""

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()  # a reset, the body unread

    transport = StreamingTransport()
    async with serving(cut) as (raw, url):
        request = httpx.Request(
            "POST",
            url + "/",
            content=b"x" * (32 * 1024 * 1024),
            extensions={"timeout": {"connect": 5.0, "read": None, "write": None, "pool": None}},
        )
        async with asyncio.timeout(WAIT):
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await transport.handle_async_request(request)
    assert raw.connections == 1
    assert not transport._counts
    await transport.aclose()


# --- codings from httpx's registry -------------------------------------------------------------


class Tripling(ContentDecoder):
    """A coding for the test: each byte stands for three of itself; the last byte seen is
    held back until ``flush`` (as a real decoder holds an unfinished block)."""

    def __init__(self) -> None:
        self.held = b""
        self.inputs: list[int] = []

    def decode(self, data: bytes) -> bytes:
        self.inputs.append(len(data))
        data, self.held = self.held + data[:-1], data[-1:]
        return bytes(b for b in data for _ in range(3))

    def flush(self) -> bytes:
        out, self.held = bytes(b for b in self.held for _ in range(3)), b""
        return out


@pytest.fixture
def tripling(monkeypatch: pytest.MonkeyPatch) -> list[Tripling]:
    """``x-tripling`` registered with httpx (as brotli and zstd are, when installed)."""
    made: list[Tripling] = []

    def make() -> Tripling:
        made.append(Tripling())
        return made[-1]

    monkeypatch.setitem(SUPPORTED_DECODERS, "x-tripling", make)
    return made


async def test_another_httpx_coding_is_decoded_fed_1_kib_at_a_time(
    tripling: list[Tripling],
) -> None:
    body = bytes(range(256)) * 400  # 100 KiB, 300 KiB decoded
    response = OK_HEAD + b"content-encoding: x-tripling\r\ncontent-length: %d\r\n\r\n" % len(body)
    async with server_of(replying(response + body)) as (_, http):
        async with http.stream("POST", "/", content=b"") as streamed:
            pieces = [piece async for piece in aiter_decoded(streamed)]
    assert b"".join(pieces) == bytes(b for b in body for _ in range(3))
    assert max(len(piece) for piece in pieces) <= 64 * 1024
    assert pieces[-1] == bytes([body[-1]]) * 3  # what the decoder held came at the flush
    [decoder] = tripling
    assert max(decoder.inputs) <= 1024  # each output is bounded by its input's size


async def test_a_coding_under_gzip_is_flushed_through_the_stages_after_it(
    tripling: list[Tripling],
) -> None:
    """``x-tripling, gzip``: gzip undone first, then the tripling; the byte the inner coding
    held comes out of its flush, after gzip's."""
    import zlib

    inner = b"abc" * 1000
    body = zlib.compress(inner, wbits=zlib.MAX_WBITS | 16)
    head = OK_HEAD + b"content-encoding: x-tripling, gzip\r\ncontent-length: %d\r\n\r\n"
    async with server_of(replying(head % len(body) + body)) as (_, http):
        async with http.stream("POST", "/", content=b"") as streamed:
            decoded = b"".join([piece async for piece in aiter_decoded(streamed)])
    assert decoded == bytes(b for b in inner for _ in range(3))
