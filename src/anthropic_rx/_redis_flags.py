"""Cancel flags over Redis, and the Redis plumbing the Redis broadcaster shares with them.

A stop is a pending key and a pub/sub message, both written by one script::

    request_stop(name):  SET {prefix}:{stop:NAME}:pending <nonce> PX ttl
                         PUBLISH {prefix}:stop:NAME <nonce>
    a token watching:    SUBSCRIBE {prefix}:stop:NAME   (acknowledged), then
                         GETDEL {prefix}:{stop:NAME}:pending

A stop before the SUBSCRIBE is found by the GETDEL; one after it arrives as a message (and the
message deletes the pending key holding its nonce, so it is consumed once): no order loses a
stop. Nothing is sent to Redis per streamed event: a token hears its stop on the flags' one
pub/sub connection.

``redis`` (the ``redis`` extra) is imported when a Redis object is made, never at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._cancel import CancelToken
from ._exceptions import APIConnectionError
from ._names import check_name

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = [
    "PubSubListener",
    "RedisCancelFlags",
    "call",
    "check_name",
    "command_timeout",
    "redis_client",
    "redis_errors",
]

_log = logging.getLogger("anthropic_rx.redis")
_T = TypeVar("_T")

STOP_REASON = "stop requested"


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a Redis call may raise that mean "Redis failed" (not a bug here)."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def lost(what: str, error: BaseException) -> APIConnectionError:
    """The library's error for a failed Redis call; raise it ``from error``."""
    return APIConnectionError(f"Redis failed while {what}: {type(error).__name__}: {error}")


def redis_client(url: str, *, max_connections: int, retry_window: float) -> Redis:
    """A ``redis.asyncio`` client with a bounded pool and a short retry on connection errors.

    A command that fails to connect or loses its connection is retried with backoff for about
    ``retry_window`` seconds (a Redis restart within it goes unnoticed), then raises.

    Raises:
        ImportError: redis-py is not installed (``pip install 'anthropic-rx[redis]'``).
    """
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError, RedisError, TimeoutError
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "the Redis backends need redis-py: pip install 'anthropic-rx[redis]'"
        ) from exc
    step = 0.05
    retries = max(1, int(retry_window / 0.25) + 1)
    # The stubs of some redis-py versions take RedisError classes only; OSError works in all.
    retried = cast("tuple[type[RedisError], ...]", (ConnectionError, TimeoutError, OSError))
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=command_timeout(retry_window),
        socket_connect_timeout=1.0,
        # No socket_timeout: with one, redis-py sends through asyncio.wait_for, which on
        # Python 3.11 can swallow a cancellation landing as the send completes (a cancelled
        # publisher would go on publishing). Each command is bounded by ``call`` instead.
        socket_timeout=None,
        # OSError too: redis-py 5 retries a refused connect only for the socket's own error.
        retry=Retry(ExponentialBackoff(cap=0.25, base=step), retries, retried),
        # Named on the connection too: redis-py 5 retries a command only for the errors in
        # ``retry_on_error`` (empty by default there), whatever its ``Retry`` supports.
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return Redis(connection_pool=pool)


def command_timeout(retry_window: float) -> float:
    """Seconds one Redis command may take, its retries included, before it is abandoned."""
    return retry_window + 5.0


async def call(command: Awaitable[_T], what: str, *, limit: float) -> _T:
    """Await one Redis command, at most ``limit`` seconds.

    Raises:
        APIConnectionError: the command failed or timed out (``__cause__``: the error).
    """
    try:
        async with asyncio.timeout(limit):
            return await command
    except redis_errors() as exc:  # TimeoutError is an OSError
        raise lost(what, exc) from exc


