"""``sse_response``: one reply, or one broadcast subscription, as a browser's event stream.

A Starlette response (built on sse-starlette's ``EventSourceResponse``: its disconnect
listener, ``send_timeout``, server-shutdown watcher and ``HEAD`` handling) that a FastAPI or
Starlette route returns for GET or POST. Nothing is subscribed before the response is sent.

```
 source ─ on_next ─▶ FrameQueue: FrameWriter ─▶ frames (bounded; pauses the source's Demand)
                                                   │
 browser ◀─ uvicorn ◀─ sse-starlette (send_timeout, disconnect, shutdown) ◀─ body: batches
                                                                         what waits; ": ping"
                                                                         after `ping` s silence
```

The source is subscribed with an observer of the response's own (:mod:`._frame_queue`): each
event becomes its frames in the call that delivers it, and the body, the only task between
the source and the socket, waits on the queue, which it can leave for a ping, or abandon when
``on_disconnect="detach"``.

- Framing and ids: see :mod:`._frames` (``text``, ``events``, ``ai-sdk``; ids are the
  broadcaster's, or positions among the source's events, pings included). A ``retry:`` line
  comes first; pings are ``: ping`` comments.
- Pacing: the source is pulled, never buffered without bound. When the browser stops reading,
  the socket's send buffer fills, then uvicorn's (64 KiB) and the frame queue (64 frames),
  and the source stops reading the model's response. A browser
  that cannot be sent to for ``send_timeout`` seconds is dropped as a disconnect (uvicorn logs
  "ASGI callable returned without completing response" as it closes the connection).
- Ending: the terminal frame (completion, error, or a broadcast's terminal entry) is the last
  one, then the response ends. A browser that leaves, one that is dropped, and a server
  shutdown (uvicorn's ``should_exit``, seen within half a second on every event loop; the
  response is then ended cleanly so the browser reconnects) are disconnects: with
  ``on_disconnect="cancel"`` the subscription is disposed and the model request closed at
  once; with ``"detach"`` the source is read to its end in the background while the event
  loop runs. A broadcast subscription is always disposed: the publisher holds the reply.
- Status: ``200 text/event-stream``, errors included (an EventSource reads nothing else),
  except ``204`` without a body for a direct reply asked for with ``Last-Event-ID`` (an
  EventSource reconnecting never starts a second generation) and, for a broadcast
  subscription, for an unknown channel or a resume after the reply's end.
- Compression: Starlette's ``GZipMiddleware`` (1.10) passes ``text/event-stream`` through
  uncompressed, so frames are not held back (tested).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Final, Literal, TypeAlias

import anyio
import reactivex
from sse_starlette.sse import EventSourceResponse, SendTimeoutError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .._events import MessageStreamEvent
from .._fields import is_token, value_problem
from ._broadcast import Broadcast, BroadcastSubscription, ChannelNotFound
from ._frame_queue import FrameQueue
from ._frames import SSEFormat, retry_frame, writer_for
from ._shutdown import wait_for_shutdown

__all__ = ["OnDisconnect", "SSEResponse", "sse_response"]

OnDisconnect: TypeAlias = Literal["cancel", "detach"]
"""What a browser leaving does to the source: dispose it, or read it to its end."""

logger = logging.getLogger("anthropic_rx.sinks")

_HEADERS: Final[Mapping[str, str]] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Headers that frame the stream: replacing one would break every browser's reading of it.
_OWN_HEADERS: Final = frozenset(
    {"content-type", "content-length", "transfer-encoding", "content-encoding", "connection"}
)
# A broadcast subscription's first notification decides the status (204 or 200); a slower one
# is not waited for: the 200 starts, so the browser's EventSource opens.
_FIRST_NOTIFICATION_WAIT: Final = 0.5
_BATCH_BYTES: Final = 64 * 1024  # frames already waiting are sent together, up to this size
_FINISH_TIMEOUT: Final = 1.0  # the end of a response cut by a server shutdown


class _Clock:
    """One timer per response for both of its clocks: pings on silence, and the send timeout.

    It ticks every eighth of the shorter interval, instead of a timeout armed and cancelled
    around each wait for a frame and each send, and the stream only counts its sends (no clock
    read per frame): the tick that sees the count unchanged knows the silence, or the stalled
    send, began at the tick before at the latest. A ping follows between ``ping`` and 1.25
    ``ping`` seconds of silence, queued only when no frame waits (so it never delays one); a
    send still waiting after ``send_timeout`` (up to 1.25 times it) is cancelled, and the
    cancelled send raises ``SendTimeoutError``.

    Attributes:
        sends: sends handed to the server so far (the stream counts them).
        sending: a send is under way.
    """

    def __init__(
        self,
        frames: FrameQueue,
        sender: asyncio.Task[object] | None,
        ping: float | None,
        send_timeout: float | None,
    ) -> None:
        self._frames = frames
        self._sender = sender
        self._ping = ping
        self._send_timeout = send_timeout
        self._loop = asyncio.get_running_loop()
        self.sends = 0
        self.sending = False
        self.expired = False
        self._seen = 0  # ``sends`` at the last tick that saw it change
        self._since = self._loop.time()  # that tick's time
        self._stalled = -1  # ``sends`` when the send under way was first seen
        self._stalled_since = 0.0
        intervals = [value for value in (ping, send_timeout) if value]
        self._period = min(intervals) / 8 if intervals else None
        self._handle: asyncio.TimerHandle | None = None
        if self._period is not None:
            self._handle = self._loop.call_later(self._period, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        sends = self.sends
        if sends != self._seen:
            self._seen = sends
            self._since = now
        if self.sending:
            # The send under way is the one after ``sends``; first seen now or at a tick before.
            if self._stalled != sends:
                self._stalled = sends
                self._stalled_since = now
            limit, sender = self._send_timeout, self._sender
            if limit and now - self._stalled_since >= limit and sender and not self.expired:
                self.expired = True
                sender.cancel()
        else:
            self._stalled = -1
            if self._ping and now - self._since >= self._ping and self._frames.ping():
                self._since = now
        assert self._period is not None
        self._handle = self._loop.call_later(self._period, self._tick)

    def timed_out(self) -> bool:
        """At a cancelled send: whether the cancel was the clock's alone (raise
        ``SendTimeoutError``), not someone else's."""
        sender = self._sender
        return self.expired and sender is not None and sender.uncancel() == 0

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class SSEResponse(EventSourceResponse):
    """The response :func:`sse_response` returns; see there. Send it once.

    (Private attributes avoid sse-starlette's own names: ``_ping`` is its ping task.)
    """

    def __init__(
        self,
        source: reactivex.Observable[MessageStreamEvent] | reactivex.Observable[Broadcast],
        *,
        format: SSEFormat,
        on_disconnect: OnDisconnect,
        ping: float | None,
        send_timeout: float | None,
        retry: float | None,
        headers: Mapping[str, str] | None,
        message_id: str | None,
    ) -> None:
        writer_for(format)  # ValueError for an unknown format, at the call
        if on_disconnect not in ("cancel", "detach"):
            raise ValueError(f'on_disconnect must be "cancel" or "detach", not {on_disconnect!r}')
        for name, value in (("ping", ping), ("send_timeout", send_timeout), ("retry", retry)):
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0 or None, not {value!r}")
        if not isinstance(source, reactivex.Observable):
            raise TypeError(f"source must be an Observable, not {type(source).__name__}")
        all_headers = dict(_HEADERS)
        if format == "ai-sdk":
            from ._ai_sdk import AI_SDK_HEADERS

            all_headers.update(AI_SDK_HEADERS)
        all_headers.update(_checked(headers))
        super().__init__(
            _nothing(),
            headers=all_headers,
            media_type="text/event-stream",
            ping=0,  # pings are written on silence by the body, not on a clock
            sep="\n",
            send_timeout=None,  # kept by the response's _Clock instead (see there)
        )
        self._source = source
        self._format: SSEFormat = format
        self._on_disconnect: OnDisconnect = on_disconnect
        self._silence = ping or None
        self._send_limit = send_timeout or None
        self._clock: _Clock | None = None
        self._frames: FrameQueue | None = None
        self._retry = retry
        self._message_id = message_id
        self._broadcast = isinstance(source, BroadcastSubscription)
        self._sent = False
        self._client_gone = False
        self._started = False
        self._complete = False

    @staticmethod
    async def _listen_for_exit_signal() -> None:
        # sse-starlette's watcher is one per thread and misses a second loop's shutdown.
        await wait_for_shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET").upper() == "HEAD":
            await super().__call__(scope, receive, send)  # no body: nothing is subscribed
            return
        if self._sent:
            raise RuntimeError("an SSE response can be sent once")
        self._sent = True
        if not self._broadcast and Headers(scope=scope).get("last-event-id"):
            await _no_content(scope, receive, send)
            return
        initial_id = getattr(self._source, "last_event_id", None) if self._broadcast else None
        writer = writer_for(
            self._format,
            broadcast=self._broadcast,
            initial_id=initial_id,
            message_id=self._message_id,
        )
        frames = FrameQueue(self._source, writer)
        frames.start()
        try:
            if self._broadcast and await self._nothing_to_resume(frames):
                await _no_content(scope, receive, send)
                return
            self._frames = frames
            try:
                await super().__call__(scope, self._tracked_receive(receive), send)
            except SendTimeoutError:
                logger.info("an SSE client read nothing for %s s: dropped", self._send_limit)
                return
            if self._started and not self._complete and not self._client_gone:
                # A server shutdown cut the stream: end it cleanly so the browser reconnects.
                with anyio.move_on_after(_FINISH_TIMEOUT):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            frames.close(detach=self._detaches)

    @property
    def _detaches(self) -> bool:
        # A broadcast subscription only ends that subscriber: the publisher holds the reply.
        return self._on_disconnect == "detach" and not self._broadcast

    async def _nothing_to_resume(self, frames: FrameQueue) -> bool:
        """Wait (briefly) for the subscription's first notification: is the answer 204?"""
        wait = min(_FIRST_NOTIFICATION_WAIT, self._silence or _FIRST_NOTIFICATION_WAIT)
        try:
            async with asyncio.timeout(wait):
                await frames.first.wait()
        except TimeoutError:
            return False
        return (
            frames.finished
            and frames.items == 0
            and (frames.error is None or isinstance(frames.error, ChannelNotFound))
        )

    async def _stream_response(self, send: Send) -> None:
        """The stream: the head, the retry line, then frames as they come, pings on silence.

        Replaces sse-starlette's loop over a body iterator: the frames are taken from the
        queue directly, one send for all that wait, with no generator between them.
        """
        frames = self._frames
        assert frames is not None
        clock = self._clock = _Clock(
            frames, asyncio.current_task(), self._silence, self._send_limit
        )
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            self._started = True
            if self._retry is not None:
                await self._send_body(clock, send, retry_frame(self._retry), True)
            take, ready = frames.take, frames.ready
            while True:
                # Frames that are already waiting go in one send: less work per event when
                # the source is ahead, no delay when it is not.
                batch = take(_BATCH_BYTES)
                if batch:
                    await self._send_body(clock, send, batch, True)
                elif frames.finished:
                    break
                else:
                    await ready()
            # sse-starlette's own ping task, the only other sender, is not started (ping=0).
            await self._send_body(clock, send, b"", False)
            self._complete = True
            self.active = False
        finally:
            clock.stop()
            frames.close(detach=self._detaches)

    async def _send_body(self, clock: _Clock, send: Send, body: bytes, more: bool) -> None:
        """Send ``body``; ``SendTimeoutError`` when the clock gave up on the browser."""
        clock.sending = True
        try:
            await send({"type": "http.response.body", "body": body, "more_body": more})
        except asyncio.CancelledError:
            self._send_interrupted = True  # sse-starlette sends nothing more after this
            if clock.timed_out():
                raise SendTimeoutError() from None
            raise
        except BaseException:
            self._send_interrupted = True
            raise
        finally:
            clock.sending = False
            clock.sends += 1

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # sse-starlette's own sends (HEAD, the end of a stream cut by a shutdown): the
        # response's clock keeps the timeout instead of an anyio cancel scope per send.
        clock = self._clock
        if clock is None or message["type"] != "http.response.body":
            await send(message)
        else:
            await self._send_body(clock, send, message["body"], message["more_body"])

    def _tracked_receive(self, receive: Receive) -> Receive:
        async def tracked() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._client_gone = True
            return message

        return tracked


