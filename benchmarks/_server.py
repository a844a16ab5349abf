"""A minimal loopback Anthropic server for the benchmarks: HTTP/1.1 (h11) on asyncio.

It serves the generated streams of :mod:`benchmarks._streams`, the same bytes to every
contender, in its own process so that its work does not count against the client measured.
``POST .../v1/messages`` under these prefixes:

- ``/s/{stream}``: the whole stream at once, in 4 KiB chunks (``Transfer-Encoding: chunked``);
- ``/g/{stream}/{gate}/{interval_ms}``: every event up to the first delta at once, then nothing
  until ``POST /release/{gate}``, then one event per write, ``interval_ms`` apart (streams held
  open and idle, for the concurrency benchmark);
- ``/p/{stream}/{rate}``: one event per write, ``rate`` events per second (paced replies);
- ``/t/{stream}/{rate}``: the same, with the text of every text delta replaced by the
  server's ``time.monotonic_ns()`` when it writes it and a space (for latency: the clock is
  the machine's, shared by every process).

A request may name its route in an ``x-bench-route`` header (e.g. ``s/text-1000``) instead of
its path, so that one client with one connection pool reads every stream. The request body is
read and ignored. Run ``python -m benchmarks._server``: it prints
``PORT <n>`` once listening and serves until stdin closes or it is terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time

import h11

from ._streams import chunked, frame, generate

__all__ = ["main", "serve"]

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"request-id", b"req_bench"),
    (b"anthropic-organization-id", b"bench"),
]


@functools.cache
def _chunks(name: str) -> list[bytes]:
    return chunked(generate(name).body, 4096)


@functools.cache
def _frames(name: str) -> list[bytes]:
    return [event + b"\n\n" for event in generate(name).body.split(b"\n\n")[:-1]]


class _Server:
    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = asyncio.Event()
        return gate

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, reader)
                if request is None:
                    return
                await self._respond(conn, writer, request)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return None
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request
    ) -> None:
        target = request.target
        for key, value in request.headers:
            if key == b"x-bench-route":
                target = value + b"/v1/messages"
        parts = target.decode().strip("/").split("/")
        if parts[0] == "release" and len(parts) == 2:
            self.gate(parts[1]).set()
            await self._plain(conn, writer, 200, b"released")
            return
        if parts[0] == "health":
            await self._plain(conn, writer, 200, b"ok")
            return
        if parts[-2:] != ["v1", "messages"] or len(parts) < 4:
            await self._plain(conn, writer, 404, b"not found")
            return
        route, name, args = parts[0], parts[1], parts[2:-2]
        writer.write(conn.send(h11.Response(status_code=200, headers=_HEADERS)))
        if route == "s":
            for chunk in _chunks(name):
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
        elif route == "g":
            gate, interval = self.gate(args[0]), float(args[1]) / 1000
            frames = _frames(name)
            first = next(i for i, f in enumerate(frames) if f.startswith(b"event: content_block_d"))
            writer.write(conn.send(h11.Data(data=b"".join(frames[: first + 1]))))
            await writer.drain()
            await gate.wait()
            for event in frames[first + 1 :]:
                if interval:
                    await asyncio.sleep(interval)
                writer.write(conn.send(h11.Data(data=event)))
                await writer.drain()
        elif route in ("p", "t"):
            await self._paced(conn, writer, _frames(name), float(args[0]), stamp=route == "t")
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _paced(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        frames: list[bytes],
        rate: float,
        *,
        stamp: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, data in enumerate(frames):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if stamp and data.startswith(b"event: content_block_delta"):
                delta = {"type": "text_delta", "text": f"{time.monotonic_ns()} "}
                data = frame({"type": "content_block_delta", "index": 0, "delta": delta})
            writer.write(conn.send(h11.Data(data=data)))
            await writer.drain()

    async def _plain(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: bytes
    ) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


async def serve(port: int = 0, *, ready: asyncio.Future[int] | None = None) -> None:
    """Serve on ``127.0.0.1:port`` until cancelled or stdin closes."""
    server = _Server()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=4096)
    bound = listener.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    if ready is not None:
        ready.set_result(bound)
    loop = asyncio.get_running_loop()
    async with listener:
        # The parent closes our stdin when it is done (or dies): then stop.
        await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    for name in ("short", "text-1000"):
        _chunks(name)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
