"""The demo's arq worker: runs each queued reply with :func:`anthropic_rx.sinks.relay`.

```
anthropic-rx worker                       (or: arq anthropic_rx.demo.WorkerSettings)
  startup: DemoSettings.from_env() ─► client (the fake, or the real API with a key), the
           Redis broadcaster and flags, the writer (tables created)
  job anthropic_rx_demo_reply(conversation_id, reply_id, messages, model, max_tokens):
    claim the reply (lost: a web process gave up on it ─► nothing asked)
    events = client.stream(...).pipe(take_until_cancel(flags.watch("stop-stream-{mid}")))
    sinks.start_relay(events, hub, channel="conversation.{cid}", writer, message_id=mid)
      ChannelBusyError: the reply before it is still ending ─► retried for 3 s, then failed
    mark the claim "open" (the web process's stream route follows the channel from now)
    await the relay ─► "finished" | "cancelled" | "failed" (the row and the channel hold it)
  shutdown: running replies are cancelled (rows incomplete, channels IncompleteStreamError)
```

The worker shares nothing with the web process but Redis and the database: the request comes
with the job (the turns, the model), so with no API key the worker's own fake answers it with
the paced ~200-word reply, as the web process's would. A job runs at most once: a reply
half-streamed is never asked again from its start. A job cancelled by a shutdown is put back
by arq (``retry_jobs``, so the shutdown logs no traceback) and dropped by the next worker
(``max_tries=1``); its claim would refuse it anyway.

``arq`` is imported here at import: ``anthropic_rx.demo`` imports this module only when
:class:`WorkerSettings` or :func:`run_worker` is asked for.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Final

import reactivex
from arq.connections import ArqRedis, RedisSettings
from arq.logs import default_log_config
from arq.worker import Function, func
from arq.worker import run_worker as _arq_run_worker

from .. import Message, MessageStreamEvent, cancel, sinks
from .. import operators as ops
from ._jobs import demo_client, fail_reply
from ._queue import JOB, ReplyClaims, channel_name, stop_flag_name
from ._settings import DemoSettings

__all__ = ["WorkerSettings", "reply_job", "run_worker", "worker_options"]

_log = logging.getLogger("anthropic_rx.demo")

_STATE: Final = "anthropic_rx_demo"  # the worker's key in arq's ctx
_SETTINGS: Final = "anthropic_rx_demo_settings"
_BUSY_WAIT = 3.0  # seconds a reply waits for the reply before it to end its channel
_BUSY_POLL = 0.1
BUSY_ERROR = (
    "conversation_busy",
    "Another reply was still streaming in this conversation. Try again.",
)
JOB_TIMEOUT = timedelta(minutes=15)
"""How long one reply may run in the worker before it is cancelled (its row ``incomplete``)."""
MAX_JOBS = 100
"""Replies one worker runs at once (they wait on the network, not the CPU)."""
POLL_DELAY = 0.05
"""Seconds between two looks at the queue: the latency a queued reply starts with."""


class DemoWorker:
    """What one worker process owns: the client, broadcaster, flags, writer and claims.

    :meth:`aclose` closes them (the replies still running were cancelled by arq first).
    """

    def __init__(self, settings: DemoSettings, redis: ArqRedis) -> None:
        if settings.redis_url is None:
            raise ValueError("the demo's worker needs ANTHROPIC_RX_REDIS_URL (its queue's Redis)")
        self.settings = settings
        self.client, self.fake = demo_client(settings)
        prefix = settings.redis_prefix
        self.hub = sinks.RedisBroadcaster(settings.redis_url, prefix=prefix)
        self.flags = cancel.RedisCancelFlags(settings.redis_url, prefix=prefix)
        self.writer = sinks.DatabaseWriter(settings.database_url)
        self.claims = ReplyClaims(redis, prefix)

    async def open(self) -> None:
        """Create the writer's table (the worker may start before the web process)."""
        await self.writer.create_all()

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.hub.aclose()
        await self.flags.aclose()
        await self.writer.aclose()

    async def reply(
        self,
        *,
        conversation_id: str,
        reply_id: str,
        messages: list[dict[str, Any]],
        model: str,
        max_tokens: int,
    ) -> str:
        """Stream one reply to the channel and the row; how it ended.

        Returns:
            ``"finished"``, ``"cancelled"`` (a stop flag), ``"failed"`` (the stream's error,
            recorded by the row and the channel), ``"busy"`` (the channel never came free:
            the row ends ``failed``), or ``"abandoned"`` (a web process gave up on it before
            this worker took it: nothing is asked).

        Raises:
            APIConnectionError: Redis did not answer the claim.

        Cancellation (worker shutdown, job timeout): the relay is cancelled: the request is
        closed, the row ends ``incomplete`` and the channel with ``IncompleteStreamError``.
        """
        if not await self.claims.claim(reply_id):
            _log.info("reply %s was abandoned before a worker took it", reply_id)
            return "abandoned"
        events = self.client.stream(model=model, max_tokens=max_tokens, messages=messages).pipe(
            ops.take_until_cancel(self.flags.watch(stop_flag_name(reply_id)))
        )
        task = await self._start(events, conversation_id, reply_id)
        if task is None:
            return "busy"
        await self.claims.opened(reply_id)
        try:
            message = await task
        except Exception as error:  # recorded by the row and the channel; the page shows it
            _log.info("reply %s ended with %s", reply_id, type(error).__name__)
            return "failed"
        return "cancelled" if message is None or message.cancelled else "finished"

    async def _start(
        self,
        events: reactivex.Observable[MessageStreamEvent],
        conversation_id: str,
        reply_id: str,
    ) -> asyncio.Task[Message | None] | None:
        """The started relay; ``None`` when the channel stayed busy (the row then failed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUSY_WAIT
        while True:
            try:
                return await sinks.start_relay(
                    events,
                    hub=self.hub,
                    channel=channel_name(conversation_id),
                    writer=self.writer,
                    message_id=reply_id,
                    conversation_id=conversation_id,
                )
            except sinks.ChannelBusyError:
                # The web process saw the reply before this one end (its row), and its relay
                # is writing the channel's terminal entry now: wait for it, bounded.
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(_BUSY_POLL)
        _log.warning("reply %s: the conversation's channel stayed busy", reply_id)
        await fail_reply(self.writer.engine, self.writer.table, reply_id, BUSY_ERROR)
        await self.claims.failed(reply_id)
        return None


async def reply_job(
    ctx: dict[str, Any],
    *,
    conversation_id: str,
    reply_id: str,
    messages: list[dict[str, Any]],
    model: str,
    max_tokens: int,
) -> str:
    """The arq job of one reply (``anthropic_rx_demo_reply``): :meth:`DemoWorker.reply`."""
    worker: DemoWorker = ctx[_STATE]
    return await worker.reply(
        conversation_id=conversation_id,
        reply_id=reply_id,
        messages=messages,
        model=model,
        max_tokens=max_tokens,
    )


async def startup(ctx: dict[str, Any]) -> None:
    """arq's ``on_startup``: the settings given to :func:`run_worker`, else the environment's.

    Raises:
        ValueError: no Redis URL (the worker has no queue to read), or a setting is invalid.
    """
    settings = ctx.get(_SETTINGS)
    if not isinstance(settings, DemoSettings):
        settings = DemoSettings.from_env()
    worker = DemoWorker(settings, ctx["redis"])
    try:
        await worker.open()
    except BaseException:
        await worker.aclose()
        raise
    ctx[_STATE] = worker
    _log.info("the demo's worker reads queue %s", settings.queue_name)


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq's ``on_shutdown``: close what :func:`startup` opened."""
    worker = ctx.pop(_STATE, None)
    if isinstance(worker, DemoWorker):
        await worker.aclose()


