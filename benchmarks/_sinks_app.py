"""The app under test of the sinks benchmark: ``python -m benchmarks._sinks_app``.

A Starlette app served by uvicorn on ``127.0.0.1`` in its own process (it prints ``PORT <n>``
once listening and serves until stdin closes). Routes:

- ``GET /floor?n=N``: the hand-written floor, a bare ``StreamingResponse`` writing N
  pre-encoded ``id:``/``data: {"text": ...}`` frames and a ``done`` frame;
- ``GET /sse?n=N``: ``sinks.sse_response(format="text")`` over the same reply's events, already
  parsed (the sink's own cost: framing, ids, terminal frame, pings, sse-starlette);
- ``GET /floor-paced?n=N``, ``GET /sse-paced?n=N``: the same two, the source handing over
  one event per turn of the event loop (as a source at a model's pace does: every frame its
  own send, nothing to batch);
- ``GET /sse-bytes?n=N``: the same over ``arx.from_sse_bytes`` of the reply's bytes (the whole
  path from upstream bytes, as a relay runs it);
- ``POST /publish?n=N&rate=R``: starts ``hub.publish`` of a reply of N deltas paced at R deltas
  a second on a ``MemoryBroadcaster``; its first event waits for ``POST /go``. Each delta's text
  is the ``time.monotonic_ns()`` at which it was published, so a reader in another process (same
  clock) measures the added latency;
- ``GET /sub``: ``sinks.sse_response(hub.subscribe(...))``, the fan-out (``POST /go?freeze=1``
  first moves the objects the process holds, the open responses among them, out of the
  garbage collector's reach with ``gc.freeze()``);
- ``GET /cpu``, ``GET /rss``: the process's CPU seconds and resident memory.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import sys
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

CHANNEL = "bench"


def reply_events(n: int) -> list[dict[str, Any]]:
    """The wire events of a text reply of ``n`` deltas, about four characters each."""
    from anthropic_rx import testing

    return testing.text_reply(*(f"w{i % 100:02d} " for i in range(n))).events()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def app() -> object:
    import reactivex
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    import anthropic_rx as arx
    from anthropic_rx import sinks, testing

    parsed: dict[int, list[arx.MessageStreamEvent]] = {}
    raw: dict[int, bytes] = {}
    frames: dict[int, list[bytes]] = {}

    def prepare(n: int) -> None:
        if n in parsed:
            return
        wire = reply_events(n)
        parsed[n] = [arx.parse_event(json.dumps(event)) for event in wire]
        raw[n] = testing.sse_bytes(wire)
        texts = [e["delta"]["text"] for e in wire if e["type"] == "content_block_delta"]
        frames[n] = [
            b"id: %d\ndata: %s\n\n" % (i, json.dumps({"text": text}).encode())
            for i, text in enumerate(texts)
        ] + [b'id: %d\nevent: done\ndata: {"stop_reason": "end_turn"}\n\n' % len(texts)]

    async def floor(request: Request) -> Response:
        n = int(request.query_params["n"])
        prepare(n)

        async def body() -> AsyncIterator[bytes]:
            for frame in frames[n]:
                yield frame

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def floor_paced(request: Request) -> Response:
        n = int(request.query_params["n"])
        prepare(n)

        async def body() -> AsyncIterator[bytes]:
            for frame in frames[n]:
                await asyncio.sleep(0)  # one frame per turn of the loop, as at a model's pace
                yield frame

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def sse_paced(request: Request) -> Response:
        n = int(request.query_params["n"])
        prepare(n)

        async def one_at_a_time() -> AsyncIterator[arx.MessageStreamEvent]:
            for event in parsed[n]:
                await asyncio.sleep(0)
                yield event

        return sinks.sse_response(arx.from_async_iterable(one_at_a_time()), format="text")

    async def sse(request: Request) -> Response:
        n = int(request.query_params["n"])
        prepare(n)
        return sinks.sse_response(reactivex.from_iterable(parsed[n]), format="text")

    async def sse_bytes(request: Request) -> Response:
        n = int(request.query_params["n"])
        prepare(n)
        return sinks.sse_response(arx.from_sse_bytes(raw[n]), format="text")

    hub = sinks.MemoryBroadcaster()
    go = asyncio.Event()
    publishing: set[asyncio.Task[object]] = set()

    async def paced(n: int, rate: float) -> AsyncIterator[arx.MessageStreamEvent]:
        wire = reply_events(n)
        events = [arx.parse_event(json.dumps(event)) for event in wire]
        await go.wait()
        interval = 1.0 / rate
        start = time.monotonic()
        sent = 0
        for event, data in zip(events, wire, strict=True):
            if data["type"] == "content_block_delta":
                sent += 1
                delay = start + sent * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                data = {**data, "delta": {"type": "text_delta", "text": str(time.monotonic_ns())}}
                event = arx.parse_event(json.dumps(data))
            yield event

    async def publish(request: Request) -> Response:
        n = int(request.query_params["n"])
        rate = float(request.query_params["rate"])
        go.clear()
        task = asyncio.get_running_loop().create_task(
            hub.publish(CHANNEL, arx.from_async_iterable(paced(n, rate)))
        )
        publishing.add(task)
        task.add_done_callback(publishing.discard)
        await asyncio.sleep(0.05)  # the channel exists once the publisher has opened it
        return JSONResponse({"ok": True}, status_code=202)

    async def start(request: Request) -> Response:
        if request.query_params.get("freeze") == "1":
            # What a server holding many long-lived streams may do: take the objects it holds
            # out of the collector's reach, so a full collection does not walk them all.
            gc.collect()
            gc.freeze()
        go.set()
        return JSONResponse({"ok": True})

    async def sub(request: Request) -> Response:
        return sinks.sse_response(hub.subscribe(CHANNEL), format="text")

    async def cpu(request: Request) -> Response:
        return PlainTextResponse(repr(time.process_time()))

    async def rss(request: Request) -> Response:
        return PlainTextResponse(str(rss_bytes()))

    return Starlette(
        routes=[
            Route("/floor", floor),
            Route("/sse", sse),
            Route("/floor-paced", floor_paced),
            Route("/sse-paced", sse_paced),
            Route("/sse-bytes", sse_bytes),
            Route("/publish", publish, methods=["POST"]),
            Route("/go", start, methods=["POST"]),
            Route("/sub", sub),
            Route("/cpu", cpu),
            Route("/rss", rss),
        ]
    )


async def serve() -> None:
    import uvicorn

    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets whose proto says
    # TCP, and the accepted connections inherit the listener's.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    config = uvicorn.Config(
        app(), log_level="warning", access_log=False, lifespan="off", http="h11", backlog=4096
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()

    async def stop_when_stdin_closes() -> None:
        await loop.run_in_executor(None, sys.stdin.read)
        server.should_exit = True

    watcher = loop.create_task(stop_when_stdin_closes())
    serving = loop.create_task(server.serve(sockets=[listener]))
    try:
        # uvicorn only exposes a ``started`` flag, no event to wait on.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print(f"PORT {listener.getsockname()[1]}", flush=True)
        await serving
    finally:
        watcher.cancel()


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
