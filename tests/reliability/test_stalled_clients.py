"""One reply to a hundred SSE clients, ten of which stop reading.

The reply streams live from the fake API (paced) through ``MemoryBroadcaster.publish``; every
client is a raw socket on ``GET /stream`` (``sse_response(hub.subscribe(...), send_timeout=1)``).
Ten of them never call ``recv`` after the request: their kernel buffers fill (the server's
listening socket has a small send buffer, so the accepted ones do too, and each stalled client
a small receive buffer), and from then on every send to them waits. Then:

- the other 90 readers get the whole text and one ``done`` frame, ids strictly increasing;
- the stalled ones never slow the publisher: it ends as fast as with no stalled client at all
  (within :data:`PUBLISH_SLACK` seconds of the paced reply's own length);
- each stalled one is dropped within ``send_timeout`` (1 s) of its last progress, up to 1.25
  times it, plus scheduling slack: all are gone :data:`DROP_WITHIN` seconds after the reply;
- memory stays bounded: every subscription holds at most ``hub.buffer`` entries, and the
  process's RSS grows by at most :data:`RSS_BOUND_KIB` over the whole run;
- each stalled client then reads what its socket held, reconnects with ``Last-Event-ID`` set to
  the last id it got, and ends with the whole text: no duplicate id, no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import anthropic_rx as arx
from anthropic_rx import sinks, testing

from ..sinks._server import Frame, RawClient, data_frames, parse_sse
from ._common import API_KEY, PARAMS, SOAK, need_proc, rss_kib

CLIENTS = 300 if SOAK else 100
STALLED = CLIENTS // 10
DELTAS = 100
DELTA = "x" * 2_499 + " "  # about 2.5 KB a frame: 250 KB a client
TOKENS_PER_SECOND = 200.0  # the reply lasts half a second
SEND_TIMEOUT = 1.0
DROP_WITHIN = SEND_TIMEOUT * 1.25 + 1.5
PUBLISH_SLACK = 0.5
RSS_BOUND_KIB = 64 * 1024
WAIT = 15.0
CHANNEL = "conversation.fanout"
WHOLE = DELTA * DELTAS


def app_for(hub: sinks.MemoryBroadcaster) -> Starlette:
    async def stream(request: Request) -> Response:
        replay = hub.subscribe(CHANNEL, last_event_id=request.headers.get("last-event-id"))
        return sinks.sse_response(replay, send_timeout=SEND_TIMEOUT, ping=5.0)

    return Starlette(routes=[Route("/stream", stream)])


@contextlib.asynccontextmanager
async def serve_small_buffers(app: Starlette) -> AsyncIterator[int]:
    """Serve ``app`` on a listening socket whose accepted sockets have a 16 KiB send buffer
    (set on the listener, they inherit it), so a client that stops reading blocks the server's
    sends after a few frames rather than after megabytes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        http="h11",
        ws="none",
        backlog=1024,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(6):
            await task
        listener.close()


def texts(frames: list[Frame]) -> str:
    return "".join(
        json.loads(f.data)["text"] for f in data_frames(frames) if f.event is None and f.data
    )


async def read_all(client: RawClient) -> list[Frame]:
    async with asyncio.timeout(WAIT):
        await client.read_head()
        while not client.ended:
            await client.read_some()
    return parse_sse(client.body)


