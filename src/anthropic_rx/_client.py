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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

import httpx
import pydantic
import pydantic_core
from reactivex import abc
from reactivex.disposable import Disposable

from ._classify import _check_response, _meta_of
from ._events import MessageStreamEvent
from ._exceptions import (
    AnthropicRxError,
    APIConnectionError,
    APITimeoutError,
)
from ._fields import CONTROL, is_token, value_problem
from ._pacing import Demand, current_demand
from ._redact import _echoable, _redacted, _shown_name
from ._retry import _retry_delay, _should_retry
from ._source import Body, EventReader, EventStream, drive_async, event_loop_of, stop_reading
from ._sse import DEFAULT_MAX_LINE_BYTES
from ._transport import StreamingTransport, aiter_decoded
from ._version import __version__

__all__ = ["DEFAULT_BASE_URL", "Client"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
_STREAMS_PER_POOL = 32
_MAX_POOLS = 64
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f\s]")
_USERINFO = re.compile(r"//[^/?#]*@")
# The framing and routing of the connection, which the transport alone decides: a caller's
# value could make the server read the body, or what follows it, as another request.
_TRANSPORT_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_SCHEMES = ("http", "https")


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
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        if key is not None:
            _check_api_key(key, "api_key" if api_key is not None else "ANTHROPIC_API_KEY")
        secret = key or None
        if base_url is not None:
            self._base_url = _checked_base_url(base_url, "base_url", secret)
        elif os.environ.get("ANTHROPIC_BASE_URL"):
            self._base_url = _checked_base_url(
                os.environ["ANTHROPIC_BASE_URL"], "ANTHROPIC_BASE_URL", secret
            )
        else:
            self._base_url = DEFAULT_BASE_URL
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
        if http_client is not None:
            self._pools = _Pools(http_client)
        else:
            # No read timeout in httpx: the wait for the response is bounded in ``_send`` and
            # the body by the stream's watchdog, both by the per-call idle and total values.
            timeouts = httpx.Timeout(connect=connect_timeout, read=None, write=30.0, pool=None)
            if transport is not None:  # one transport: one pool, whatever the load
                self._pools = _Pools(httpx.AsyncClient(transport=transport, timeout=timeouts))
            elif not _proxied(self._base_url):
                self._pools = _Pools(
                    httpx.AsyncClient(
                        transport=StreamingTransport(ssl_context=httpx.create_ssl_context()),
                        timeout=timeouts,
                    )
                )
            else:
                ssl_context = httpx.create_ssl_context()  # built once: it costs ~20 ms

                def new_pool() -> httpx.AsyncClient:
                    return httpx.AsyncClient(
                        verify=ssl_context,
                        timeout=timeouts,
                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                    )

                self._pools = _Pools(new_pool(), grow=new_pool)

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
        headers = self._headers(betas, extra_headers)
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

    def _headers(
        self, betas: Sequence[str] | None, extra_headers: Mapping[str, str] | None
    ) -> dict[str, str]:
        """The request's headers, every one of the caller's checked (see :meth:`stream`)."""
        secret = self._api_key
        extra = _checked_headers(extra_headers, "extra_headers", secret)
        per_call = _checked_betas(betas or (), "betas", secret)
        headers = {
            "accept": "text/event-stream",
            "content-type": "application/json",
            "anthropic-version": self._anthropic_version,
            "user-agent": f"anthropic-rx/{__version__}",
            **self._default_headers,
        }
        if self._api_key:
            headers["x-api-key"] = self._api_key
        merged = list(dict.fromkeys([*self._betas, *per_call]))
        if merged:
            headers["anthropic-beta"] = ",".join(merged)
        headers.update(extra)
        return headers

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


class _Pools:
    """The connection pools of one client: one, split into more as streams pile up.

    httpcore's pool does work in proportion to its connections for every request it places,
    so a thousand streams in one pool cost time quadratic in their number. A new stream goes
    to the least busy pool; a new pool opens only when every pool has ``_STREAMS_PER_POOL``
    open streams. One stream at a time always uses the first pool, and so its connection.
    """

    __slots__ = ("_active", "_grow", "_pools")

    def __init__(
        self, first: httpx.AsyncClient, *, grow: Callable[[], httpx.AsyncClient] | None = None
    ) -> None:
        self._pools = [first]
        self._active = [0]
        self._grow = grow

    def acquire(self) -> httpx.AsyncClient:
        active = self._active
        index = min(range(len(active)), key=active.__getitem__)
        if (
            active[index] >= _STREAMS_PER_POOL
            and self._grow is not None
            and len(active) < _MAX_POOLS
        ):
            self._pools.append(self._grow())
            active.append(0)
            index = len(active) - 1
        active[index] += 1
        return self._pools[index]

    def release(self, pool: httpx.AsyncClient) -> None:
        self._active[self._pools.index(pool)] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


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


