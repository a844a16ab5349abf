"""Conversations, their messages, and the job that streams each reply.

Replies run where :attr:`DemoSettings.queued` says: as asyncio tasks of the web process (the
embedded default), or as arq jobs of a worker process (``ANTHROPIC_RX_REDIS_URL``).

```
asyncio tasks                                     arq jobs (Redis)
POST /messages ─► Jobs.ask(cid, content)          POST /messages ─► Jobs.ask(cid, content)
  │ sinks.start_relay(events, hub,                  │ current reply streaming? ─► Busy (409)
  │   channel="conversation.{cid}", writer, mid)    │ one transaction: current_reply: old ─► mid
  │   ChannelBusyError ─► Busy (409)                │   (compare-and-set; lost ─► Busy), the
  │ insert the user row and the assistant row       │   user row, the assistant row "streaming"
  │ (streaming); current_reply = mid                │ enqueue the job (job id = mid)
  ▼                                                 ▼
asyncio task: relay                               worker (_worker.py): claim, relay, "open"
```

In both, ``events = client.stream(...).pipe(take_until_cancel(flags.watch("stop-stream-{mid}")))``
and the relay feeds the broadcaster's log (the browsers follow it) and the writer's row.

Storage: one SQLite (or PostgreSQL) database. The messages of both roles live in the
:class:`~anthropic_rx.sinks.DatabaseWriter`'s table (``arx_messages``): the writer saves each
assistant reply as it streams; the user's question is a row of the same table, inserted here
with ``role="user"`` and status ``finished``, so one ordered query reads the conversation back.
The assistant row is inserted too (status ``streaming``, if the writer has not written it yet)
so a reload before the model's first byte still sees a reply in progress. A second table of
the demo's own (``arx_demo_conversations``) holds each conversation's owner, title, current
reply and ``updated_at``.

One reply per conversation at a time. With asyncio tasks the broadcaster's channel decides
(a live publisher refuses a second one, across processes too with Redis). With arq jobs the
channel is opened by the worker, after the POST has answered, so it cannot decide; the
database does instead: the conversation row's ``current_reply`` is changed with a
compare-and-set (``UPDATE ... WHERE current_reply = <the one read>``, the transaction's first
statement), after checking that the reply read is not ``streaming``. Two web processes asking
at once both read the same old reply; the database applies one update and the other matches no
row (PostgreSQL re-checks the condition on the row the first one committed; SQLite serialises
writers), so exactly one gets 202 and the other 409. The new reply's row is inserted
``streaming`` in the same transaction, so whoever sees the new ``current_reply`` sees it busy.

A queued reply nobody starts (no worker running) does not stay ``streaming``: after
``worker_timeout`` seconds the stream route (or the next question) abandons it through its
claim (see ``_queue.py``) and the row ends ``failed`` with ``worker_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import reactivex
from sqlalchemy import Column, DateTime, MetaData, String, Table, case, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import Client, Message, MessageStreamEvent, cancel, sinks, testing
from .. import operators as ops
from ..sinks._schema import create_tables
from ._fake_reply import PacedAnswer
from ._queue import (
    JOB,
    NO_WORKER,
    WORKER_STALLED,
    ReplyClaims,
    channel_name,
    stop_flag_name,
)
from ._settings import DemoSettings

if TYPE_CHECKING:
    from arq.connections import ArqRedis

__all__ = [
    "Busy",
    "ConversationRow",
    "Jobs",
    "MessageRow",
    "ReplyRow",
    "demo_client",
    "fail_reply",
    "new_id",
]

_log = logging.getLogger("anthropic_rx.demo")

TITLE_LENGTH = 60
QUEUE_ERROR = ("queue_error", "The reply could not be queued (Redis did not answer). Try again.")
_POLL = 0.05  # seconds between two looks at a queued reply's claim while it waits to start
_STALE = 60.0  # seconds without a checkpoint after which a streaming row is a dead worker's
_JOB_EXPIRES = timedelta(hours=1)  # a job no worker took by then is dropped from the queue


def new_id() -> str:
    """An unguessable id (``secrets.token_urlsafe``, 128 bits) that is also a valid broadcaster
    channel and flag name (``[A-Za-z0-9._:-]``): ``_`` becomes ``-``."""
    return secrets.token_urlsafe(16).replace("_", "-")


class Busy(Exception):
    """The conversation already has a reply streaming (the route answers 409)."""


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: str
    title: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ReplyRow:
    """A conversation's current reply: its id, status and times."""

    id: str
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message as ``GET /api/conversations/{id}/messages`` shows it."""

    id: str
    role: str
    content: str
    status: str
    stop_reason: str | None
    usage: dict[str, int] | None
    blocks: list[dict[str, Any]]
    error: dict[str, str] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "usage": self.usage,
            "blocks": self.blocks,
            "error": self.error,
        }


def conversation_table(metadata: MetaData) -> Table:
    return Table(
        "arx_demo_conversations",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("owner", String(64), nullable=False, index=True),
        Column("title", String(255), nullable=False, default=""),
        Column("current_reply", String(64)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def demo_client(settings: DemoSettings) -> tuple[Client, testing.FakeAnthropic | None]:
    """The client replies are asked with, and the fake behind it (``None``: the real API).

    With no API key (or with ``settings.fake``) the fake answers: ``settings.fake``, or an
    embedded one; a fake whose ``default`` is still the library's echo answers with the paced
    ~200-word reply. The web process (asyncio tasks) and the worker (arq jobs) choose alike.
    """
    if settings.api_key is not None and settings.fake is None:
        return Client(api_key=settings.api_key, max_retries=settings.max_retries), None
    # The embedded fake serves for as long as the demo runs: keep its newest requests only.
    fake = settings.fake if settings.fake is not None else testing.FakeAnthropic(keep_requests=100)
    if fake.default is testing.echo:
        fake.default = PacedAnswer(settings.tokens_per_second)
    # A key of its own, so one in the environment is never sent to the fake.
    return fake.client(api_key="demo-fake-key", max_retries=settings.max_retries), fake


async def fail_reply(
    engine: AsyncEngine, messages: Table, reply_id: str, error: tuple[str, str]
) -> bool:
    """End a ``streaming`` reply's row ``failed`` with ``error`` (``(type, message)``).

    Returns whether the row was ``streaming`` (a row that ended otherwise is left alone).
    """
    async with engine.begin() as conn:
        result = await conn.execute(
            update(messages)
            .where(messages.c.id == reply_id, messages.c.status == "streaming")
            .values(
                status="failed",
                error_type=error[0],
                error_message=error[1],
                usage_estimated=True,
                updated_at=_now(),
            )
        )
    return bool(result.rowcount == 1)


class _Raced(Exception):
    """Another process changed the conversation's current reply first."""


