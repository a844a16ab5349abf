"""The fake served over real HTTP/1.1 on loopback: asyncio streams, h11 for the protocol.

One task per connection reads requests, answers each through the fake's :class:`Exchanges`
(recording, choosing, counting: as the in-memory transport does) and the shared plan
machinery, and keeps
the connection alive between them. While a body is being sent, a second read on the socket
watches for the client going away (end of file or a reset), so a client that closes a response
mid-stream is noticed even when the plan is stalled and nothing is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

import h11

from ._plan import FakeResponse, PlannedDisconnect, body_chunks

if TYPE_CHECKING:
    from ._exchange import Answer, Exchange, Exchanges

__all__ = ["serve"]

_READ_SIZE = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
# Bytes a client may send ahead while a response is still streaming (HTTP pipelining).
_MAX_AHEAD = 1024 * 1024
_CLOSE_TIMEOUT = 1.0


_Outcome = Literal["keep", "close", "abort"]


@contextlib.asynccontextmanager
async def serve(exchanges: Exchanges, *, host: str, port: int) -> AsyncIterator[str]:
    """Answer through ``exchanges`` on ``host:port`` while the context lasts; yields the base
    URL. On exit every connection is closed and every response still streaming is ended."""
    server = _Server(exchanges)
    # A deep backlog: a test that opens hundreds of streams at once must not have connections
    # refused or delayed by the kernel's default queue of pending ones (asyncio's 100).
    listener = await asyncio.start_server(server.handle, host, port, backlog=4096)
    bound_port = listener.sockets[0].getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown_host}:{bound_port}"
    finally:
        server.closing = True
        listener.close()
        await server.close_all()
        await listener.wait_closed()


class _Server:
    def __init__(self, exchanges: Exchanges) -> None:
        self.exchanges = exchanges
        self.closing = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.closing:
            # Accepted just before shutdown: close at once.
            writer.transport.abort()
            await _wait_closed(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.exchanges.connection_accepted()
        try:
            await _Connection(self.exchanges, reader, writer).run()
        except asyncio.CancelledError:
            if not self.closing:
                raise
            # Our own shutdown: asyncio's stream callback must not see a cancelled task.
            task.uncancel()
        finally:
            self.tasks.discard(task)

    async def close_all(self) -> None:
        # Connections accepted before the listener closed may not have started their task
        # yet; a few turns of the loop let them start (and see ``closing``).
        for _ in range(3):
            await asyncio.sleep(0)
        for _ in range(100):
            if not self.tasks:
                return
            tasks = set(self.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            await asyncio.sleep(0)


class _Connection:
    def __init__(
        self,
        exchanges: Exchanges,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.exchanges = exchanges
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER)

    async def run(self) -> None:
        """Answer requests until the client closes, the plan drops the connection, or the
        server shuts down (cancellation); then close the socket."""
        graceful = False
        try:
            while True:
                received = await self._read_request()
                if received is None:
                    graceful = True
                    return
                request, body = received
                outcome = await self._respond(request, body)
                if outcome != "keep":
                    graceful = outcome == "close"
                    return
                if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                    graceful = True
                    return
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._bad_request(exc)
            graceful = True
        except (ConnectionError, OSError):
            pass
        finally:
            if graceful and not self.writer.is_closing():
                self.writer.close()
            else:
                self.writer.transport.abort()
            await _wait_closed(self.writer)

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        """The next request and its body, or ``None`` when the client closed the connection.

        Raises:
            h11.RemoteProtocolError: the bytes are not HTTP/1.1, or the body is too large.
        """
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.reader.read(_READ_SIZE))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _respond(self, request: h11.Request, body: bytes) -> _Outcome:
        """Answer one request. Then the connection may serve another (``"keep"``), is to be
        closed after what was sent (``"close"``), or cut (``"abort"``: the client left)."""
        answer = self.exchanges.receive(
            request.method.decode("ascii", "replace"),
            request.target.decode("ascii", "replace"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers],
            body,
        )
        if answer.response.kind == "connection_error":
            return "close"
        exchange = self.exchanges.open(answer, "http")
        sending = asyncio.create_task(self._send(answer, exchange))
        watching: asyncio.Task[bytes] | None = None
        ahead = 0
        try:
            while True:
                watching = asyncio.create_task(self.reader.read(_READ_SIZE))
                done, _ = await asyncio.wait(
                    {sending, watching}, return_when=asyncio.FIRST_COMPLETED
                )
                if sending in done:
                    break
                data = b"" if watching.exception() is not None else watching.result()
                watching = None
                if not data or ahead + len(data) > _MAX_AHEAD:
                    exchange.end("client_gone")
                    return "abort"
                ahead += len(data)
                self.h11.receive_data(data)
            await self._stop_watching(watching)
            watching = None
            error = sending.exception()
            if error is None:
                exchange.end("finished")
                return "keep"
            if isinstance(error, PlannedDisconnect):
                exchange.end("dropped")
                return "close"
            if isinstance(error, ConnectionError | OSError):
                exchange.end("client_gone")
                return "abort"
            raise error
        finally:
            for task in (sending, watching):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.wait({task})
            if exchange.state == "open":
                exchange.end("dropped")

    async def _stop_watching(self, watching: asyncio.Task[bytes] | None) -> None:
        """Stop the disconnect watch; bytes it read are kept for the next request."""
        if watching is None:
            return
        if not watching.done():
            watching.cancel()
            await asyncio.wait({watching})
        if watching.cancelled():
            return
        if watching.exception() is not None:
            self.h11.receive_data(b"")
            return
        data = watching.result()
        self.h11.receive_data(data)

    async def _send(self, answer: Answer, exchange: Exchange) -> None:
        plan: FakeResponse = answer.response
        if plan.latency:
            await asyncio.sleep(plan.latency)
        head = h11.Response(status_code=plan.status, headers=answer.headers, reason=plan.reason)
        self.writer.write(self.h11.send(head) or b"")
        await self.writer.drain()
        async with contextlib.aclosing(body_chunks(plan)) as chunks:
            async for chunk in chunks:
                self.writer.write(self.h11.send(h11.Data(data=chunk)) or b"")
                await self.writer.drain()
                exchange.sent += len(chunk)
        self.writer.write(self.h11.send(h11.EndOfMessage()) or b"")
        # Counted before the client can see the end of the body, so a client on this loop
        # never finds a finished response still open.
        exchange.end("finished")
        await self.writer.drain()

    async def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        if self.h11.our_state not in {h11.IDLE, h11.SEND_RESPONSE}:
            return
        status = exc.error_status_hint
        body = b"request too large" if status == 413 else b"bad request"
        headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
        with contextlib.suppress(h11.LocalProtocolError, ConnectionError, OSError):
            self.writer.write(
                self.h11.send(h11.Response(status_code=status, headers=headers)) or b""
            )
            self.writer.write(self.h11.send(h11.Data(data=body)) or b"")
            self.writer.write(self.h11.send(h11.EndOfMessage()) or b"")
            await self.writer.drain()


async def _wait_closed(writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        # A peer that reads nothing keeps a gracefully closing socket open: cut it.
        writer.transport.abort()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