class PubSubListener:
    """One pub/sub connection shared by everything one Redis object listens to.

    ``want(channel)``/``drop(channel)`` are synchronous (callable from token hooks); the
    listener's task subscribes, reads messages and, when the connection is lost, reconnects
    with backoff and subscribes again. ``on_ack(channel)`` runs each time the server
    acknowledges a subscription (again after a reconnect: what was published meanwhile was
    missed, and the owner looks again); ``on_message(channel, data)`` for each message.

    Runs on the event loop of the first ``want``; ``want``/``drop`` from another thread are
    passed to that loop.
    """

    def __init__(
        self,
        client: Redis,
        *,
        on_message: Callable[[str, bytes], None],
        on_ack: Callable[[str], None],
    ) -> None:
        self._client = client
        self._on_message = on_message
        self._on_ack = on_ack
        self._wanted: set[str] = set()
        self._pubsub: PubSub | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._changes: asyncio.Queue[tuple[bool, str]] | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the listener runs on (``None`` before the first ``want``)."""
        return self._loop

    def want(self, channel: str) -> None:
        """Subscribe to ``channel`` (acknowledged later through ``on_ack``)."""
        self._change(True, channel)

    def drop(self, channel: str) -> None:
        """Unsubscribe from ``channel``."""
        self._change(False, channel)

    def _change(self, add: bool, channel: str) -> None:
        if self._closed:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            if self._loop is None:
                if running is None:
                    raise RuntimeError("a Redis listener starts inside a running event loop")
                self._loop = running
        loop = self._loop
        if running is loop:
            self._apply(add, channel)
        else:
            loop.call_soon_threadsafe(self._apply, add, channel)

    def _apply(self, add: bool, channel: str) -> None:
        if self._closed:
            return
        if add:
            self._wanted.add(channel)
        else:
            self._wanted.discard(channel)
        if self._changes is None:
            self._changes = asyncio.Queue()
        self._changes.put_nowait((add, channel))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                await self._serve()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                _log.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
                await self._close_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _serve(self) -> None:
        changes = self._changes
        assert changes is not None
        pubsub = self._pubsub = self._client.pubsub()
        # A new connection: everything wanted is (re)subscribed, pending changes are in it.
        while not changes.empty():
            changes.get_nowait()
        if self._wanted:
            await pubsub.subscribe(*sorted(self._wanted))
        reading: asyncio.Task[Any] | None = None
        changed: asyncio.Task[tuple[bool, str]] | None = None
        try:
            while not self._closed:
                if reading is None and pubsub.subscribed:
                    reading = asyncio.ensure_future(pubsub.get_message(timeout=None))
                if changed is None:
                    changed = asyncio.ensure_future(changes.get())
                waiting = {changed} if reading is None else {changed, reading}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if changed in done:
                    add, channel = changed.result()
                    changed = None
                    if add and channel in self._wanted:
                        await pubsub.subscribe(channel)
                    elif not add and channel not in self._wanted:
                        await pubsub.unsubscribe(channel)
                if reading is not None and reading in done:
                    message, reading = reading.result(), None
                    self._dispatch(message)
        finally:
            for task in (reading, changed):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    def _dispatch(self, message: dict[str, Any] | None) -> None:
        if not message:
            return
        kind = message.get("type")
        channel = message.get("channel")
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        try:
            if kind == "subscribe":
                self._on_ack(name)
            elif kind == "message":
                data = message.get("data")
                self._on_message(name, data if isinstance(data, bytes) else str(data).encode())
        except Exception:
            _log.exception("a Redis pub/sub handler raised")

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        """Stop listening and close the pub/sub connection."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self._close_pubsub()


# --- the flags -------------------------------------------------------------------------------