async def stalled_request(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def drain(sock: socket.socket) -> bytes:
    """What a dropped client's socket still holds, up to the server's end (or reset)."""
    sock.setblocking(True)
    sock.settimeout(2.0)
    received = bytearray()
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            received += chunk
    return bytes(received)


def dechunk(raw: bytes) -> tuple[int, bytes]:
    """The status and the de-chunked body of a raw response, as far as it is complete."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    body = bytearray()
    while True:
        size_line, found, after = rest.partition(b"\r\n")
        if not found or not size_line:
            break
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0 or len(after) < size + 2:
            if size:
                body += after[:size]  # a chunk cut by the drop: what of it arrived
            break
        body += after[:size]
        rest = after[size + 2 :]
    return status, bytes(body)


@dataclass
class Run:
    published_after: float
    dropped_after: float
    held: list[int]
    buffered_peak: int
    rss_before: int
    rss_peak: int


async def fan_out(stalled_count: int) -> Run:
    """One reply to :data:`CLIENTS` clients, ``stalled_count`` of them stalled; checks what
    each client got and returns the figures."""
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*([DELTA] * DELTAS)), tokens_per_second=TOKENS_PER_SECOND)
    hub = sinks.MemoryBroadcaster()
    rss_before = rss_kib()
    peak = rss_before
    buffered_peak = 0
    stalled: list[socket.socket] = []
    readers: list[RawClient] = []
    held: list[int] = []
    try:
        async with (
            arx.Client(transport=fake.transport, api_key=API_KEY, max_retries=0) as client,
            serve_small_buffers(app_for(hub)) as port,
        ):
            publishing = await hub.start(CHANNEL, client.stream(**PARAMS))
            started = time.monotonic()
            stalled += [await stalled_request(port) for _ in range(stalled_count)]
            readers += [
                await RawClient.open(port, "/stream") for _ in range(CLIENTS - stalled_count)
            ]
            reading = [asyncio.create_task(read_all(reader)) for reader in readers]

            async def watch() -> None:
                nonlocal peak, buffered_peak
                while True:
                    peak = max(peak, rss_kib())
                    buffered_peak = max([buffered_peak, *hub.buffered(CHANNEL)])
                    await asyncio.sleep(0.1)

            watching = asyncio.create_task(watch())
            try:
                async with asyncio.timeout(WAIT):
                    message = await publishing
                published_after = time.monotonic() - started
                async with asyncio.timeout(WAIT):
                    results = await asyncio.gather(*reading)
                # Only the stalled subscriptions are left; each goes within send_timeout.
                async with asyncio.timeout(DROP_WITHIN + WAIT):
                    while hub.buffered(CHANNEL):  # noqa: ASYNC110 - a plain count, no event
                        await asyncio.sleep(0.02)
                dropped_after = time.monotonic() - started - published_after
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
            assert message is not None and message.stop_reason == "end_turn"
            for frames in results:
                assert texts(frames) == WHOLE
                ids = [int(f.id) for f in data_frames(frames) if f.id is not None]
                assert ids == sorted(set(ids))
                assert [f.event for f in data_frames(frames) if f.event] == ["done"]
            # The stalled clients read what they hold, then resume from its last id.
            for sock in stalled:
                status, body = dechunk(await asyncio.to_thread(drain, sock))
                assert status == 200
                frames = parse_sse(body, complete=False)
                got = data_frames(frames)
                assert all(f.event is None for f in got)  # dropped before the end
                last_id = next((f.id for f in reversed(got) if f.id is not None), None)
                headers = {"Last-Event-ID": last_id} if last_id is not None else {}
                again = await RawClient.open(port, "/stream", headers=headers)
                readers.append(again)
                rest = await read_all(again)
                ids = [int(f.id) for f in got + data_frames(rest) if f.id is not None]
                assert ids == sorted(set(ids)), "a duplicate or out-of-order id"
                assert texts(frames) + texts(rest) == WHOLE
                assert [f.event for f in data_frames(rest) if f.event] == ["done"]
                held.append(len(got))
        await fake.wait_closed()
    finally:
        for sock in stalled:
            sock.close()
        for reader in readers:
            await reader.close()
    assert buffered_peak <= hub.buffer
    return Run(published_after, dropped_after, held, buffered_peak, rss_before, peak)


async def test_a_hundred_clients_ten_stalled_bounded_dropped_and_resumed() -> None:
    need_proc()
    # The same reply to a hundred readers first: how long publishing takes on this machine
    # when the event loop serves a hundred sockets.
    control = await fan_out(0)
    run = await fan_out(STALLED)
    assert run.published_after <= control.published_after * 1.5 + PUBLISH_SLACK, (
        control.published_after,
        run.published_after,
    )
    assert run.dropped_after <= DROP_WITHIN, run.dropped_after
    assert run.rss_peak - run.rss_before <= RSS_BOUND_KIB, (run.rss_before, run.rss_peak)
    print(
        f"{CLIENTS} clients, {STALLED} stalled, {len(WHOLE)} characters each: published in "
        f"{run.published_after:.2f} s (no stalled client: {control.published_after:.2f} s), "
        f"the stalled dropped {run.dropped_after:.2f} s after; frames each held before its "
        f"drop: {run.held}; subscription buffer peak {run.buffered_peak}/1024; RSS "
        f"{run.rss_before} -> peak {run.rss_peak} KiB ({run.rss_peak - run.rss_before:+d})"
    )
