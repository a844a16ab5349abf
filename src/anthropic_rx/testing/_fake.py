"""The fake Messages API: planned responses, recorded requests, and the in-memory transport."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx

from ._plan import FakeResponse, PlannedDisconnect, StreamSource, body_chunks
from ._replies import DEFAULT_MODEL, Reply
from ._validate import request_problem

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["Default", "Echo", "FakeAnthropic", "RecordedRequest", "echo"]

_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization"})
_WORD = re.compile(r"\s*\S+")

Answer: TypeAlias = Reply | bytes | FakeResponse
"""What a default may answer: a reply or SSE bytes to stream, or any planned response."""

Default: TypeAlias = Answer | Callable[["RecordedRequest"], Answer] | None
"""``fake.default``: a fixed answer, a function of the request, or ``None`` (HTTP 500)."""


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
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"headers={_masked(self.headers)!r}, json={self.json!r}, "
            f"request_id={self.request_id!r}, response_status={self.response_status!r})"
        )


@dataclass(frozen=True, slots=True)
class Echo:
    """A default answer: streams back the text of the last user message, word by word.

    Args:
        prefix: put before the echoed text (``"You said: "``).
        tokens_per_second: delivery, as in ``fake.add_stream``.
        chunk_size: delivery, as in ``fake.add_stream``.

    The reply's ``model`` is the request's. A request with no user text is answered with the
    prefix alone.
    """

    prefix: str = "You said: "
    tokens_per_second: float | None = None
    chunk_size: int | None = None

    def __call__(self, request: RecordedRequest) -> FakeResponse:
        body = request.json if isinstance(request.json, dict) else {}
        said = _last_user_text(body.get("messages"))
        model = body.get("model")
        reply = Reply(
            model=model if isinstance(model, str) else DEFAULT_MODEL,
            input_tokens=max(len(_WORD.findall(said)), 1),
        ).text(*_WORD.findall(self.prefix + said))
        return FakeResponse.stream(
            reply, tokens_per_second=self.tokens_per_second, chunk_size=self.chunk_size
        )


echo = Echo()
"""The default answer of a new :class:`FakeAnthropic`: ``"You said: ..."``, word by word."""


class FakeAnthropic:
    """A fake Anthropic Messages API for tests, demos and examples: no network, no key.

    Requests are answered in order from a queue of planned responses (``add_stream``,
    ``add_error``, ``add_response``, ``add_connection_error``, ``add``); when the queue is
    empty, from :attr:`default`. Only ``POST /v1/messages`` with ``"stream": true`` takes a
    planned response; other paths get a 404 ``not_found_error``, a body that is not a JSON
    object or not streamed a 400 ``invalid_request_error``. So does a malformed request, as the
    API refuses it (``model`` or ``max_tokens`` missing or of the wrong type, ``messages`` not a
    non-empty list of ``user``/``assistant`` turns with content...), with the API's message
    naming the field (``"max_tokens: Input should be a valid integer"``); the planned response
    stays queued for the next request. ``validate_requests=False`` answers any JSON object
    that asks for a stream. Every request is recorded; any API key is accepted. Every response
    carries a ``request-id`` header (``req_fake_0001``...).

    Two ways in, one behaviour:

    - :attr:`transport`: an in-memory ``httpx.AsyncBaseTransport``
      (``httpx.AsyncClient(transport=fake.transport)``, ``arx.Client(transport=...)``);
    - :meth:`serve`: a real HTTP/1.1 server on ``127.0.0.1`` (keep-alive, chunked bodies).

    :attr:`open_streams` counts responses whose body is still being sent; a response closes
    when its body is finished, when the plan drops it, or when the client goes away (closes the
    response or its connection, or times out), and only the last counts in
    :attr:`disconnects`.

    One event loop at a time; not thread-safe.

    Example:
        >>> fake = FakeAnthropic()
        >>> fake.add_stream(text_reply("Hello", " world"), tokens_per_second=50)
        >>> async with httpx.AsyncClient(transport=fake.transport) as http: ...
        >>> fake.assert_sent(model="claude-sonnet-4-5")
    """

    def __init__(self, *, default: Default = echo, validate_requests: bool = True) -> None:
        self.default: Default = default
        self.validate_requests = validate_requests
        self._queue: deque[FakeResponse] = deque()
        self._requests: list[RecordedRequest] = []
        self._open: set[_Exchange] = set()
        # One event per waiting call, made on the caller's loop: the fake itself is not tied
        # to an event loop.
        self._idle_waiters: set[asyncio.Event] = set()
        self._served = 0
        self._disconnects = 0
        self._connections = 0
        self._transport = _MemoryTransport(self)

    def __repr__(self) -> str:
        return (
            f"FakeAnthropic(pending={len(self._queue)}, requests={len(self._requests)}, "
            f"open_streams={len(self._open)})"
        )

    # --- planning ------------------------------------------------------------------------

    def add(self, *responses: FakeResponse) -> FakeAnthropic:
        """Queue planned responses, answered in order. Returns the fake, for chaining."""
        for response in responses:
            if not isinstance(response, FakeResponse):
                raise TypeError(f"expected a FakeResponse, not {type(response).__name__}")
        self._queue.extend(responses)
        return self

    def add_stream(
        self,
        source: StreamSource,
        *,
        chunk_size: int | None = None,
        tokens_per_second: float | None = None,
        delay: float | None = None,
        latency: float | None = None,
        truncate_after: int | None = None,
        disconnect_after: int | None = None,
        stall_after: int | None = None,
        stall_for: float | None = None,
        stall_ping_every: float | None = None,
        error_after: tuple[int, str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> FakeAnthropic:
        """Queue a streamed reply. See :meth:`FakeResponse.stream` for the arguments.

        ``source``: a :class:`Reply`, SSE bytes, a ``.sse`` file's path, or event dicts.

        Raises:
            ValueError: an option is out of range or options contradict each other.
            OSError: ``source`` is a path that cannot be read.
        """
        return self.add(
            FakeResponse.stream(
                source,
                status=status,
                headers=headers,
                error_after=error_after,
                chunk_size=chunk_size,
                tokens_per_second=tokens_per_second,
                delay=delay,
                latency=latency,
                truncate_after=truncate_after,
                disconnect_after=disconnect_after,
                stall_after=stall_after,
                stall_for=stall_for,
                stall_ping_every=stall_ping_every,
            )
        )

    def add_error(
        self,
        status: int,
        error_type: str | None = None,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> FakeAnthropic:
        """Queue the API's JSON error (``{"type": "error", "error": {...}, "request_id"}``).

        ``error_type`` defaults to the API's for ``status`` (``529`` → ``overloaded_error``,
        ``429`` → ``rate_limit_error``...). ``headers`` add e.g. ``retry-after`` or
        ``x-should-retry``.
        """
        return self.add(FakeResponse.error(status, error_type, message, headers=headers))

    def add_response(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/html",
        headers: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
        delay: float | None = None,
        latency: float | None = None,
        truncate_after: int | None = None,
        disconnect_after: int | None = None,
    ) -> FakeAnthropic:
        """Queue any status and body (a proxy's 413 HTML page, a JSON body with status 200).
        See :meth:`FakeResponse.raw` for the arguments."""
        return self.add(
            FakeResponse.raw(
                status,
                body,
                content_type=content_type,
                headers=headers,
                chunk_size=chunk_size,
                delay=delay,
                latency=latency,
                truncate_after=truncate_after,
                disconnect_after=disconnect_after,
            )
        )

    def add_connection_error(self) -> FakeAnthropic:
        """Queue a failure to answer: ``httpx.ConnectError`` from :attr:`transport`; the
        loopback server closes the connection without a response."""
        return self.add(FakeResponse.connection_error())

    @property
    def pending(self) -> int:
        """Planned responses not used yet."""
        return len(self._queue)

    # --- what happened -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (a copy)."""
        return list(self._requests)

    @property
    def open_streams(self) -> int:
        """Responses being answered now, on both transports."""
        return len(self._open)

    @property
    def disconnects(self) -> int:
        """Responses ended by the client going away before their body was finished."""
        return self._disconnects

    @property
    def connections(self) -> int:
        """TCP connections the loopback server accepted, over every :meth:`serve`."""
        return self._connections

    def assert_sent(
        self, *, headers: Mapping[str, str | None] | None = None, **expected: Any
    ) -> RecordedRequest:
        """Assert that the last request's JSON body has these top-level keys with these values
        (compared with ``==``, so ``unittest.mock.ANY`` works), and these headers (names in
        any case; a value of ``None`` asserts the header is absent).

        Returns:
            The last request.

        Raises:
            AssertionError: no request was received, or a key or header differs (each listed).
        """
        if not self._requests:
            raise AssertionError("FakeAnthropic received no request")
        last = self._requests[-1]
        problems: list[str] = []
        body = last.json if isinstance(last.json, dict) else None
        if expected and body is None:
            problems.append(f"the body is not a JSON object: {last.content[:200]!r}")
        for key, value in expected.items():
            if body is None:
                break
            if key not in body:
                problems.append(f"{key!r} was not sent (expected {value!r})")
            elif value != body[key]:
                problems.append(f"{key!r}: expected {value!r}, sent {body[key]!r}")
        for name, value in (headers or {}).items():
            lower = name.lower()
            actual = last.headers.get(lower)
            if value is None:
                if actual is not None:
                    problems.append(f"header {lower!r} was sent: {_shown(lower, actual)!r}")
            elif actual is None:
                problems.append(
                    f"header {lower!r} was not sent (expected {_shown(lower, value)!r})"
                )
            elif actual != value:
                problems.append(
                    f"header {lower!r}: expected {_shown(lower, value)!r}, "
                    f"sent {_shown(lower, actual)!r}"
                )
        if problems:
            listed = "\n  - ".join(problems)
            raise AssertionError(
                f"the last request ({last.method} {last.path}, request {len(self._requests)}) "
                f"differs:\n  - {listed}"
            )
        return last

    async def wait_closed(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Wait until :attr:`open_streams` is 0 (at most ``timeout`` seconds).

        Raises:
            AssertionError: responses are still open after ``timeout`` seconds (each listed).
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
        if self._open:
            listed = "\n  - ".join(sorted(repr(exchange) for exchange in self._open))
            raise AssertionError(
                f"{len(self._open)} response(s) still open after {timeout} s:\n  - {listed}"
            )

    # --- ways in -------------------------------------------------------------------------

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The in-memory transport: ``httpx.AsyncClient(transport=fake.transport)``.

        Honours the read timeout of the httpx client it serves (``httpx.ReadTimeout`` when no
        chunk arrives in time; ``arx.Client``'s own httpx clients set none, their idle
        timeout is the library's). ``aclose`` of a response closes its stream.
        """
        return self._transport

    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> AbstractAsyncContextManager[str]:
        """Serve the fake over real HTTP/1.1 on ``host:port`` (``0``: a free port) while the
        ``async with`` lasts; it gives the base URL (``"http://127.0.0.1:54321"``).

        On exit every connection is closed and every response still streaming is ended.

        Example:
            >>> async with fake.serve() as base_url:
            ...     client = arx.Client(base_url=base_url)
        """
        from ._server import serve

        return serve(self, host=host, port=port)

    def client(self, **options: Any) -> Client:
        """An :class:`anthropic_rx.Client` wired to :attr:`transport` (``options`` are the
        client's own, e.g. ``max_retries=0``). Close it with ``aclose`` or ``async with``."""
        from .._client import Client

        return Client(transport=self.transport, **options)

    # --- shared by both transports -------------------------------------------------------

    def _answer(
        self, method: str, target: str, headers: list[tuple[str, str]], content: bytes
    ) -> _Answer:
        """Record a request and choose its response."""
        self._served += 1
        request_id = f"req_fake_{self._served:04d}"
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
        answer = _Answer(request, request_id, response)
        if response.kind != "connection_error":
            request = dataclasses.replace(
                request,
                response_status=response.status,
                response_headers=dict(answer.headers),
            )
        self._requests.append(request)
        return dataclasses.replace(answer, request=request)

    def _choose(self, request: RecordedRequest) -> FakeResponse:
        if request.path != "/v1/messages" or request.method != "POST":
            return FakeResponse.error(
                404,
                "not_found_error",
                f"{request.method} {request.path}: FakeAnthropic serves POST /v1/messages",
            )
        if not isinstance(request.json, dict):
            return FakeResponse.error(400, message="the body must be a JSON object")
        if request.json.get("stream") is not True:
            return FakeResponse.error(
                400, message='FakeAnthropic answers streamed requests only: send "stream": true'
            )
        if self.validate_requests:
            problem = request_problem(request.json)
            if problem is not None:
                return FakeResponse.error(400, "invalid_request_error", problem)
        if self._queue:
            return self._queue.popleft()
        default = self.default
        if default is None:
            return FakeResponse.error(
                500, "api_error", "FakeAnthropic: no response planned and no default"
            )
        answer = default(request) if callable(default) else default
        if isinstance(answer, FakeResponse):
            return answer
        if isinstance(answer, Reply | bytes):
            return FakeResponse.stream(answer)
        raise TypeError(
            f"fake.default gave {type(answer).__name__}: expected a Reply, bytes or FakeResponse"
        )

    def _opened(self, answer: _Answer, transport: str) -> _Exchange:
        exchange = _Exchange(self, answer, transport)
        self._open.add(exchange)
        return exchange

    def _closed(self, exchange: _Exchange) -> None:
        self._open.discard(exchange)
        if exchange.state == "client_gone":
            self._disconnects += 1
        if not self._open:
            for idle in self._idle_waiters:
                idle.set()

    def _connection_accepted(self) -> None:
        self._connections += 1


@dataclass(frozen=True, slots=True)
class _Answer:
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


class _Exchange:
    """One response being answered, until its body is finished or it is cut."""

    __slots__ = ("_fake", "answer", "sent", "state", "transport")

    def __init__(self, fake: FakeAnthropic, answer: _Answer, transport: str) -> None:
        self._fake = fake
        self.answer = answer
        self.transport = transport
        self.sent = 0
        self.state: ExchangeState = "open"

    def end(self, state: ExchangeState) -> None:
        """Close the exchange with ``state`` (only the first call counts)."""
        if self.state != "open":
            return
        self.state = state
        self._fake._closed(self)

    def __repr__(self) -> str:
        request = self.answer.request
        return (
            f"{self.answer.request_id} {request.method} {request.path} -> "
            f"{self.answer.response.status} ({self.transport}, {self.sent} bytes sent)"
        )


# --- in-memory transport ---------------------------------------------------------------------


class _MemoryTransport(httpx.AsyncBaseTransport):
    def __init__(self, fake: FakeAnthropic) -> None:
        self._fake = fake

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        target = request.url.raw_path.decode("ascii")
        answer = self._fake._answer(
            request.method, target, list(request.headers.multi_items()), content
        )
        plan = answer.response
        if plan.kind == "connection_error":
            raise httpx.ConnectError("FakeAnthropic: planned connection error", request=request)
        read_timeout = _read_timeout(request)
        exchange = self._fake._opened(answer, "memory")
        try:
            if plan.latency:
                if read_timeout is not None and read_timeout < plan.latency:
                    await asyncio.sleep(read_timeout)
                    raise httpx.ReadTimeout("FakeAnthropic: no response in time", request=request)
                await asyncio.sleep(plan.latency)
        except BaseException:
            exchange.end("client_gone")
            raise
        return httpx.Response(
            plan.status,
            headers=answer.headers,
            stream=_MemoryBody(exchange, request, read_timeout),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": plan.reason},
        )


class _MemoryBody(httpx.AsyncByteStream):
    """The body of one in-memory response; ``aclose`` before the end is the client leaving."""

    def __init__(
        self, exchange: _Exchange, request: httpx.Request, read_timeout: float | None
    ) -> None:
        self._exchange = exchange
        self._request = request
        self._read_timeout = read_timeout
        self._chunks = body_chunks(exchange.answer.response)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        exchange = self._exchange
        if exchange.state != "open":
            raise StopAsyncIteration
        try:
            async with asyncio.timeout(self._read_timeout):
                chunk = await anext(self._chunks)
        except StopAsyncIteration:
            exchange.end("finished")
            raise
        except PlannedDisconnect:
            exchange.end("dropped")
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body",
                request=self._request,
            ) from None
        except TimeoutError:
            exchange.end("client_gone")
            raise httpx.ReadTimeout(
                "FakeAnthropic: read timed out", request=self._request
            ) from None
        except BaseException:
            # Cancelled while waiting for a chunk: the client stopped reading.
            exchange.end("client_gone")
            raise
        exchange.sent += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._exchange.end("client_gone")
        # RuntimeError: another task is inside __anext__; it sees the closed exchange on its
        # next call.
        with contextlib.suppress(RuntimeError):
            await self._chunks.aclose()


def _read_timeout(request: httpx.Request) -> float | None:
    timeouts = request.extensions.get("timeout")
    if isinstance(timeouts, Mapping):
        value = timeouts.get("read")
        if isinstance(value, int | float):
            return float(value)
    return None


def _last_user_text(messages: object) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [
                block["text"]
                for block in content
                if isinstance(block, dict) and isinstance(block.get("text"), str)
            ]
            return " ".join(texts)
        return ""
    return ""


def _masked(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: _shown(name, value) for name, value in headers.items()}


def _shown(name: str, value: str) -> str:
    return "***" if name.lower() in _SECRET_HEADERS else value
