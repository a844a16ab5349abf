"""The relay under test: ``python -m benchmarks._relay <contender> <upstream base URL>``.

A Starlette app served by uvicorn on ``127.0.0.1`` (it prints ``PORT <n>`` once listening and
serves until stdin closes), as an application puts a reply in front of a browser: ``POST
/relay`` opens a streamed reply upstream (the route named by the request's ``x-bench-route``
header) and answers with an SSE response of its text, ``data: {"text": "..."}`` per text
delta, then ``event: done``. ``GET /cpu`` answers the process's CPU seconds so far.

Contenders, the same app around each:

- ``rx``: ``arx.Client(...).stream(...)`` piped through ``raise_on_error()`` and
  ``text_deltas()``, read with ``arx.to_async_iterator``;
- ``sdk``: the official SDK's ``messages.stream(...)`` and its ``text_stream``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable

from ._contenders import MESSAGES, MODEL

__all__ = ["main"]

Texts = Callable[[str], AsyncIterator[str]]


def _rx_texts(upstream: str) -> tuple[Texts, Callable[[], object]]:
    import anthropic_rx as arx
    from anthropic_rx import operators as ops

    client = arx.Client(base_url=upstream, api_key="k", timeout=120.0, max_retries=0)

    async def texts(route: str) -> AsyncIterator[str]:
        events = client.stream(
            model=MODEL, max_tokens=64000, messages=MESSAGES, extra_headers={"x-bench-route": route}
        )
        async for text in arx.to_async_iterator(
            events.pipe(ops.raise_on_error(), ops.text_deltas())
        ):
            yield text

    return texts, client.aclose


def _sdk_texts(upstream: str) -> tuple[Texts, Callable[[], object]]:
    import anthropic

    client = anthropic.AsyncAnthropic(api_key="k", base_url=upstream, max_retries=0, timeout=120.0)

    async def texts(route: str) -> AsyncIterator[str]:
        async with client.messages.stream(
            model=MODEL, max_tokens=64000, messages=MESSAGES, extra_headers={"x-bench-route": route}
        ) as events:
            async for text in events.text_stream:
                yield text

    return texts, client.close


RELAYS = {"rx": _rx_texts, "sdk": _sdk_texts}


def app(texts: Texts) -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def relay(request: Request) -> Response:
        route = request.headers["x-bench-route"]

        async def body() -> AsyncIterator[bytes]:
            async for text in texts(route):
                yield b"data: " + json.dumps({"text": text}).encode() + b"\n\n"
            yield b"event: done\ndata: {}\n\n"

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def cpu(request: Request) -> Response:
        return PlainTextResponse(repr(time.process_time()))

    return Starlette(routes=[Route("/relay", relay, methods=["POST"]), Route("/cpu", cpu)])


async def serve(contender: str, upstream: str) -> None:
    import uvicorn

    texts, close = RELAYS[contender](upstream)
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
    # whose proto says TCP, and the accepted connections inherit the listener's.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app(texts), log_level="warning", access_log=False, lifespan="off", http="h11"
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
        result = close()
        if asyncio.iscoroutine(result):
            await result


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    asyncio.run(serve(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