def _checked(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers`` once every name is a token and every value fit for the wire: a CR or LF in a
    value would end the head early, letting a value chosen elsewhere write the browser's body."""
    checked: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("headers must map str to str")
        if not is_token(name):
            raise ValueError(f"header name {name!r} is not an RFC 9110 token")
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"header {name!r} is the response's own: it cannot be replaced")
        problem = value_problem(value)
        if problem is not None:
            raise ValueError(f"the value of header {name!r} {problem}")
        checked[name] = value
    return checked


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - an async generator that yields nothing


async def _no_content(scope: Scope, receive: Receive, send: Send) -> None:
    await Response(status_code=204, headers={"Cache-Control": "no-cache"})(scope, receive, send)


def sse_response(
    source: reactivex.Observable[MessageStreamEvent] | reactivex.Observable[Broadcast],
    *,
    format: SSEFormat = "text",
    on_disconnect: OnDisconnect = "cancel",
    ping: float | None = 15.0,
    send_timeout: float | None = 30.0,
    retry: float | None = 1.0,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> SSEResponse:
    """A Server-Sent Events response of a reply, for a FastAPI or Starlette route (GET or POST).

    Nothing is subscribed until the response is sent; each send subscribes once. The body is
    ``Content-Type: text/event-stream; charset=utf-8`` with ``Cache-Control: no-cache`` and
    ``X-Accel-Buffering: no``, starting with a ``retry:`` line. Every frame has an ``id:``:
    the broadcaster's entry id for broadcast items, else the event's 0-based position among
    everything the source emitted (pings included); the terminal frame has one too (the
    terminal entry's, or the next position). A ``: ping`` comment (no id) follows every
    ``ping`` seconds of silence, also before the first event. All JSON is on one ``data:``
    line; no text can add, end or split a frame.

    Formats:

    - ``"text"``: ``data: {"text": "..."}`` per text delta, then exactly one terminal frame:
      ``event: done`` ``{"stop_reason", "usage"}`` (the final message's); ``event:
      cancelled`` ``{"usage", "usage_estimated"}`` when the source completed without
      ``message_stop`` (a stop flag, ``take_until_cancel``), usage estimated as
      ``ops.accumulate`` does when no ``message_delta`` came; ``event: error``
      ``{"type", "message"}`` for an in-stream ``error`` event or an error of the source.
    - ``"events"``: ``event: <wire type>`` / ``data: <wire JSON>`` for every event, pings as
      ``: ping`` comments, so the bytes parse back through ``arx.from_sse_bytes`` into the same
      message; an error is the wire's ``event: error`` frame; a reply stopped on purpose ends
      with ``event: cancelled`` (``{"type": "cancelled", "usage", "usage_estimated"}``).
    - ``"ai-sdk"``: the Vercel AI SDK UI message stream (header
      ``x-vercel-ai-ui-message-stream: v1``), one ``data: <json>`` frame per chunk with the
      id of the event it came from, then ``data: [DONE]``.

    Error types and messages come from :func:`~anthropic_rx.sinks._frames.public_error`: the
    API's error type and message; the class name and text of another anthropic-rx error
    (``"IncompleteStreamError"``); ``"internal_error"`` / ``"internal server error"`` for any
    other exception, which is logged with its traceback on the ``anthropic_rx.sinks`` logger
    and never sent. API keys are never sent. An error before the first event (an HTTP 529 after
    the retries, a 400) is an ``event: error`` frame in a 200 response.

    Status: a direct source (not a :class:`~.BroadcastSubscription`) asked for with a
    non-empty ``Last-Event-ID`` header answers ``204`` without subscribing. A
    :class:`~.BroadcastSubscription` (whose ``last_event_id`` the app passed to
    ``hub.subscribe``) answers ``204`` when its first notification, waited for up to 0.5 s
    (or ``ping``), is :class:`~.ChannelNotFound` or a completion with no entry (a resume after
    the reply's end); a :class:`~.ResumeError` is a 200 with one ``event: error`` frame of type
    ``resume_error``; a broadcast completing without a terminal entry ends the response without
    a terminal frame (the browser resumes from its last id). ``HEAD`` answers the headers and
    subscribes nothing.

    Cancellation: a browser that leaves — while the first event is awaited too — is a
    disconnect; so is one that cannot be sent to for ``send_timeout`` seconds, and a server
    shutdown (uvicorn's ``should_exit``), which ends the open responses within about a second.
    With ``on_disconnect="cancel"`` a disconnect disposes the subscription, closing the model
    request; with ``"detach"`` the source is read to its end anyway, as long as the event loop
    runs (for a shared writer or broadcaster). For a broadcast subscription a disconnect
    always only ends that subscriber. The source is paced by the browser's reading: a browser
    that stops reading holds a bounded number of frames, then the model request waits.

    Args:
        source: an Observable of events (``client.stream(...)`` or any event pipeline) or of
            :class:`~.Broadcast` entries (``hub.subscribe(...)``).
        format: ``"text"``, ``"events"`` or ``"ai-sdk"``.
        on_disconnect: ``"cancel"`` or ``"detach"``.
        ping: seconds of silence before a ``: ping`` comment; ``None`` or ``0``: no pings.
        send_timeout: seconds a send may wait for the browser before it is dropped; ``None``
            or ``0``: no limit.
        retry: the EventSource reconnection delay to announce, in seconds (``retry: 1000``);
            ``None``: no ``retry:`` line.
        headers: more response headers (``Cache-Control`` and the like may be replaced; the
            framing ones, ``Content-Type``, ``Content-Length``, ``Transfer-Encoding``,
            ``Content-Encoding`` and ``Connection``, may not).
        message_id: ``format="ai-sdk"``: the ``messageId`` of the ``start`` chunk (default the
            API's message id).

    Returns:
        An :class:`SSEResponse`, a Starlette ``Response``.

    Raises:
        ValueError: ``format`` or ``on_disconnect`` is not one of its values, ``ping``,
            ``send_timeout`` or ``retry`` is negative, or a header name is not a token, is a
            framing header, or its value holds CR, LF, NUL, another control or non-ASCII text.
        TypeError: ``source`` is not an Observable, or ``headers`` does not map str to str.

    Example:
        >>> @app.post("/chat")
        ... async def chat(body: Chat) -> Response:
        ...     return sinks.sse_response(client.stream(**body.params()), on_disconnect="cancel")
    """
    return SSEResponse(
        source,
        format=format,
        on_disconnect=on_disconnect,
        ping=ping,
        send_timeout=send_timeout,
        retry=retry,
        headers=headers,
        message_id=message_id,
    )
