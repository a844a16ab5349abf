"""What the web process and the arq worker agree on: the job, its queue, and who runs a reply.

```
web: ask ─► row "streaming", current_reply = mid ─► enqueue JOB (job id = mid)
worker: claim(mid) ─► sinks.start_relay (channel open) ─► opened(mid) ─► await the relay
web: GET /stream ─► waits for "open" (bounded), then follows the channel
web: nobody claimed it within worker_timeout ─► abandon(mid) ─► row "failed", error frame
```

A reply's claim is one Redis key, ``{prefix}:reply:{mid}``, set with ``SET NX``: the worker
(``claimed``) and a web process giving up on it (``abandoned``) race for it, and exactly one
wins, so a reply is never both streamed and failed for want of a worker. Its value then moves
on to ``open`` (the worker's channel is open: a subscriber finds this reply there, never the
one before it) or ``failed`` (the worker could not start it; the row says why).

``arq`` and ``redis`` are imported by the code that makes a connection, never at import: the
demo in memory mode needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, cast

from .._redis_flags import call

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "CLAIM_TTL",
    "JOB",
    "NO_WORKER",
    "WORKER_STALLED",
    "ClaimState",
    "ReplyClaims",
    "channel_name",
    "stop_flag_name",
]

JOB: Final = "anthropic_rx_demo_reply"
"""The arq function name of a reply's job."""

CLAIM_TTL: Final = 24 * 3600
"""Seconds a claim is kept: far longer than any reply streams."""

NO_WORKER: Final = (
    "worker_unavailable",
    "No worker picked up the reply: start one with `anthropic-rx worker`, then ask again.",
)
"""``(type, message)`` of a reply no worker started in time (the row's error too)."""

WORKER_STALLED: Final = (
    "worker_unavailable",
    "The worker took the reply but did not start it. Reload the page, or ask again later.",
)
"""``(type, message)`` shown for a reply a worker claimed and never opened in time."""

ClaimState = Literal["claimed", "open", "abandoned", "failed"]

_COMMAND_LIMIT = 5.0  # seconds: a claim command that takes longer fails the request


def channel_name(conversation_id: str) -> str:
    """The broadcaster channel of a conversation's replies."""
    return f"conversation.{conversation_id}"


def stop_flag_name(reply_id: str) -> str:
    """The stop flag of one reply (named after the reply, so a late Stop never stops the
    next one)."""
    return f"stop-stream-{reply_id}"


class ReplyClaims:
    """The claim of each queued reply, in Redis (see the module's docstring).

    Every method is one Redis command, bounded by a 5 s limit: a lost connection or the limit
    passing raises :class:`~anthropic_rx.APIConnectionError` (``__cause__`` the redis-py
    error).
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, reply_id: str) -> str:
        return f"{self._prefix}:reply:{reply_id}"

    async def _set(self, reply_id: str, state: ClaimState, *, nx: bool = False) -> bool:
        done = await call(
            self._redis.set(self._key(reply_id), state, ex=CLAIM_TTL, nx=nx, xx=not nx),
            f"claiming reply {reply_id!r}",
            limit=_COMMAND_LIMIT,
        )
        return bool(done)

    async def claim(self, reply_id: str) -> bool:
        """The worker takes the reply; ``False`` when a web process abandoned it first."""
        return await self._set(reply_id, "claimed", nx=True)

    async def opened(self, reply_id: str) -> None:
        """The worker's channel carries the reply: subscribers may follow it."""
        await self._set(reply_id, "open")

    async def failed(self, reply_id: str) -> None:
        """The worker could not start the reply (its row says why)."""
        await self._set(reply_id, "failed")

    async def abandon(self, reply_id: str) -> bool:
        """A web process gives up on the reply; ``False`` when a worker claimed it first."""
        return await self._set(reply_id, "abandoned", nx=True)

    async def state(self, reply_id: str) -> ClaimState | None:
        """The reply's claim, or ``None`` while no one has taken it."""
        value = await call(
            self._redis.get(self._key(reply_id)),
            f"reading the claim of reply {reply_id!r}",
            limit=_COMMAND_LIMIT,
        )
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return cast(ClaimState, text)