def _check_value(value: object, label: str) -> None:
    """Refuse a header value the client builds from ``value``; the message quotes only
    ``label``."""
    if not isinstance(value, str):
        raise TypeError(f"{label} must be a str, not {type(value).__name__}")
    problem = value_problem(value)
    if problem is not None:
        raise ValueError(f"{label} {problem}")


def _check_api_key(key: object, label: str) -> None:
    """Refuse a key that cannot be sent as a header; the message never quotes the key."""
    if not isinstance(key, str):
        raise TypeError(f"{label} must be a str, not {type(key).__name__}")
    problem = value_problem(key)
    if problem is None:
        return
    if not key.isascii() and not CONTROL.search(key):
        problem = "is not ASCII (an API key is; was something else pasted with it?)"
    elif "line break" in problem:
        problem += "; a key read from a file often ends with a newline"
    raise ValueError(f"{label} {problem}")


def _checked_headers(
    headers: Mapping[str, str] | None, argument: str, secret: str | None
) -> dict[str, str]:
    """``headers`` with lower-case names, once each name and value is fit for the wire.

    Raises:
        ValueError: a name is not an RFC 9110 token or is one the transport sets, or a value
            holds a line break, NUL or control character, or is not ASCII. The value is never
            quoted (it may be a key); the name is, with the API key blanked.
        TypeError: ``headers`` is not a mapping, or a name or value is not a ``str``.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{argument} must be a mapping of str to str")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str):
            raise TypeError(f"{argument}: header names must be str, not {type(name).__name__}")
        if not is_token(name):
            raise ValueError(
                f"{argument}: {_shown_name(name, secret)} is not a valid header name "
                "(RFC 9110 token: ASCII letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        lowered = name.lower()
        if lowered in _TRANSPORT_HEADERS:
            raise ValueError(
                f"{argument}: the {lowered!r} header is set by the HTTP transport and cannot be "
                "overridden"
            )
        if not isinstance(value, str):
            raise TypeError(
                f"{argument}: the value of header {_shown_name(name, secret)} must be str, "
                f"not {type(value).__name__}"
            )
        problem = value_problem(value)
        if problem is not None:
            raise ValueError(
                f"{argument}: the value of header {_shown_name(name, secret)} {problem}"
            )
        checked[lowered] = value
    return checked


def _checked_betas(betas: object, argument: str, secret: str | None) -> tuple[str, ...]:
    """``betas`` as a tuple, once each entry is fit for the ``anthropic-beta`` header."""
    if isinstance(betas, str | bytes):
        raise TypeError(f"{argument} takes a list of beta names, not one string: {argument}=[...]")
    if not isinstance(betas, Iterable):
        raise TypeError(f"{argument} takes a list of beta names, not {type(betas).__name__}")
    checked = tuple(betas)
    for index, beta in enumerate(checked):
        _check_value(beta, f"{argument}[{index}] {_shown_name(str(beta), secret)}")
    return checked


def _checked_base_url(url: object, label: str, secret: str | None) -> str:
    """``url`` without its trailing slashes, once it is an absolute http(s) URL with a host.

    Raises:
        ValueError: it is not (the message shows it with its user info and the key blanked).
        TypeError: it is not a ``str``.
    """
    if not isinstance(url, str):
        raise TypeError(f"{label} must be a str, not {type(url).__name__}")
    shown = repr(_USERINFO.sub("//[redacted]@", _redacted(url, secret)))
    if not url:
        raise ValueError(f"{label} is empty: pass an http:// or https:// URL")
    if _SPACE_OR_CONTROL.search(url):
        raise ValueError(f"{label} contains whitespace or a control character: {shown}")
    if "://" not in url:
        guess = "http://" + _USERINFO.sub("//[redacted]@", "//" + _redacted(url, secret))[2:]
        raise ValueError(
            f"{label} must start with http:// or https://, got {shown} (did you mean {guess!r}?)"
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        reason = _USERINFO.sub("//[redacted]@", _redacted(str(exc), secret))
        raise ValueError(f"{label} is not a valid URL: {shown} ({reason})") from None
    if parsed.scheme not in _SCHEMES:
        raise ValueError(f"{label} must be an http:// or https:// URL, got {shown}")
    if not parsed.host:
        raise ValueError(f"{label} has no host: {shown}")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{label} has a port outside 1-65535: {shown}")
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise ValueError(
            f"{label} must not have a query or fragment (/v1/messages is appended): {shown}"
        )
    return url.rstrip("/")


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


def _proxied(url: str) -> bool:
    """Whether the environment names a proxy for ``url`` (``*_PROXY``, ``NO_PROXY``), as httpx
    reads it."""
    proxies = urllib.request.getproxies_environment()
    parsed = httpx.URL(url)
    if not (proxies.get(parsed.scheme) or proxies.get("all")):
        return False
    return not proxy_bypass_environment(parsed.host, proxies)
