"""The bookkeeping of the fake's exchanges, shared by the in-memory transport and the server.

A transport hands :meth:`Exchanges.receive` the request it read and gets an :class:`Answer`
(the request recorded, the planned response chosen); for a response with a body it calls
:meth:`Exchanges.open` and ends the :class:`Exchange` it gets once, with how the body ended.
Everything counted about requests, responses and connections lives here, so both transports
count alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ._plan import FakeResponse

__all__ = ["Answer", "Exchange", "ExchangeState", "Exchanges", "RecordedRequest", "shown_header"]

_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received.

    Attributes:
        method: ``"POST"``...
        path: the URL path, without the query (``"/v1/messages"``).
        query: the query string, without ``?`` (the official SDK's beta calls send
            ``beta=true``).
        headers: every header, lower-case names (repeated headers joined with ``", "``). The API
            key is kept so tests can check it, and masked in ``repr``.
        json: the body decoded as JSON, or ``None`` when it is not JSON.
        content: the raw body.
        request_id: the ``request-id`` the fake gave this request (``"req_fake_0001"``...).
        response_status: the status answered; ``None`` for a planned connection error (and in
            the request a ``fake.default`` function receives, which is asked before answering).
        response_headers: the headers answered, lower-case names (empty when no answer).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    json: Any
    content: bytes = field(repr=False)
    request_id: str = ""
    response_status: int | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        masked = {name: shown_header(name, value) for name, value in self.headers.items()}
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"headers={masked!r}, json={self.json!r}, "
            f"request_id={self.request_id!r}, response_status={self.response_status!r})"
        )


def shown_header(name: str, value: str) -> str:
    """``value`` as it may be shown: ``"***"`` for a secret header (the API key...)."""
    return "***" if name.lower() in _SECRET_HEADERS else value


@dataclass(frozen=True, slots=True)
class Answer:
    """A recorded request and the response chosen for it."""

    request: RecordedRequest
    request_id: str
    response: FakeResponse

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The response headers: the plan's, ``request-id`` and ``content-length``."""
        headers = list(self.response.headers)
        if not any(name == "request-id" for name, _ in headers):
            headers.append(("request-id", self.request_id))
        length = self.response.content_length
        if length is not None:
            headers.append(("content-length", str(length)))
        return headers


ExchangeState = Literal["open", "finished", "client_gone", "dropped"]
"""How a response ended: ``finished`` (its whole body sent), ``client_gone`` (the client closed
the response or its connection, or timed out), ``dropped`` (the plan or the server cut it)."""


class Exchange:
    """One response being answered, until its body is finished or it is cut.

    Attributes:
        answer: the request and its planned response.
        transport: ``"memory"`` or ``"http"``.
        sent: body bytes sent so far (the transport adds them).
        state: ``"open"`` until :meth:`end`.
    """

    __slots__ = ("_book", "answer", "sent", "state", "transport")

    def __init__(self, book: Exchanges, answer: Answer, transport: str) -> None:
        self._book = book
        self.answer = answer
        self.transport = transport
        self.sent = 0
        self.state: ExchangeState = "open"

    def end(self, state: ExchangeState) -> None:
        """Close the exchange with ``state`` (only the first call counts)."""
        if self.state != "open":
            return
        self.state = state
        self._book._ended(self)

    def __repr__(self) -> str:
        request = self.answer.request
        return (
            f"{self.answer.request_id} {request.method} {request.path} -> "
            f"{self.answer.response.status} ({self.transport}, {self.sent} bytes sent)"
        )


class Exchanges:
    """What the fake received and answered: recorded requests, open responses, counters.

    Args:
        choose: the planned response for a recorded request (it may raise: the request is
            recorded all the same and the error propagates to the transport).
        keep_requests: how many recorded requests to keep, the newest; ``None``: all. The
            counters stay exact whatever is kept.

    One event loop at a time; not thread-safe.
    """

    def __init__(
        self, choose: Callable[[RecordedRequest], FakeResponse], *, keep_requests: int | None
    ) -> None:
        self._choose = choose
        self.keep_requests = keep_requests
        self._requests: deque[RecordedRequest] = deque(maxlen=keep_requests)
        self._open: set[Exchange] = set()
        # One event per waiting call, made on the caller's loop: the fake itself is not tied
        # to an event loop.
        self._idle_waiters: set[asyncio.Event] = set()
        self.received = 0
        """Requests received, over the fake's life."""
        self.disconnects = 0
        """Responses ended by the client going away before their body was finished."""
        self.connections = 0
        """TCP connections the loopback server accepted."""

    # --- used by the transports ----------------------------------------------------------

    def receive(
        self, method: str, target: str, headers: list[tuple[str, str]], content: bytes
    ) -> Answer:
        """Record a request (``target``: path and query) and choose its response."""
        self.received += 1
        request_id = f"req_fake_{self.received:04d}"
        split = urlsplit(target)
        lowered: dict[str, str] = {}
        for name, value in headers:
            name = name.lower()
            lowered[name] = f"{lowered[name]}, {value}" if name in lowered else value
        try:
            body: Any = json.loads(content) if content else None
        except ValueError:
            body = None
        request = RecordedRequest(
            method=method.upper(),
            path=split.path or "/",
            query=split.query,
            headers=lowered,
            json=body,
            content=content,
            request_id=request_id,
        )
        try:
            response = self._choose(request).with_request_id(request_id)
        except BaseException:
            self._requests.append(request)
            raise
        answer = Answer(request, request_id, response)
        if response.kind != "connection_error":
            request = dataclasses.replace(
                request,
                response_status=response.status,
                response_headers=dict(answer.headers),
            )
        self._requests.append(request)
        return dataclasses.replace(answer, request=request)

    def open(self, answer: Answer, transport: str) -> Exchange:
        """Count ``answer``'s response as open until the exchange returned is ended."""
        exchange = Exchange(self, answer, transport)
        self._open.add(exchange)
        return exchange

    def connection_accepted(self) -> None:
        """Count a TCP connection the loopback server accepted."""
        self.connections += 1

    # --- used by the fake ----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The recorded requests kept, oldest first (a copy)."""
        return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest | None:
        """The newest recorded request (always kept), or ``None`` before any."""
        return self._requests[-1] if self._requests else None

    @property
    def open_count(self) -> int:
        """Responses being answered now."""
        return len(self._open)

    async def wait_idle(self, timeout: float) -> list[Exchange]:  # noqa: ASYNC109
        """Wait until no response is open, at most ``timeout`` seconds.

        Returns:
            The exchanges still open when the wait ended (empty when all closed).
        """
        if self._open:
            idle = asyncio.Event()
            self._idle_waiters.add(idle)
            try:
                async with asyncio.timeout(timeout):
                    await idle.wait()
            except TimeoutError:
                pass
            finally:
                self._idle_waiters.discard(idle)
        return list(self._open)

    def _ended(self, exchange: Exchange) -> None:
        self._open.discard(exchange)
        if exchange.state == "client_gone":
            self.disconnects += 1
        if not self._open:
            for idle in self._idle_waiters:
                idle.set()
