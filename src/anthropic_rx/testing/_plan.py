"""Planned responses and how their bytes are delivered: one implementation for both transports.

A :class:`FakeResponse` says what to answer (status, headers, body) and how to deliver the body
(chunking, pacing, truncation, a dropped connection, a stall). :func:`body_chunks` turns it into
an async iterator of byte chunks that the in-memory transport and the loopback server both
consume; a planned dropped connection is the :class:`PlannedDisconnect` exception, which each
transport turns into its own kind of failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import itertools
import json
import math
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from ._replies import Reply, sse_bytes

__all__ = [
    "ErrorOptions",
    "FakeResponse",
    "PlannedDisconnect",
    "RawOptions",
    "StreamOptions",
    "body_chunks",
]

PING_FRAME = b'event: ping\ndata: {"type":"ping"}\n\n'

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "rate_limit_error": "Number of requests has exceeded your rate limit",
    "api_error": "Internal server error",
    "not_found_error": "Not found",
}
_FRAME_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_DELTA_FRAME = re.compile(
    rb'^(?:event: ?content_block_delta\r?$|data: ?\{"type": ?"content_block_delta")', re.M
)
_FORBIDDEN_HEADERS = frozenset({"content-length", "transfer-encoding"})

StreamSource = Reply | bytes | bytearray | str | os.PathLike[str] | Iterable[Mapping[str, Any]]


class ErrorOptions(TypedDict, total=False):
    """The keyword options of :meth:`FakeResponse.error` (and ``fake.add_error``)."""

    headers: Mapping[str, str] | None


class _BodyOptions(ErrorOptions, total=False):
    chunk_size: int | None
    delay: float | None
    latency: float | None
    truncate_after: int | None
    disconnect_after: int | None


class RawOptions(_BodyOptions, total=False):
    """The keyword options of :meth:`FakeResponse.raw` (and ``fake.add_response``): there
    described, with their defaults."""

    content_type: str


class StreamOptions(_BodyOptions, total=False):
    """The keyword options of :meth:`FakeResponse.stream` (and ``fake.add_stream``): there
    described, with their defaults."""

    status: int
    error_after: tuple[int, str, str] | None
    tokens_per_second: float | None
    stall_after: int | None
    stall_for: float | None
    stall_ping_every: float | None


class PlannedDisconnect(Exception):
    """The plan drops the connection here (raised by :func:`body_chunks`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeResponse:
    """One planned answer of :class:`~anthropic_rx.testing.FakeAnthropic`.

    Build it with :meth:`stream`, :meth:`error`, :meth:`raw` or :meth:`connection_error`; queue
    it with ``fake.add(...)`` (``fake.add_stream(...)`` and friends do both), or return it from a
    ``fake.default`` callable.

    Delivery options (byte offsets count body bytes; ``None`` means "not planned"):

    - ``chunk_size``: send the body in chunks of this many bytes, the last shorter (a pause or
      stall point starts a new chunk). Default: one chunk per SSE event.
    - ``tokens_per_second``: wait ``1 / tokens_per_second`` s before each
      ``content_block_delta`` event (a chunk boundary is placed at each one).
    - ``delay``: wait this many seconds before each chunk.
    - ``latency``: wait this many seconds before the status line and headers.
    - ``truncate_after``: end the body cleanly after this many bytes (the client sees a
      complete, short body).
    - ``disconnect_after``: drop the connection after this many bytes (the client sees a
      broken body: ``httpx.RemoteProtocolError``).
    - ``stall_after`` / ``stall_for``: after this many bytes, send nothing for ``stall_for``
      seconds (``None``: until the client goes away), then go on.
    - ``stall_ping_every``: during the stall, a ``ping`` event every this many seconds (the
      stall must then sit between two events).

    All waits are ``asyncio`` sleeps, so any number of responses run concurrently.
    """

    kind: Literal["stream", "raw", "error", "connection_error"] = "stream"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunk_size: int | None = None
    tokens_per_second: float | None = None
    delay: float | None = None
    latency: float | None = None
    truncate_after: int | None = None
    disconnect_after: int | None = None
    stall_after: int | None = None
    stall_for: float | None = None
    stall_ping_every: float | None = None
    _frames: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be 200..599, not {self.status}")
        for name in ("chunk_size", "truncate_after", "disconnect_after", "stall_after"):
            value = getattr(self, name)
            if value is not None and (value < 0 or (name == "chunk_size" and value < 1)):
                raise ValueError(f"{name} must be {'positive' if name == 'chunk_size' else '>= 0'}")
        for name in ("tokens_per_second", "stall_ping_every"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("delay", "latency", "stall_for"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0")
        if self.truncate_after is not None and self.disconnect_after is not None:
            raise ValueError("truncate_after and disconnect_after exclude each other")
        if self.stall_after is None and (
            self.stall_for is not None or self.stall_ping_every is not None
        ):
            raise ValueError("stall_for and stall_ping_every need stall_after")
        for name, _ in self.headers:
            if name.lower() in _FORBIDDEN_HEADERS:
                raise ValueError(f"the {name} header is set by the fake, not by the plan")
        frames = _frame_starts(self.body)
        object.__setattr__(self, "_frames", frames)
        stall = self.stall_after
        if (
            self.stall_ping_every is not None
            and stall is not None
            and stall not in frames
            and stall != len(self.body)
        ):
            near = sorted(frames, key=lambda offset: abs(offset - stall))[:2]
            raise ValueError(
                f"pings during a stall must fall between events: stall_after={stall} is inside "
                f"an event (event boundaries nearby: {sorted(near)})"
            )

    # --- constructors --------------------------------------------------------------------

    @classmethod
    def stream(
        cls,
        source: StreamSource,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        error_after: tuple[int, str, str] | None = None,
        chunk_size: int | None = None,
        tokens_per_second: float | None = None,
        delay: float | None = None,
        latency: float | None = None,
        truncate_after: int | None = None,
        disconnect_after: int | None = None,
        stall_after: int | None = None,
        stall_for: float | None = None,
        stall_ping_every: float | None = None,
    ) -> FakeResponse:
        """A ``text/event-stream`` response. The delivery options are described on the class.

        Args:
            source: a :class:`Reply`, SSE bytes, the path of a ``.sse`` file (``str`` or
                ``Path``; read now), or wire event dicts.
            error_after: ``(n, error_type, message)``: keep the first ``n`` events, then send
                an ``error`` event and end the body.
            status: of the response.
            headers: of the response; they override the defaults
                (``content-type: text/event-stream; charset=utf-8``, ``cache-control``).

        Raises:
            ValueError: an option is out of range or options contradict each other.
            OSError: ``source`` is a path that cannot be read.
        """
        body = _stream_body(source)
        if error_after is not None:
            count, error_type, message = error_after
            if count < 0:
                raise ValueError("error_after needs a number of events >= 0")
            starts = [*_frame_starts(body), len(body)]
            cut = starts[min(count, len(starts) - 1)]
            error = {"type": "error", "error": {"type": error_type, "message": message}}
            body = body[:cut] + sse_bytes([error])
        return cls(
            kind="stream",
            status=status,
            headers=_headers(
                {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
                headers,
            ),
            body=body,
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

    @classmethod
    def error(
        cls,
        status: int,
        error_type: str | None = None,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> FakeResponse:
        """The API's JSON error: ``{"type": "error", "error": {"type", "message"},
        "request_id"}`` (the request id is filled in per request).

        ``error_type`` defaults to the API's type for ``status`` (``429`` →
        ``rate_limit_error``, ``529`` → ``overloaded_error``, other 5xx → ``api_error``...),
        ``message`` to a short text for it.
        """
        kind = (
            error_type
            or _ERROR_TYPES.get(status)
            or ("api_error" if status >= 500 else "invalid_request_error")
        )
        text = message if message is not None else _ERROR_MESSAGES.get(kind, kind)
        body = {"type": "error", "error": {"type": kind, "message": text}, "request_id": None}
        return cls(
            kind="error",
            status=status,
            headers=_headers({"content-type": "application/json"}, headers),
            body=json.dumps(body, separators=(",", ":")).encode(),
        )

    @classmethod
    def raw(
        cls,
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
    ) -> FakeResponse:
        """Any status and body: a proxy's HTML error page, a JSON body with status 200...

        Sent with a ``content-length`` unless ``truncate_after`` is given (then chunked). The
        delivery options are described on the class.
        """
        return cls(
            kind="raw",
            status=status,
            headers=_headers({"content-type": content_type}, headers),
            body=bytes(body),
            chunk_size=chunk_size,
            delay=delay,
            latency=latency,
            truncate_after=truncate_after,
            disconnect_after=disconnect_after,
        )

    @classmethod
    def connection_error(cls) -> FakeResponse:
        """No answer: the in-memory transport raises ``httpx.ConnectError``; the loopback
        server closes the connection without a response (``httpx.RemoteProtocolError``)."""
        return cls(kind="connection_error")

    # --- delivery ------------------------------------------------------------------------

    @property
    def content_length(self) -> int | None:
        """The ``content-length`` to send, or ``None`` for a chunked body (streams, and any
        body that a plan may end early)."""
        if self.kind == "stream" or self.truncate_after is not None:
            return None
        return len(self.body)

    def with_request_id(self, request_id: str) -> FakeResponse:
        """This response, with ``request_id`` in its body when it is an API error."""
        if self.kind != "error":
            return self
        body = self.body.replace(
            b'"request_id":null', b'"request_id":' + json.dumps(request_id).encode(), 1
        )
        return dataclasses.replace(self, body=body)

    @property
    def reason(self) -> bytes:
        """The HTTP reason phrase for :attr:`status` (empty when the status has none)."""
        try:
            return http.HTTPStatus(self.status).phrase.encode()
        except ValueError:
            return b""


# --- steps -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Send:
    pause: float
    data: bytes


@dataclass(frozen=True, slots=True)
class _Stall:
    seconds: float | None
    ping_every: float | None


@dataclass(frozen=True, slots=True)
class _Drop:
    pass


_Step = _Send | _Stall | _Drop


def _steps(plan: FakeResponse) -> list[_Step]:
    """What to do, in order: the pure part of :func:`body_chunks`."""
    body = plan.body
    if plan.truncate_after is not None:
        limit = min(plan.truncate_after, len(body))
    elif plan.disconnect_after is not None:
        limit = min(plan.disconnect_after, len(body))
    else:
        limit = len(body)
    frames = plan._frames
    paced: set[int] = set()
    if plan.tokens_per_second is not None:
        paced = {start for start in frames if _DELTA_FRAME.match(body, start)}
    stall = plan.stall_after
    # Pauses and the stall fall on these offsets; chunk_size chunks each stretch between them.
    fixed = {0, limit, *(s for s in paced if s < limit)}
    if stall is not None and stall <= limit:
        fixed.add(stall)
    cuts = set(fixed)
    if plan.chunk_size is None:
        cuts.update(s for s in frames if s < limit)
    else:
        ordered = sorted(fixed)
        for start, end in itertools.pairwise(ordered):
            cuts.update(range(start, end, plan.chunk_size))
    token_pause = 0.0 if plan.tokens_per_second is None else 1.0 / plan.tokens_per_second
    delay = plan.delay or 0.0
    steps: list[_Step] = []
    points = sorted(cuts)
    for start, end in itertools.pairwise(points):
        if start == stall:
            steps.append(_Stall(plan.stall_for, plan.stall_ping_every))
        pause = delay + (token_pause if start in paced else 0.0)
        steps.append(_Send(pause, body[start:end]))
    if stall is not None and stall == limit:
        steps.append(_Stall(plan.stall_for, plan.stall_ping_every))
    if plan.disconnect_after is not None:
        steps.append(_Drop())
    return steps


async def body_chunks(plan: FakeResponse) -> AsyncGenerator[bytes, None]:
    """The body of ``plan`` as chunks, delivered on the plan's schedule.

    Ends when the (possibly truncated) body was sent. Raises :class:`PlannedDisconnect` where
    the plan drops the connection. Stalls and pauses are ``asyncio`` sleeps; cancelling the
    consumer cancels them.
    """
    for step in _steps(plan):
        if isinstance(step, _Send):
            if step.pause > 0:
                await asyncio.sleep(step.pause)
            yield step.data
        elif isinstance(step, _Stall):
            async for ping in _stall(step):
                yield ping
        else:
            raise PlannedDisconnect("the plan drops the connection here")


async def _stall(step: _Stall) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    end = math.inf if step.seconds is None else loop.time() + step.seconds
    every = math.inf if step.ping_every is None else step.ping_every
    while True:
        now = loop.time()
        if now >= end:
            return
        wait = min(every, end - now)
        if wait == math.inf:
            # Stalled for good: only the client going away (cancellation) ends this.
            await loop.create_future()
        await asyncio.sleep(wait)
        if loop.time() < end and every != math.inf:
            yield PING_FRAME


# --- helpers ---------------------------------------------------------------------------------


def _frame_starts(body: bytes) -> tuple[int, ...]:
    """The offsets at which the SSE events of ``body`` start."""
    starts = [0]
    starts.extend(m.end() for m in _FRAME_END.finditer(body))
    if starts[-1] == len(body) and len(starts) > 1:
        starts.pop()
    return tuple(starts) if body else ()


def _stream_body(source: StreamSource) -> bytes:
    if isinstance(source, Reply):
        return source.to_sse()
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        return Path(source).read_bytes()
    return sse_bytes(source)


def _headers(
    defaults: Mapping[str, str], extra: Mapping[str, str] | None
) -> tuple[tuple[str, str], ...]:
    merged = dict(defaults)
    merged.update({name.lower(): value for name, value in (extra or {}).items()})
    return tuple(merged.items())
