"""An arq worker running the Laravel guide's queued job, for ``test_arq_worker.py``.

The test starts it as its own OS process::

    python -m arq tests.sinks._arq_worker.WorkerSettings

with everything it connects to in the environment (:data:`ENV`): the Redis broker, the arq
queue, the broadcaster's and flags' key prefix and ``stale_after``, the fake Anthropic's
loopback URL and the database. Nothing is read or connected to at import but the environment.

The job, ``ask_claude(ctx, conversation_id, message_id, prompt)``, streams one reply into
``sinks.relay``: the Redis broadcaster's channel ``conversation.{conversation_id}`` and the
writer's row ``message_id``, stopped by the flag ``stop-stream-{message_id}``. It is tried
once (``max_tries=1``): a reply cut by a dead worker is not asked for again, its row is
ended ``incomplete`` by ``writer.recover``.
"""

from __future__ import annotations

import os
from typing import Any

from arq import func
from arq.connections import RedisSettings

import anthropic_rx as arx
from anthropic_rx import cancel, sinks
from anthropic_rx import operators as ops

__all__ = ["ENV", "MODEL", "WorkerSettings", "ask_claude"]

MODEL = "claude-sonnet-4-5"

# The environment variables the worker reads, by role.
ENV = {
    "redis": "ARX_ARQ_REDIS_URL",
    "queue": "ARX_ARQ_QUEUE",
    "prefix": "ARX_ARQ_PREFIX",
    "stale_after": "ARX_ARQ_STALE_AFTER",
    "api": "ARX_ARQ_API_URL",
    "database": "ARX_ARQ_DATABASE_URL",
    "table": "ARX_ARQ_TABLE",
}


def _env(role: str, default: str = "") -> str:
    return os.environ.get(ENV[role], default)


async def startup(ctx: dict[str, Any]) -> None:
    """Create what every job of this worker shares: the client, the hub, the flags, the
    writer (its table too, when missing)."""
    redis_url = _env("redis", "redis://127.0.0.1:6379/0")
    prefix = _env("prefix", "arx")
    ctx["client"] = arx.Client(api_key="test-key", base_url=_env("api"), max_retries=0)
    ctx["hub"] = sinks.RedisBroadcaster(
        redis_url, prefix=prefix, stale_after=float(_env("stale_after", "10"))
    )
    ctx["flags"] = cancel.RedisCancelFlags(redis_url, prefix=prefix)
    ctx["writer"] = sinks.DatabaseWriter(_env("database"), table=_env("table") or None)
    await ctx["writer"].create_all()


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what :func:`startup` made (after the running jobs ended or were cancelled)."""
    await ctx["writer"].aclose()
    await ctx["flags"].aclose()
    await ctx["hub"].aclose()
    await ctx["client"].aclose()


async def ask_claude(
    ctx: dict[str, Any], conversation_id: str, message_id: str, prompt: str
) -> dict[str, Any] | None:
    """The queued job: one request to the model, to the channel and to the row.

    Returns:
        What arq stores as the job's result: the reply's ``text`` and whether it was
        ``cancelled``; ``None`` when it was stopped before ``message_start``.

    Raises:
        Exception: relay's (the stream's error once the channel and the row recorded it);
            arq records it as the job's failure.

    Cancellation (the worker shutting down): relay ends the channel with
    ``IncompleteStreamError`` and the row ``incomplete``.
    """
    client: arx.Client = ctx["client"]
    flags: cancel.RedisCancelFlags = ctx["flags"]
    events = client.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
    ).pipe(ops.take_until_cancel(flags.watch(f"stop-stream-{message_id}")))
    message = await sinks.relay(
        events,
        hub=ctx["hub"],
        channel=f"conversation.{conversation_id}",
        writer=ctx["writer"],
        message_id=message_id,
        conversation_id=conversation_id,
    )
    if message is None:
        return None
    text = "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))
    return {"text": text, "cancelled": message.cancelled}


class WorkerSettings:
    """What ``arq`` reads: the job, the queue and the broker (from the environment)."""

    functions = (func(ask_claude, max_tries=1, keep_result=60),)
    queue_name = _env("queue", "arq:queue")
    redis_settings = RedisSettings.from_dsn(_env("redis", "redis://127.0.0.1:6379/0"))
    on_startup = startup
    on_shutdown = shutdown
    # A queued reply starts within 50 ms (arq polls the queue every 0.5 s by default).
    poll_delay = 0.05