_FUNCTION: Final[Function] = func(
    reply_job, name=JOB, keep_result=0, timeout=JOB_TIMEOUT, max_tries=1
)


def worker_options(settings: DemoSettings) -> dict[str, Any]:
    """The keyword arguments of ``arq.worker.Worker`` for the demo with ``settings``.

    Raises:
        ValueError: ``settings`` has no Redis URL.
    """
    if settings.redis_url is None:
        raise ValueError("the demo's worker needs ANTHROPIC_RX_REDIS_URL (its queue's Redis)")
    return {
        "functions": [_FUNCTION],
        "queue_name": settings.queue_name,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {_SETTINGS: settings},
        "max_jobs": MAX_JOBS,
        "job_timeout": JOB_TIMEOUT,
        "keep_result": 0,
        "poll_delay": POLL_DELAY,
        # A reply cut by a shutdown ends incomplete; asking it again would repeat it. arq
        # requeues it (retry_jobs) and the next worker drops it (max_tries): no traceback in
        # the log of a shutdown, and never a second run.
        "max_tries": 1,
        "retry_jobs": True,
    }


def run_worker(settings: DemoSettings | None = None, *, log_level: str = "INFO") -> None:
    """Run the demo's worker until SIGINT or SIGTERM (blocking); replies still running are
    cancelled then (their rows end ``incomplete``).

    ``settings`` default :meth:`DemoSettings.from_env`.

    Raises:
        ValueError: no Redis URL, or a setting is invalid.
    """
    settings = settings if settings is not None else DemoSettings.from_env()
    options = worker_options(settings)
    config = default_log_config(verbose=False)
    config["loggers"]["anthropic_rx"] = {"handlers": ["arq.standard"], "level": log_level}
    logging.config.dictConfig(config)
    _arq_run_worker(options)


def _env_queue(environ: Mapping[str, str]) -> tuple[RedisSettings, str]:
    """The Redis and queue name of ``arq anthropic_rx.demo.WorkerSettings`` (read when the
    class is made, as arq reads a settings class's attributes). Unset or invalid variables
    give arq's defaults here: the worker's startup then reads them again and says what is
    wrong."""
    try:
        settings = DemoSettings.from_env(environ)
        redis = RedisSettings.from_dsn(settings.redis_url or "redis://127.0.0.1:6379/0")
    except (ValueError, RuntimeError):
        return RedisSettings(), DemoSettings().queue_name
    return redis, settings.queue_name


class WorkerSettings:
    """``arq anthropic_rx.demo.WorkerSettings``: the demo's worker, from the environment
    (``ANTHROPIC_RX_REDIS_URL``, ``ANTHROPIC_RX_DEMO_REDIS_PREFIX`` and the rest of
    :meth:`DemoSettings.from_env`, read when this module is imported)."""

    functions: ClassVar[tuple[Function, ...]] = (_FUNCTION,)
    redis_settings, queue_name = _env_queue(os.environ)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = MAX_JOBS
    job_timeout = JOB_TIMEOUT
    keep_result = 0
    poll_delay = POLL_DELAY
    max_tries = 1
    retry_jobs = True
