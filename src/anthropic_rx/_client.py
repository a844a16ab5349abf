"""The HTTP client: a streamed ``POST /v1/messages`` as a cold Observable of typed events.

```python
client = arx.Client()                       # ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
events = client.stream(model="claude-sonnet-4-5", max_tokens=1024,
                       messages=[{"role": "user", "content": "Hello"}])
```

Each subscription sends one request (nothing is sent before subscribe) and reads its body
through the same path as :func:`anthropic_rx.from_sse_bytes`. Retries happen only before the
response is accepted, never after an event was emitted. Dispose, at any moment, closes the
response and returns its connection to the pool.

The options are checked by :mod:`anthropic_rx._config` and :mod:`anthropic_rx._headers`, the
connections held by :mod:`anthropic_rx._pools`; what is retried is :mod:`anthropic_rx._retry`'s
to decide, what a response is :mod:`anthropic_rx._classify`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pydantic
import pydantic_core
from reactivex import abc
from reactivex.disposable import Disposable

from ._classify import _check_response, _meta_of
from ._config import (
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_BASE_URL,
    configured_api_key,
    configured_base_url,
)
from ._drivers import Body, drive_async, stop_reading
from ._event_loop import event_loop_of
from ._events import MessageStreamEvent
from ._exceptions import (
    AnthropicRxError,
    APIConnectionError,
    APITimeoutError,
)
from ._headers import _check_value, _checked_betas, _checked_headers, request_headers
from ._pacing import Demand, current_demand
from ._pools import open_pools
from ._reader import EventReader
from ._redact import _echoable
from ._retry import _retry_delay, _should_retry
from ._source import EventStream
from ._sse import DEFAULT_MAX_LINE_BYTES
from ._transport import aiter_decoded

__all__ = ["DEFAULT_BASE_URL", "Client"]


class _Unset:
    """Marks a per-call option left at the client's setting (``None`` means "no limit")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class Client:
    """A client of the Messages API whose replies are Observables.

    Args:
        api_key: the API key; default ``ANTHROPIC_API_KEY``. Sent as ``x-api-key``; never shown
            in a repr, log line or exception. Required only for the real API: a client pointed
            elsewhere (a proxy, ``anthropic_rx.testing.FakeAnthropic``) may have none.
        base_url: an absolute ``http://`` or ``https://`` URL, to which ``/v1/messages`` is
            appended; default ``ANTHROPIC_BASE_URL`` (an empty variable counts as unset), else
            ``https://api.anthropic.com``.
        max_retries: retries of connection errors and 408/409/429/5xx before the response is
            accepted (``x-should-retry`` decides when present); exponential backoff with jitter,
            ``retry-after-ms`` / ``retry-after`` honoured up to 60 s.
        timeout: seconds for one try of a request, from sending it to the end of its body
            (waiting for the response included; a retry starts a new count), then
            :class:`APITimeoutError` with ``kind="total"``.
        connect_timeout: seconds to establish a connection.
        idle_timeout: seconds without an event other than ``ping`` (the API's keep-alive pings
            do not reset it), or without the response's headers, before
            :class:`APITimeoutError` with ``kind="idle"``.
        default_headers: sent with every request; they override the client's own headers
            (``accept``, ``anthropic-version``, ``x-api-key``...) but never the transport's.
        betas: ``anthropic-beta`` values sent with every request, merged with per-call ones
            (a list of names, not one string).
        anthropic_version: the ``anthropic-version`` header.
        http_client: an ``httpx.AsyncClient`` to use (its pool, proxies, limits); not closed
            by :meth:`aclose`.
        transport: an httpx transport for the client's own ``httpx.AsyncClient`` (e.g.
            ``FakeAnthropic().transport``).
        max_line_bytes: the longest SSE line accepted.

    All streams of one client share one connection pool. Without ``http_client`` or
    ``transport``, requests go through the client's own HTTP/1.1 transport, made for many long
    streamed responses (httpx's own when the environment names a proxy for ``base_url``). Use
    ``async with Client() as client`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float | None = 600.0,
        connect_timeout: float = 10.0,
        idle_timeout: float | None = 60.0,
        default_headers: Mapping[str, str] | None = None,
        betas: Sequence[str] = (),
        anthropic_version: str = DEFAULT_ANTHROPIC_VERSION,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        """Check every option (nothing a caller passes can reach the wire unchecked), then set
        up the connection pools. Nothing is sent until a stream is subscribed.

        Raises:
            ValueError: ``base_url`` (or ``ANTHROPIC_BASE_URL``) is not an absolute ``http://``
                or ``https://`` URL with a host (no scheme, another scheme, empty, whitespace
                or control characters, a port outside 1-65535, a query or a fragment);
                ``api_key`` (or ``ANTHROPIC_API_KEY``), ``anthropic_version`` or a ``betas``
                entry holds a line break, NUL or other control character, or is not ASCII; a
                ``default_headers`` name is not an RFC 9110 token, or its value holds a line
                break, NUL or other control character, or is not ASCII; a ``default_headers``
                name is one the transport sets (``connection``, ``content-length``, ``host``,
                ``keep-alive``, ``proxy-connection``, ``te``, ``trailer``,
                ``transfer-encoding``, ``upgrade``); no API key for the real API; a negative
                ``max_retries``, a timeout that is not positive, or both ``http_client`` and
                ``transport``. A message names the option or header at fault and never shows
                the API key or a header's value.
            TypeError: ``api_key``, ``base_url``, ``anthropic_version``, a header name or
                value, or a ``betas`` entry is not a ``str``; ``betas`` is one string rather
                than a list of them.
        """
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        for name, value in (("timeout", timeout), ("idle_timeout", idle_timeout)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        key = configured_api_key(api_key)
        secret = key or None
        self._base_url = configured_base_url(base_url, secret)
        self._default_headers = _checked_headers(default_headers, "default_headers", secret)
        self._betas = _checked_betas(betas, "betas", secret)
        _check_value(anthropic_version, "anthropic_version")
        if not key and self._base_url == DEFAULT_BASE_URL and transport is None and not http_client:
            raise ValueError(
                "no API key: pass Client(api_key=...) or set ANTHROPIC_API_KEY "
                "(or point base_url at a proxy or anthropic_rx.testing.FakeAnthropic)"
            )
        self._api_key = key or None
        self.max_retries = max_retries
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self._anthropic_version = anthropic_version
        self._max_line_bytes = max_line_bytes
        self._owns_http = http_client is None
        self._pools = open_pools(
            self._base_url,
            http_client=http_client,
            transport=transport,
            connect_timeout=connect_timeout,
        )

    @property
    def base_url(self) -> str:
        """Where requests go."""
        return self._base_url

    def __repr__(self) -> str:
        return f"Client(base_url={self._base_url!r})"

    async def aclose(self) -> None:
        """Close the connection pools (not an ``http_client`` passed in)."""
        if self._owns_http:
            await self._pools.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def stream(
        self,
        *,
        betas: Sequence[str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | _Unset | None = UNSET,
        idle_timeout: float | _Unset | None = UNSET,
        max_retries: int | None = None,
        **params: Any,
    ) -> EventStream:
        """The reply to one Messages API request, as a cold Observable of typed events.

        ``params`` are the Messages API parameters (``model``, ``max_tokens``, ``messages``,
        ``system``, ``tools``, ``thinking``...); pydantic models among them (e.g. the content
        blocks of an earlier reply) are sent as their JSON. ``stream: true`` is added.

        Each subscription sends one request; it needs a running asyncio event loop (use
        ``arx.to_iterator`` from synchronous code). Emits every wire event, ``ping`` and
        ``error`` included; completes after ``message_stop`` or after an ``error`` event.

        Errors: :class:`APIError` subclasses for HTTP error statuses (after retries),
        :class:`APIConnectionError` / :class:`APITimeoutError` for the network,
        :class:`ProtocolError` for a response that is not an event stream,
        :class:`IncompleteStreamError` for a body cut before ``message_stop``; each with
        ``.meta`` when a response arrived and ``.partial_message`` after the stream opened.

        Any other exception raised while the request is built, sent or read (a custom
        transport's or event hook's own, ``httpx.LocalProtocolError``,
        ``httpx.UnsupportedProtocol``, ``httpx.InvalidURL``...) says the request itself is
        wrong: it is passed to ``on_error`` as it is, never retried or wrapped, with the
        response closed.

        Disposal cancels the request at any point and closes the response.

        Raises:
            TypeError: a required parameter is missing or a parameter cannot be sent as JSON;
                an ``extra_headers`` name or value or a ``betas`` entry is not a ``str``;
                ``betas`` is one string rather than a list of them (at call time).
            ValueError: ``stream=False``; an ``extra_headers`` name is not an RFC 9110 token
                or is one the transport sets (``connection``, ``content-length``, ``host``,
                ``keep-alive``, ``proxy-connection``, ``te``, ``trailer``,
                ``transfer-encoding``, ``upgrade``); an ``extra_headers`` value or a ``betas``
                entry holds a line break, NUL or other control character, or is not ASCII (at
                call time: nothing is sent). The message names the header, never its value.
        """
        for required in ("model", "max_tokens", "messages"):
            if required not in params:
                raise TypeError(f"stream() missing required Messages API parameter {required!r}")
        if params.get("stream", True) is not True:
            raise ValueError("stream() always streams; do not pass stream=False")
        body = {**params, **(extra_body or {}), "stream": True}
        try:
            content = pydantic_core.to_json(_jsonable(body))
        except pydantic_core.PydanticSerializationError as exc:
            raise TypeError(f"a parameter cannot be sent as JSON: {exc}") from exc
        headers = request_headers(
            api_key=self._api_key,
            anthropic_version=self._anthropic_version,
            default_headers=self._default_headers,
            default_betas=self._betas,
            betas=betas,
            extra_headers=extra_headers,
        )
        total = self.timeout if isinstance(timeout, _Unset) else timeout
        idle = self.idle_timeout if isinstance(idle_timeout, _Unset) else idle_timeout
        retries = self.max_retries if max_retries is None else max_retries
        request = _Request(
            url=f"{self._base_url}/v1/messages",
            headers=headers,
            content=content,
            total=total,
            idle=idle,
            retries=retries,
        )

        def subscribe(
            observer: abc.ObserverBase[MessageStreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            loop = event_loop_of(scheduler)
            reader = EventReader(
                observer, max_line_bytes=self._max_line_bytes, secret=_echoable(self._api_key)
            )
            task = loop.create_task(self._run(request, reader, current_demand()))
            return Disposable(lambda: stop_reading(reader, task))

        return EventStream(subscribe)

    async def _run(self, request: _Request, reader: EventReader, demand: Demand | None) -> None:
        http = self._pools.acquire()
        try:
            try:
                response, sent_at = await self._open(http, request)
            except Exception as exc:  # ours, or whatever a transport or hook raised: all told
                reader.fail(exc)
                return
            try:
                reader.meta = _meta_of(response, self._api_key)
            except Exception as exc:
                with contextlib.suppress(Exception):  # exc is the error to tell
                    await response.aclose()
                reader.fail(exc)
                return
            # ``timeout`` counts from sending the request that was answered, not from the
            # headers: a slow first byte and a slow body share one budget.
            deadline = None if request.total is None else sent_at + request.total
            await drive_async(
                Body(aiter_decoded(response), response.aclose, reader.meta, drain=True),
                reader,
                demand,
                idle_timeout=request.idle,
                deadline=deadline,
            )
        finally:
            self._pools.release(http)

    async def _open(
        self, http: httpx.AsyncClient, request: _Request
    ) -> tuple[httpx.Response, float]:
        """Send the request, retrying what may be retried; return an accepted event stream.

        Each try has the whole ``timeout``. Returns the response and the loop time at which
        its request was sent.

        Raises:
            APIError, APIConnectionError, APITimeoutError, ProtocolError: after the last try.
        """
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            retry_after: float | None = None
            sent_at = loop.time()
            try:
                response = await self._send(http, request)
            except APIConnectionError as exc:
                error: AnthropicRxError = exc
                retryable = True
            else:
                try:
                    error_or_none = await _check_response(
                        response, secret=self._api_key, limit=_wait_limit(request)
                    )
                except BaseException:
                    # What is raised (a cancellation among others) goes on, whatever the
                    # close raises too.
                    with contextlib.suppress(Exception):
                        await response.aclose()
                    raise
                if error_or_none is None:
                    return response, sent_at
                error = error_or_none
                retryable = _should_retry(response)
                retry_after = error.meta.retry_after if error.meta else None
            if not retryable or attempt >= request.retries:
                raise error
            await asyncio.sleep(_retry_delay(attempt, retry_after))
            attempt += 1

    @staticmethod
    async def _send(http: httpx.AsyncClient, request: _Request) -> httpx.Response:
        http_request = http.build_request(
            "POST", request.url, headers=request.headers, content=request.content
        )
        limit = _wait_limit(request)
        total = request.total
        try:
            async with asyncio.timeout(limit):
                return await http.send(http_request, stream=True)
        except (httpx.TimeoutException, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                kind = "total" if limit == total else "idle"
            elif isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                kind = "connect"
            else:  # a read timeout of the caller's own http_client
                kind = "read"
            error = APITimeoutError(f"timed out waiting for the API ({kind})", kind=kind)
            raise error from exc
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol):
            # The request cannot be sent as it is: not the network, and no retry can help.
            raise
        except httpx.TransportError as exc:
            raise APIConnectionError(f"could not reach the API: {exc!r}") from exc


class _Request:
    __slots__ = ("content", "headers", "idle", "retries", "total", "url")

    def __init__(
        self,
        *,
        url: str,
        headers: dict[str, str],
        content: bytes,
        total: float | None,
        idle: float | None,
        retries: int,
    ) -> None:
        self.url = url
        self.headers = headers
        self.content = content
        self.total = total
        self.idle = idle
        self.retries = retries

    def __repr__(self) -> str:  # never the headers: they hold the API key
        return f"_Request(url={self.url!r})"


def _wait_limit(request: _Request) -> float | None:
    """How long to wait for what comes before the event stream: headers, or an error body.

    Nothing has come for as long as the request has waited, so the idle limit bounds that wait
    as well as the total one.
    """
    total, idle = request.total, request.idle
    return total if idle is None or (total is not None and total <= idle) else idle


def _jsonable(value: Any) -> Any:
    """Request data as JSON-ready values: pydantic models as the API's JSON of them."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