class _AskLock:
    """One ask at a time per conversation in this process; the lock is dropped with its last
    user, so the locks held are those of the conversations being asked in right now."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


class Jobs:
    """The demo's state: the client, broadcaster, flags, writer, and the running replies.

    :meth:`open` creates the tables and ends the rows a stopped process left ``streaming``
    (and, with arq jobs, connects to the queue); :meth:`aclose` cancels the replies still
    running here (their rows end ``incomplete``, their channels with ``IncompleteStreamError``)
    and closes everything. Replies running in a worker process are the worker's: closing the
    web process leaves them streaming.
    """

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.queued = settings.queued
        # With arq jobs the worker asks the model: this process needs no client.
        self.client: Client | None = None
        self.fake: testing.FakeAnthropic | None = None
        if not self.queued:
            self.client, self.fake = demo_client(settings)
        self.hub: sinks.Broadcaster
        self.flags: cancel.CancelFlags
        if settings.redis_url is not None:
            prefix = settings.redis_prefix
            self.hub = sinks.RedisBroadcaster(settings.redis_url, prefix=prefix)
            self.flags = cancel.RedisCancelFlags(settings.redis_url, prefix=prefix)
        else:
            self.hub = sinks.MemoryBroadcaster()
            self.flags = cancel.MemoryCancelFlags()
        self.writer = sinks.DatabaseWriter(settings.database_url)
        self.messages = self.writer.table
        self.conversations = conversation_table(MetaData())
        self._queue: ArqRedis | None = None
        self._claims: ReplyClaims | None = None
        self._running: set[asyncio.Task[Message | None]] = set()
        # The history read, the busy check and the rows of one question are not interleaved
        # with another question's in this process.
        self._locks = _AskLock()

    @property
    def engine(self) -> AsyncEngine:
        """The writer's engine: the demo's own table lives in the same database."""
        return self.writer.engine

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the tables; end the rows left ``streaming`` by a process that stopped; with
        arq jobs, connect to the queue.

        In memory mode every reply runs in this process, so any ``streaming`` row at startup
        is an orphan; with Redis another process may still be streaming, so only rows idle for
        a minute are ended.

        Raises:
            ImportError: arq jobs without arq installed (``pip install 'anthropic-rx[queue]'``).
        """
        await self.writer.create_all()
        await create_tables(self.engine, self.conversations)
        await self.writer.recover(older_than=_STALE if self.settings.redis_url else 0)
        if self.queued:
            self._queue = await connect_queue(self.settings)
            self._claims = ReplyClaims(self._queue, self.settings.redis_prefix)

    async def aclose(self) -> None:
        """Cancel the running replies, then close the client, broadcaster, flags, queue and
        writer."""
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
        await self.hub.aclose()
        closer = getattr(self.flags, "aclose", None)
        if closer is not None:
            await closer()
        if self._queue is not None:
            queue, self._queue = self._queue, None
            await queue.aclose()
        await self.writer.aclose()

    # --- conversations ---------------------------------------------------------------------

    async def create_conversation(self, owner: str) -> str:
        cid = new_id()
        now = _now()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(self.conversations).values(
                    id=cid, owner=owner, title="", created_at=now, updated_at=now
                )
            )
        return cid

    async def list_conversations(self, owner: str) -> list[ConversationRow]:
        table = self.conversations
        query = (
            select(table.c.id, table.c.title, table.c.updated_at)
            .where(table.c.owner == owner)
            .order_by(table.c.updated_at.desc())
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [ConversationRow(r.id, r.title or "", _aware(r.updated_at)) for r in rows]

    async def owns(self, owner: str, cid: str) -> bool:
        table = self.conversations
        query = select(table.c.id).where(table.c.id == cid, table.c.owner == owner)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def message_rows(self, cid: str) -> list[MessageRow]:
        table = self.messages
        user_first = case((table.c.role == "user", 0), else_=1)
        query = (
            select(
                table.c.id,
                table.c.role,
                table.c.text,
                table.c.content,
                table.c.status,
                table.c.stop_reason,
                table.c.input_tokens,
                table.c.output_tokens,
                table.c.error_type,
                table.c.error_message,
            )
            .where(table.c.conversation_id == cid)
            .order_by(table.c.created_at, user_first, table.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        result = []
        for r in rows:
            usage = None
            if r.input_tokens is not None or r.output_tokens is not None:
                usage = {"input_tokens": r.input_tokens or 0, "output_tokens": r.output_tokens or 0}
            error = None
            if r.error_type is not None:
                error = {"type": r.error_type, "message": r.error_message or ""}
            result.append(
                MessageRow(
                    id=r.id,
                    # A reply that failed before message_start has no role in its row.
                    role="user" if r.role == "user" else "assistant",
                    content=r.text or "",
                    status=r.status,
                    stop_reason=r.stop_reason,
                    usage=usage,
                    blocks=list(r.content or []),
                    error=error,
                )
            )
        return result

    async def _current(self, cid: str) -> tuple[str | None, ReplyRow | None]:
        """The conversation's ``current_reply`` as stored, and its row (``None`` if none)."""
        conv, msgs = self.conversations, self.messages
        query = (
            select(conv.c.current_reply, msgs.c.status, msgs.c.created_at, msgs.c.updated_at)
            .select_from(conv.outerjoin(msgs, msgs.c.id == conv.c.current_reply))
            .where(conv.c.id == cid)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.current_reply is None:
            return None, None
        if row.status is None:
            return row.current_reply, None
        reply = ReplyRow(
            row.current_reply, row.status, _aware(row.created_at), _aware(row.updated_at)
        )
        return row.current_reply, reply

    async def streaming_reply(self, cid: str) -> ReplyRow | None:
        """The conversation's reply while it streams, else ``None``."""
        _, reply = await self._current(cid)
        return reply if reply is not None and reply.status == "streaming" else None

    async def current_reply(self, cid: str) -> str | None:
        """The id of the conversation's reply while it streams, else ``None``."""
        reply = await self.streaming_reply(cid)
        return None if reply is None else reply.id

    # --- replies ---------------------------------------------------------------------------

    @staticmethod
    def channel(cid: str) -> str:
        return channel_name(cid)

    @staticmethod
    def stop_flag(message_id: str) -> str:
        return stop_flag_name(message_id)

    async def ask(self, cid: str, content: str) -> str:
        """Store ``content`` as the user's question and start the reply as a job (an asyncio
        task, or an arq job for the worker).

        Returns:
            The assistant message's id.

        Raises:
            Busy: a reply is streaming in the conversation, here or in any other process
                (nothing stored, nothing asked).
            APIConnectionError: with arq jobs, Redis did not answer a claim (nothing stored).
            redis.exceptions.RedisError: with arq jobs, Redis did not take the job (the
                question is stored, and the reply's row ends ``failed`` with ``queue_error``).
        """
        async with self._locks.held(cid):
            if self.queued:
                return await self._enqueue(cid, content)
            history = await self.message_rows(cid)
            user_id, reply_id = new_id(), new_id()
            asked_at = _now()
            events = self._events(_turns(history, content), reply_id)
            try:
                task = await sinks.start_relay(
                    events,
                    hub=self.hub,
                    channel=self.channel(cid),
                    writer=self.writer,
                    message_id=reply_id,
                    conversation_id=cid,
                )
            except sinks.ChannelBusyError:
                raise Busy(cid) from None
            self._running.add(task)
            task.add_done_callback(self._ended)
            await self._store_question(cid, user_id, reply_id, content, asked_at)
        return reply_id

    def _events(
        self, turns: list[dict[str, str]], reply_id: str
    ) -> reactivex.Observable[MessageStreamEvent]:
        assert self.client is not None  # asyncio tasks only
        return self.client.stream(
            model=self.settings.model, max_tokens=self.settings.max_tokens, messages=turns
        ).pipe(ops.take_until_cancel(self.flags.watch(self.stop_flag(reply_id))))

    def _ended(self, task: asyncio.Task[Message | None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # The row and the channel recorded it; the page shows it.
            _log.info("a reply ended with %s", type(error).__name__)

    async def _enqueue(self, cid: str, content: str) -> str:
        """:meth:`ask` with arq jobs: the database decides who is busy (see the module)."""
        expected, previous = await self._current(cid)
        if (
            previous is not None
            and previous.status == "streaming"
            and not await self._clear_dead(previous)
        ):
            raise Busy(cid)
        history = await self.message_rows(cid)
        user_id, reply_id = new_id(), new_id()
        asked_at = _now()
        try:
            await self._store_question(
                cid, user_id, reply_id, content, asked_at, expected=expected, guarded=True
            )
        except _Raced:
            raise Busy(cid) from None
        assert self._queue is not None, "open() connects the queue"
        try:
            await self._queue.enqueue_job(
                JOB,
                conversation_id=cid,
                reply_id=reply_id,
                messages=_turns(history, content),
                model=self.settings.model,
                max_tokens=self.settings.max_tokens,
                _job_id=reply_id,
                _queue_name=self.settings.queue_name,
                _expires=_JOB_EXPIRES,
            )
        except BaseException:
            # Nobody will ever start it: the row must not stay streaming (and busy).
            with contextlib.suppress(Exception):
                await asyncio.shield(fail_reply(self.engine, self.messages, reply_id, QUEUE_ERROR))
            raise
        return reply_id

    async def _clear_dead(self, reply: ReplyRow) -> bool:
        """Whether a ``streaming`` queued reply is dead (now ended): no worker took it within
        ``worker_timeout``, or its worker stopped checkpointing a minute ago."""
        claims = self._claims
        assert claims is not None
        state = await claims.state(reply.id)
        waited = (_now() - reply.created_at).total_seconds()
        if state is None and waited >= self.settings.worker_timeout:
            if await claims.abandon(reply.id):
                await fail_reply(self.engine, self.messages, reply.id, NO_WORKER)
                return True
            state = await claims.state(reply.id)
        if state in ("abandoned", "failed"):
            # Whoever gave up on it may have stopped before ending its row.
            await fail_reply(self.engine, self.messages, reply.id, NO_WORKER)
            return True
        if (_now() - reply.updated_at).total_seconds() >= _STALE:
            await self.writer.recover(older_than=_STALE)
            return await self._no_longer_streams(reply.id)
        return False

    async def _no_longer_streams(self, reply_id: str) -> bool:
        async with self.engine.connect() as conn:
            status = (
                await conn.execute(
                    select(self.messages.c.status).where(self.messages.c.id == reply_id)
                )
            ).scalar()
        return status != "streaming"

    async def wait_started(self, reply: ReplyRow) -> tuple[str, str] | None:
        """With arq jobs: wait until a worker has opened the channel of ``reply``.

        Returns ``None`` once it has (the channel carries this reply, not the one before it),
        or the ``(type, message)`` of the error the page shows: no worker claimed the reply
        within ``worker_timeout`` seconds of its question (the reply is abandoned and its row
        ends ``failed``), the worker could not start it (its row says why), or a worker
        claimed it but did not open it within twice that.

        Bounded: at most ``2 * worker_timeout`` seconds. Cancellation propagates.
        """
        claims = self._claims
        assert claims is not None, "open() connects the queue"
        loop = asyncio.get_running_loop()
        timeout = self.settings.worker_timeout
        waited = max((_now() - reply.created_at).total_seconds(), 0.0)
        abandon_at = loop.time() + max(timeout - waited, 0.0)
        give_up_at = loop.time() + timeout * 2
        while True:
            state = await claims.state(reply.id)
            if state == "open":
                return None
            if state in ("abandoned", "failed"):
                return await self._reply_error(reply.id)
            now = loop.time()
            if state is None and now >= abandon_at:
                if await claims.abandon(reply.id):
                    await fail_reply(self.engine, self.messages, reply.id, NO_WORKER)
                    return NO_WORKER
                continue  # a worker claimed it just now: look again at once
            if now >= give_up_at:
                return WORKER_STALLED
            await asyncio.sleep(_POLL)

    async def _reply_error(self, reply_id: str) -> tuple[str, str]:
        """The error a failed queued reply's row holds (ended here if it still streams)."""
        await fail_reply(self.engine, self.messages, reply_id, NO_WORKER)
        msgs = self.messages
        query = select(msgs.c.error_type, msgs.c.error_message).where(msgs.c.id == reply_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.error_type is None:
            return NO_WORKER
        return str(row.error_type), str(row.error_message or "")

    async def _store_question(
        self,
        cid: str,
        user_id: str,
        reply_id: str,
        content: str,
        asked_at: datetime,
        *,
        expected: str | None = None,
        guarded: bool = False,
    ) -> None:
        """Insert the question's row and the reply's (``streaming``); the reply becomes the
        conversation's current one.

        Raises:
            _Raced: ``guarded`` and the conversation's current reply is no longer
                ``expected`` (nothing is stored).
        """
        msgs, conv = self.messages, self.conversations
        base: dict[str, Any] = {
            "conversation_id": cid,
            "model": None,
            "content": [],
            "usage_estimated": False,
            "updated_at": asked_at,
        }
        user = {
            **base,
            "id": user_id,
            "role": "user",
            "status": "finished",
            "text": content,
            "content": [{"type": "text", "text": content}],
            "created_at": asked_at,
        }
        reply = {
            **base,
            "id": reply_id,
            "role": "assistant",
            "status": "streaming",
            "text": "",
            "created_at": asked_at + timedelta(microseconds=1),
        }
        dialect = self.engine.dialect.name
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        title = conv.c.title
        swap = update(conv).where(conv.c.id == cid)
        if guarded:
            current = conv.c.current_reply
            swap = swap.where(current.is_(None) if expected is None else current == expected)
        swap = swap.values(
            current_reply=reply_id,
            updated_at=asked_at,
            title=case((title == "", _title(content)), else_=title),
        )
        async with self.engine.begin() as conn:
            # First: on SQLite the transaction takes the write lock here, so the condition is
            # checked against the latest commit, not an older snapshot.
            if (await conn.execute(swap)).rowcount != 1 and guarded:
                raise _Raced(cid)
            await conn.execute(insert(msgs).values(user))
            # The writer may have written the reply's row already: it wins.
            await conn.execute(dialect_insert(msgs).values(reply).on_conflict_do_nothing())

    async def stop(self, cid: str) -> None:
        """Ask the conversation's streaming reply, if any, to stop (it ends ``cancelled``).

        With arq jobs a stop before the worker starts the reply is kept by the flags (their
        ``ttl``, 30 s): the worker then ends it ``cancelled`` at once."""
        reply_id = await self.current_reply(cid)
        if reply_id is not None:
            await self.flags.request_stop(self.stop_flag(reply_id))


async def connect_queue(settings: DemoSettings) -> ArqRedis:
    """An arq connection to ``settings.redis_url`` whose default queue is the demo's.

    Raises:
        ImportError: arq is not installed (``pip install 'anthropic-rx[queue]'``).
    """
    try:
        from arq import create_pool
        from arq.connections import RedisSettings
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "the demo's arq jobs need arq: pip install 'anthropic-rx[queue]'"
        ) from exc
    assert settings.redis_url is not None
    return await create_pool(
        RedisSettings.from_dsn(settings.redis_url), default_queue_name=settings.queue_name
    )


def _title(content: str) -> str:
    text = " ".join(content.split())
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1].rstrip() + "…"


def _turns(history: Sequence[MessageRow], question: str) -> list[dict[str, str]]:
    """The turns sent to the model: each question with the reply it got, then ``question``.

    A question whose reply has no text (it failed, or was stopped before a word) is left out
    with it, so the turns alternate and a retried question is asked once.
    """
    turns: list[dict[str, str]] = []
    pending: str | None = None
    for row in history:
        if row.role == "user":
            pending = row.content
        elif pending is not None and row.content.strip():
            turns.append({"role": "user", "content": pending})
            turns.append({"role": "assistant", "content": row.content.rstrip()})
            pending = None
    turns.append({"role": "user", "content": question})
    return turns