_REQUEST_STOP = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"""
# A stop heard as a message is consumed: its pending key goes, unless a newer stop replaced it.
_CONSUME_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCancelFlags:
    """Cancel flags shared by every process that reaches one Redis.

    ``await flags.request_stop(name)`` in any process stops the streams watching ``name``
    within one event (a stalled stream too: the stop arrives on a pub/sub connection, not
    between events); a stop requested while nothing watches is kept ``ttl`` seconds and
    consumed once by the next token that starts watching. A token starts watching when
    something waits on it (a subscribed ``ops.take_until_cancel``): it subscribes to the
    name's pub/sub channel and then takes a pending stop with ``GETDEL``, so a stop in any
    order is seen exactly once. No Redis command is sent per streamed event.

    Connections: one pub/sub connection per flags object and a small pool (``max_connections``)
    for the commands. Create it in the event loop that uses it.

    Args:
        url: the Redis URL (``redis://127.0.0.1:6379/0``).
        ttl: seconds an unconsumed stop is kept.
        prefix: the first part of every key and channel (several apps can share a Redis).
        max_connections: the command pool's size.
        retry_window: seconds a command keeps retrying a lost connection before it fails.

    Raises:
        ValueError: an option is out of range, or ``prefix`` holds unsafe characters.
        ImportError: redis-py is not installed.

    Example:
        >>> flags = RedisCancelFlags("redis://127.0.0.1:6379")
        >>> events.pipe(ops.take_until_cancel(flags.watch("stop-stream-7")))
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 30,
        prefix: str = "arx",
        max_connections: int = 4,
        retry_window: float = 1.0,
    ) -> None:
        if not ttl > 0:
            raise ValueError("ttl must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.ttl = ttl
        self.prefix = check_name(prefix, "prefix")
        self._client = redis_client(url, max_connections=max_connections, retry_window=retry_window)
        self._limit = command_timeout(retry_window)
        self._request = self._client.register_script(_REQUEST_STOP)
        self._consume_if = self._client.register_script(_CONSUME_IF)
        self._listener = PubSubListener(self._client, on_message=self._heard, on_ack=self._acked)
        self._lock = threading.Lock()
        self._watching: dict[str, set[_RedisFlagToken]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<RedisCancelFlags prefix={self.prefix!r} ttl={self.ttl:g}>"

    def _pending_key(self, name: str) -> str:
        return f"{self.prefix}:{{stop:{name}}}:pending"

    def _channel(self, name: str) -> str:
        return f"{self.prefix}:stop:{name}"

    async def request_stop(self, name: str) -> None:
        """Set the flag ``name``: stop the streams watching it, else keep it ``ttl`` seconds.

        Raises:
            ValueError: ``name`` holds characters outside ``[A-Za-z0-9._:-]``.
            APIConnectionError: Redis could not be reached (``__cause__``: redis-py's error).
        """
        check_name(name)
        nonce = uuid.uuid4().hex
        await call(
            self._request(
                keys=[self._pending_key(name)],
                args=[nonce, max(1, int(self.ttl * 1000)), self._channel(name)],
            ),
            f"requesting a stop of {name!r}",
            limit=self._limit,
        )

    def watch(self, name: str) -> CancelToken:
        """A token cancelled when ``request_stop(name)`` is called, in any process.

        It listens while something waits on it; a pending stop is taken when it starts to.

        Raises:
            ValueError: ``name`` holds characters outside ``[A-Za-z0-9._:-]``.
        """
        return _RedisFlagToken(self, check_name(name))

    # --- listening ---------------------------------------------------------------------------

    def _listen(self, token: _RedisFlagToken) -> None:
        with self._lock:
            tokens = self._watching.setdefault(token.name, set())
            first = not tokens
            tokens.add(token)
        if first:
            self._listener.want(self._channel(token.name))
        else:  # already subscribed: only a pending stop may be waiting for this token
            self._spawn(self._take_pending(token.name))

    def _unlisten(self, token: _RedisFlagToken) -> None:
        with self._lock:
            tokens = self._watching.get(token.name)
            if tokens is None or token not in tokens:
                return
            tokens.discard(token)
            last = not tokens
            if last:
                del self._watching[token.name]
        if last:
            self._listener.drop(self._channel(token.name))

    def _name_of(self, channel: str) -> str | None:
        head = f"{self.prefix}:stop:"
        return channel[len(head) :] if channel.startswith(head) else None

    def _acked(self, channel: str) -> None:
        name = self._name_of(channel)
        if name is not None:
            self._spawn(self._take_pending(name))

    def _heard(self, channel: str, nonce: bytes) -> None:
        name = self._name_of(channel)
        if name is None:
            return
        if self._stop_all(name):
            self._spawn(self._consume(name, nonce))

    def _stop_all(self, name: str) -> bool:
        with self._lock:
            tokens = self._watching.pop(name, None)
        if not tokens:
            return False
        self._listener.drop(self._channel(name))
        for token in tokens:
            token.cancel(STOP_REASON)
        return True

    async def _take_pending(self, name: str) -> None:
        with self._lock:
            if not self._watching.get(name):
                return  # nobody to stop any more: leave the stop for the next watch
        try:
            found = await call(
                self._client.getdel(self._pending_key(name)), "taking a stop", limit=self._limit
            )
        except APIConnectionError:
            _log.warning("could not look for a pending stop of %r", name, exc_info=True)
            return
        if found is not None and not self._stop_all(name):
            # Taken for a token that stopped watching meanwhile: give the stop back.
            with contextlib.suppress(APIConnectionError):
                await call(
                    self._client.set(
                        self._pending_key(name), found, px=max(1, int(self.ttl * 1000)), nx=True
                    ),
                    "giving a stop back",
                    limit=self._limit,
                )

    async def _consume(self, name: str, nonce: bytes) -> None:
        try:
            await call(
                self._consume_if(keys=[self._pending_key(name)], args=[nonce]),
                "consuming a stop",
                limit=self._limit,
            )
        except APIConnectionError:
            _log.warning("could not consume the stop of %r", name, exc_info=True)

    def _spawn(self, coroutine: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a token hook called on another thread: run on the flags' loop
            home = self._listener.loop
            if home is None:
                coroutine.close()
                return
            home.call_soon_threadsafe(self._spawn, coroutine)
            return
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Close the pub/sub connection and the command pool; the flags are not used after."""
        await self._listener.aclose()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*redis_errors()):
            await self._client.aclose()
        with contextlib.suppress(*redis_errors()):
            await self._client.connection_pool.disconnect()


class _RedisFlagToken(CancelToken):
    """A token that listens to its flag's pub/sub channel while something waits on it."""

    def __init__(self, flags: RedisCancelFlags, name: str) -> None:
        super().__init__()
        self._flags = flags
        self.name = name

    def _start_watching(self) -> None:
        self._flags._listen(self)

    def _stop_watching(self) -> None:
        self._flags._unlisten(self)
