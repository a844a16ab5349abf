"""The fake Messages API: planned responses, recorded requests, and the in-memory transport."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, Unpack

import httpx

from ._exchange import Exchange, Exchanges, RecordedRequest, shown_header
from ._plan import (
    ErrorOptions,
    FakeResponse,
    PlannedDisconnect,
    RawOptions,
    StreamOptions,
    StreamSource,
    body_chunks,
)
from ._replies import DEFAULT_MODEL, Reply
from ._validate import request_problem

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["Default", "Echo", "FakeAnthropic", "RecordedRequest", "echo"]

_WORD = re.compile(r"\s*\S+")

Answer: TypeAlias = Reply | bytes | FakeResponse
"""What a default may answer: a reply or SSE bytes to stream, or any planned response."""

Default: TypeAlias = Answer | Callable[["RecordedRequest"], Answer] | None
"""``fake.default``: a fixed answer, a function of the request, or ``None`` (HTTP 500)."""


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
    that asks for a stream. Every request is recorded (``keep_requests=N`` keeps the newest
    ``N`` only, for a long-running demo; the counters stay exact); any API key is accepted.
    Every response carries a ``request-id`` header (``req_fake_0001``...).

    Two ways in, one behaviour:

    - :attr:`transport`: an in-memory ``httpx.AsyncBaseTransport``
      (``httpx.AsyncClient(transport=fake.transport)``, ``arx.Client(transport=...)``);
    - :meth:`serve`: a real HTTP/1.1 server on ``127.0.0.1`` (keep-alive, chunked bodies).

    :attr:`open_streams` counts responses whose body is still being sent; a response closes
    when its body is finished, when the plan drops it, or when the client goes away (closes the
    response or its connection, or times out), and only the last counts in
    :attr:`disconnects`.

    One event loop at a time; not thread-safe.

    Args:
        default: the answer when no response is planned (see :attr:`default`).
        validate_requests: answer a malformed Messages request with the API's 400.
        keep_requests: how many requests :attr:`requests` keeps, the newest (at least 1);
            ``None`` keeps every one. :attr:`request_count`, the request ids and the other
            counters stay exact.

    Raises:
        TypeError: ``keep_requests`` is not an ``int`` or ``None``.
        ValueError: ``keep_requests`` is less than 1.

    Example:
        >>> fake = FakeAnthropic()
        >>> fake.add_stream(text_reply("Hello", " world"), tokens_per_second=50)
        >>> async with httpx.AsyncClient(transport=fake.transport) as http: ...
        >>> fake.assert_sent(model="claude-sonnet-4-5")
    """

    def __init__(
        self,
        *,
        default: Default = echo,
        validate_requests: bool = True,
        keep_requests: int | None = None,
    ) -> None:
        if keep_requests is not None:
            if isinstance(keep_requests, bool) or not isinstance(keep_requests, int):
                raise TypeError(
                    f"keep_requests must be an int or None, not {type(keep_requests).__name__}"
                )
            if keep_requests < 1:
                raise ValueError(f"keep_requests must be at least 1, not {keep_requests}")
        self.default: Default = default
        self.validate_requests = validate_requests
        self._queue: deque[FakeResponse] = deque()
        self._exchanges = Exchanges(self._choose, keep_requests=keep_requests)
        self._transport = _MemoryTransport(self._exchanges)

    def __repr__(self) -> str:
        return (
            f"FakeAnthropic(pending={len(self._queue)}, "
            f"requests={self._exchanges.received}, open_streams={self._exchanges.open_count})"
        )

    # --- planning ------------------------------------------------------------------------

    def add(self, *responses: FakeResponse) -> FakeAnthropic:
        """Queue planned responses, answered in order. Returns the fake, for chaining."""
        for response in responses:
            if not isinstance(response, FakeResponse):
                raise TypeError(f"expected a FakeResponse, not {type(response).__name__}")
        self._queue.extend(responses)
        return self

    def add_stream(self, source: StreamSource, **options: Unpack[StreamOptions]) -> FakeAnthropic:
        """Queue a streamed reply: ``fake.add(FakeResponse.stream(source, **options))``.

        ``source``: a :class:`Reply`, SSE bytes, a ``.sse`` file's path, or event dicts. The
        options (:class:`StreamOptions`: ``status``, ``headers``, ``error_after``,
        ``chunk_size``, ``tokens_per_second``, ``delay``, ``latency``, ``truncate_after``,
        ``disconnect_after``, ``stall_after``, ``stall_for``, ``stall_ping_every``) are those
        of :meth:`FakeResponse.stream`, described there.

        Raises:
            ValueError: an option is out of range or options contradict each other.
            TypeError: an option that :meth:`FakeResponse.stream` does not take.
            OSError: ``source`` is a path that cannot be read.
        """
        return self.add(FakeResponse.stream(source, **options))

    def add_error(
        self,
        status: int,
        error_type: str | None = None,
        message: str | None = None,
        **options: Unpack[ErrorOptions],
    ) -> FakeAnthropic:
        """Queue the API's JSON error (``{"type": "error", "error": {...}, "request_id"}``):
        ``fake.add(FakeResponse.error(status, error_type, message, **options))``.

        ``error_type`` defaults to the API's for ``status`` (``529`` → ``overloaded_error``,
        ``429`` → ``rate_limit_error``...). The one option, ``headers``
        (:class:`ErrorOptions`), adds e.g. ``retry-after`` or ``x-should-retry``; see
        :meth:`FakeResponse.error`.
        """
        return self.add(FakeResponse.error(status, error_type, message, **options))

    def add_response(
        self, status: int, body: bytes, **options: Unpack[RawOptions]
    ) -> FakeAnthropic:
        """Queue any status and body (a proxy's 413 HTML page, a JSON body with status 200):
        ``fake.add(FakeResponse.raw(status, body, **options))``.

        The options (:class:`RawOptions`: ``content_type``, ``headers``, ``chunk_size``,
        ``delay``, ``latency``, ``truncate_after``, ``disconnect_after``) are those of
        :meth:`FakeResponse.raw`, described there.
        """
        return self.add(FakeResponse.raw(status, body, **options))

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
        """Every request received, oldest first (a copy); with ``keep_requests=N``, the
        newest ``N``."""
        return self._exchanges.requests

    @property
    def request_count(self) -> int:
        """Requests received, over the fake's life (every one, whatever ``keep_requests``
        kept)."""
        return self._exchanges.received

    @property
    def open_streams(self) -> int:
        """Responses being answered now, on both transports."""
        return self._exchanges.open_count

    @property
    def disconnects(self) -> int:
        """Responses ended by the client going away before their body was finished."""
        return self._exchanges.disconnects

    @property
    def connections(self) -> int:
        """TCP connections the loopback server accepted, over every :meth:`serve`."""
        return self._exchanges.connections

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
        last = self._exchanges.last_request
        if last is None:
            raise AssertionError("FakeAnthropic received no request")
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
                    problems.append(f"header {lower!r} was sent: {shown_header(lower, actual)!r}")
            elif actual is None:
                problems.append(
                    f"header {lower!r} was not sent (expected {shown_header(lower, value)!r})"
                )
            elif actual != value:
                problems.append(
                    f"header {lower!r}: expected {shown_header(lower, value)!r}, "
                    f"sent {shown_header(lower, actual)!r}"
                )
        if problems:
            listed = "\n  - ".join(problems)
            raise AssertionError(
                f"the last request ({last.method} {last.path}, request {self.request_count}) "
                f"differs:\n  - {listed}"
            )
        return last

    async def wait_closed(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Wait until :attr:`open_streams` is 0 (at most ``timeout`` seconds).

        Raises:
            AssertionError: responses are still open after ``timeout`` seconds (each listed).
        """
        still_open = await self._exchanges.wait_idle(timeout)
        if still_open:
            listed = "\n  - ".join(sorted(repr(exchange) for exchange in still_open))
            raise AssertionError(
                f"{len(still_open)} response(s) still open after {timeout} s:\n  - {listed}"
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

        return serve(self._exchanges, host=host, port=port)

    def client(self, **options: Any) -> Client:
        """An :class:`anthropic_rx.Client` wired to :attr:`transport` (``options`` are the
        client's own, e.g. ``max_retries=0``). Close it with ``aclose`` or ``async with``."""
        from .._client import Client

        return Client(transport=self.transport, **options)

    # --- what to answer ------------------------------------------------------------------

    def _choose(self, request: RecordedRequest) -> FakeResponse:
        """The response to ``request``: the API's refusal of a request it would refuse, else
        the next planned response, else :attr:`default`'s."""
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


# --- in-memory transport ---------------------------------------------------------------------


class _MemoryTransport(httpx.AsyncBaseTransport):
    def __init__(self, exchanges: Exchanges) -> None:
        self._exchanges = exchanges

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        target = request.url.raw_path.decode("ascii")
        answer = self._exchanges.receive(
            request.method, target, list(request.headers.multi_items()), content
        )
        plan = answer.response
        if plan.kind == "connection_error":
            raise httpx.ConnectError("FakeAnthropic: planned connection error", request=request)
        read_timeout = _read_timeout(request)
        exchange = self._exchanges.open(answer, "memory")
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
        self, exchange: Exchange, request: httpx.Request, read_timeout: float | None
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
