"""Conversations, their messages, and the job that streams each reply.

```
POST /messages ─► Jobs.ask(cid, content)
  │ turns  = the stored exchanges (those whose reply has no text left out), then content
  │ events = client.stream(...).pipe(take_until_cancel(flags.watch("stop-stream-{mid}")))
  │ sinks.start_relay(events, hub, channel="conversation.{cid}", writer, message_id=mid)
  │   ChannelBusyError ─► Busy (409): nothing stored, nothing asked
  │ insert the user row and the assistant row (streaming); current_reply = mid
  ▼
asyncio task: relay ─► the broadcaster's log (the browsers follow it) + the writer's row
```

Storage: one SQLite (or PostgreSQL) database. The messages of both roles live in the
:class:`~anthropic_rx.sinks.DatabaseWriter`'s table (``arx_messages``): the writer saves each
assistant reply as it streams; the user's question is a row of the same table, inserted here
with ``role="user"`` and status ``finished``, so one ordered query reads the conversation back.
The assistant row is inserted too (status ``streaming``, if the writer has not written it yet)
so a reload before the model's first byte still sees a reply in progress. A second table of
the demo's own (``arx_demo_conversations``) holds each conversation's owner, title, current
reply and ``updated_at``.

Jobs run as asyncio tasks of the web process, with either backend. With
``ANTHROPIC_RX_REDIS_URL`` the broadcaster and the stop flags are Redis's, so the channel and
the Stop button work across processes, but the job itself still runs in the process that took
the POST: running it in an arq worker process is a later step.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import reactivex
from sqlalchemy import Column, DateTime, MetaData, String, Table, case, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import Client, Message, MessageStreamEvent, cancel, sinks, testing
from .. import operators as ops
from ._fake_reply import PacedAnswer
from ._settings import DemoSettings

__all__ = ["Busy", "ConversationRow", "Jobs", "MessageRow", "new_id"]

_log = logging.getLogger("anthropic_rx.demo")

TITLE_LENGTH = 60


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


class Jobs:
    """The demo's state: the client, broadcaster, flags, writer, and the running replies.

    :meth:`open` creates the tables and ends the rows a stopped process left ``streaming``;
    :meth:`aclose` cancels the replies still running (their rows end ``incomplete``, their
    channels with ``IncompleteStreamError``) and closes everything.
    """

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.fake: testing.FakeAnthropic | None = None
        if settings.api_key is not None and settings.fake is None:
            self.client = Client(api_key=settings.api_key, max_retries=settings.max_retries)
        else:
            fake = settings.fake if settings.fake is not None else testing.FakeAnthropic()
            if fake.default is testing.echo:
                fake.default = PacedAnswer(settings.tokens_per_second)
            self.fake = fake
            # A key of its own, so one in the environment is never sent to the fake.
            self.client = fake.client(api_key="demo-fake-key", max_retries=settings.max_retries)
        self.hub: sinks.Broadcaster
        self.flags: cancel.CancelFlags
        if settings.redis_url is not None:
            self.hub = sinks.RedisBroadcaster(settings.redis_url, prefix="arx-demo")
            self.flags = cancel.RedisCancelFlags(settings.redis_url, prefix="arx-demo")
        else:
            self.hub = sinks.MemoryBroadcaster()
            self.flags = cancel.MemoryCancelFlags()
        self.writer = sinks.DatabaseWriter(settings.database_url)
        self.messages = self.writer.table
        self.conversations = conversation_table(MetaData())
        self._running: set[asyncio.Task[Message | None]] = set()
        # One ask at a time per conversation in this process: the busy check, the request and
        # the rows of one question are not interleaved with another's.
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def engine(self) -> AsyncEngine:
        """The writer's engine: the demo's own table lives in the same database."""
        return self.writer.engine

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the tables; end the rows left ``streaming`` by a process that stopped.

        In memory mode every reply runs in this process, so any ``streaming`` row at startup
        is an orphan; with Redis another process may still be streaming, so only rows idle for
        a minute are ended.
        """
        await self.writer.create_all()
        async with self.engine.begin() as conn:
            await conn.run_sync(self.conversations.create, checkfirst=True)
        await self.writer.recover(older_than=60 if self.settings.redis_url else 0)

    async def aclose(self) -> None:
        """Cancel the running replies, then close the client, broadcaster, flags and writer."""
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self.client.aclose()
        await self.hub.aclose()
        closer = getattr(self.flags, "aclose", None)
        if closer is not None:
            await closer()
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

    async def current_reply(self, cid: str) -> str | None:
        """The id of the conversation's reply while it streams, else ``None``."""
        conv, msgs = self.conversations, self.messages
        query = (
            select(msgs.c.id)
            .select_from(conv.join(msgs, msgs.c.id == conv.c.current_reply))
            .where(conv.c.id == cid, msgs.c.status == "streaming")
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else str(row.id)

    # --- replies ---------------------------------------------------------------------------

    @staticmethod
    def channel(cid: str) -> str:
        return f"conversation.{cid}"

    @staticmethod
    def stop_flag(message_id: str) -> str:
        return f"stop-stream-{message_id}"

    async def ask(self, cid: str, content: str) -> str:
        """Store ``content`` as the user's question and start the reply as a job.

        Returns:
            The assistant message's id.

        Raises:
            Busy: a reply is streaming in the conversation (nothing stored, nothing asked).
        """
        lock = self._locks.setdefault(cid, asyncio.Lock())
        async with lock:
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
        return self.client.stream(
            model=self.settings.model, max_tokens=self.settings.max_tokens, messages=turns
        ).pipe(ops.take_until_cancel(self.flags.watch(self.stop_flag(reply_id))))

    def _ended(self, task: asyncio.Task[Message | None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # The row and the channel recorded it; the page shows it.
            _log.info("a reply ended with %s", type(error).__name__)

    async def _store_question(
        self, cid: str, user_id: str, reply_id: str, content: str, asked_at: datetime
    ) -> None:
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
        async with self.engine.begin() as conn:
            await conn.execute(insert(msgs).values(user))
            # The writer may have written the reply's row already: it wins.
            await conn.execute(dialect_insert(msgs).values(reply).on_conflict_do_nothing())
            title = conv.c.title
            await conn.execute(
                update(conv)
                .where(conv.c.id == cid)
                .values(
                    current_reply=reply_id,
                    updated_at=asked_at,
                    title=case((title == "", _title(content)), else_=title),
                )
            )

    async def stop(self, cid: str) -> None:
        """Ask the conversation's streaming reply, if any, to stop (it ends ``cancelled``)."""
        reply_id = await self.current_reply(cid)
        if reply_id is not None:
            await self.flags.request_stop(self.stop_flag(reply_id))


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
