"""Saving a reply to a database as it streams: one row per message, SQLAlchemy 2 async.

```
save(events, message_id=...)
  │ events.subscribe: on_next feeds a MessageBuilder, never awaits, and queues
  │   a status="streaming" row    at message_start, at each content_block_stop, and every
  │                               checkpoint_every seconds (+0-25 % at random; +0-100 %
  │                               after an event's checkpoint) while something is unsaved:
  │                               one timer per reply, armed by its first unsaved change
  │                               (one row of a reply waits at most, a newer checkpoint
  │                               joins it, and one is written at a time: never a queue of
  │                               writes)
  │ the save coroutine waits for the end, then queues the final status and waits for it:
  │                               finished · cancelled · failed · incomplete
  ▼
the writer's flusher (one task per writer): the rows every save queued meanwhile, each built
as its batch is taken (a checkpoint is the reply's snapshot at that instant), up to _BATCH
in one executemany of an upsert built and compiled once; PostgreSQL: one connection kept
while rows are queued, in autocommit; a lost connection retries the whole batch
```

The stream is never slowed by the database: events are taken synchronously into the builder
while a write is in flight, and each write stores the whole snapshot so far (an upsert), so a
checkpoint that could not be written is made good by the next one.

Final status rules:

- ``finished``: ``message_stop`` arrived.
- ``cancelled``: the events completed without ``message_stop`` (``ops.take_until_cancel``
  fired); the usage is estimated as the broadcaster does when no ``message_delta`` came.
- ``incomplete``: the body ended without ``message_stop`` (:class:`IncompleteStreamError`),
  the saving task was cancelled, or :meth:`DatabaseWriter.recover` found the row left
  ``streaming`` by a process that stopped.
- ``failed``: any other error, a lost connection to the API (:class:`APIConnectionError`)
  included: the reply did not end the way a truncated body does, it broke; ``error_type`` and
  ``error_message`` are what :func:`~anthropic_rx.sinks._errors.public_error` shows.

``usage_estimated`` is true whenever the row has no usage from a ``message_delta``; its
``output_tokens`` are then estimated from the generated text.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, cast

import reactivex
from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    exc,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .._events import (
    ContentBlockStopEvent,
    Message,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStreamEvent,
    PingEvent,
    TextBlock,
)
from .._exceptions import AnthropicRxError, IncompleteStreamError
from .._snapshot import MessageBuilder
from ..operators._accumulate import _CHARS_PER_TOKEN, _generated_chars, cancelled_snapshot
from ._errors import public_error
from ._feed import feed_or_error
from ._schema import create_tables

__all__ = ["DEFAULT_TABLE", "DatabaseWriteError", "DatabaseWriter", "Status", "StoredMessage"]

_log = logging.getLogger("anthropic_rx.sinks")

DEFAULT_TABLE: Final = "arx_messages"

Status: TypeAlias = Literal["streaming", "finished", "cancelled", "failed", "incomplete"]

_COLUMNS: Final = (
    "id",
    "conversation_id",
    "role",
    "model",
    "status",
    "text",
    "content",
    "stop_reason",
    "error_type",
    "error_message",
    "input_tokens",
    "output_tokens",
    "usage_estimated",
    "request_id",
    "created_at",
    "updated_at",
)

# Rows of different replies written in one statement at most: a batch holds the event loop
# while SQLAlchemy binds its parameters, so it stays short; more rows wait for the next one.
_BATCH: Final = 50
# Seconds between two statements of a writer that is not sending full batches: the rows of the
# replies that checkpoint meanwhile go together. Each statement costs the event loop a fixed
# share (the send, the driver's round trip) whatever its rows; a row written alone after a
# quiet spell goes at once.
_GATHER: Final = 0.01

# Interval checkpoints come checkpoint_every * (1 + _JITTER * _jitter()) apart: a fraction drawn
# per interval (not a secret; a module name so tests can fix it).
_JITTER: Final = 0.25
_jitter = random.random

# SQLite takes one writer at a time: the writes of every DatabaseWriter over one engine wait
# for each other here instead of failing with "database is locked". Keyed weakly by the engine,
# so a disposed and forgotten engine takes its lock with it.
_SQLITE_LOCKS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


class DatabaseWriteError(AnthropicRxError):
    """A reply's row could not be written, after retries.

    ``__cause__`` is the database driver's error (through SQLAlchemy). The row keeps what the
    last successful write stored (status ``streaming`` when that was a checkpoint, which
    :meth:`DatabaseWriter.recover` later ends ``incomplete``).

    Attributes:
        message_id: the row's id.
        stream_error: the stream's own error, when the reply failed as well (it was not
            recorded).
    """

    def __init__(
        self,
        message: str,
        *,
        message_id: str,
        stream_error: BaseException | None = None,
        partial_message: Message | None = None,
    ) -> None:
        super().__init__(message, partial_message=partial_message)
        self.message_id = message_id
        self.stream_error = stream_error

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions unpickle as cls(*args): the required keyword would be missing. The
        # attributes (message_id, stream_error, ...) come back from the state.
        return (_unpickle_write_error, (type(self), self.args), self.__dict__)


def _unpickle_write_error(cls: type[DatabaseWriteError], args: tuple[Any, ...]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    return error


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One row of the writer's table, as :meth:`DatabaseWriter.get` reads it.

    Attributes are the table's columns; ``content`` is the list of content blocks as the API's
    JSON (tool input and thinking included); timestamps are timezone-aware (UTC).
    """

    id: str
    conversation_id: str | None
    role: str | None
    model: str | None
    status: Status
    text: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    error_type: str | None
    error_message: str | None
    input_tokens: int | None
    output_tokens: int | None
    usage_estimated: bool
    request_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def usage(self) -> dict[str, int] | None:
        """``{"input_tokens", "output_tokens"}``, or ``None`` when the row has no usage."""
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {
            "input_tokens": self.input_tokens or 0,
            "output_tokens": self.output_tokens or 0,
        }


def message_table(name: str = DEFAULT_TABLE, metadata: MetaData | None = None) -> Table:
    """The writer's table, named ``name`` (a user's own table needs these columns).

    Returns:
        A SQLAlchemy ``Table`` in ``metadata`` (a new ``MetaData`` by default).
    """
    return Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("id", String(255), primary_key=True),
        Column("conversation_id", String(255), index=True),
        Column("role", String(32)),
        Column("model", String(255)),
        Column("status", String(16), nullable=False, index=True),
        Column("text", Text, nullable=False, default=""),
        Column("content", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        Column("stop_reason", String(64)),
        Column("error_type", String(255)),
        Column("error_message", Text),
        Column("input_tokens", Integer),
        Column("output_tokens", Integer),
        Column("usage_estimated", Boolean, nullable=False, default=False),
        Column("request_id", String(255)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL: readers never wait for the writer; busy_timeout: another process's write is waited
    # for instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class DatabaseWriter:
    """Saves streamed replies, one row per message, as they stream.

    Args:
        engine_or_url: a SQLAlchemy async URL (``"sqlite+aiosqlite:///chat.db"``,
            ``"postgresql+asyncpg://user@host/db"``) or an ``AsyncEngine``. An engine made from
            a URL has ``pool_pre_ping`` on (paid once per run of batches: the writes keep
            their connection while rows are queued, and a write on a connection that died
            is retried on another), SQLite in WAL mode with a 5 s busy timeout, and is
            disposed by :meth:`aclose`; a given engine is the caller's to dispose.
        table: the table's name (default ``"arx_messages"``) or a SQLAlchemy ``Table`` of the
            caller's with at least the writer's columns (see :func:`message_table`).
        checkpoint_every: seconds between two interval checkpoints of a streaming reply, at
            least; each interval is up to a quarter longer, at random (the first after
            ``message_start`` or a block's stop up to twice as long), so that replies that
            started together do not write together.
        retries: further attempts of a write that failed (a lost connection, a locked
            database), ``retry_backoff`` seconds apart, doubling.
        retry_backoff: seconds before the first retry.

    Raises:
        ValueError: an option is out of range, or ``table`` lacks a column.
        TypeError: ``engine_or_url`` is neither a string nor an ``AsyncEngine``.
    """

    def __init__(
        self,
        engine_or_url: str | AsyncEngine,
        *,
        table: str | Table | None = None,
        checkpoint_every: float = 0.5,
        retries: int = 2,
        retry_backoff: float = 0.05,
    ) -> None:
        if not checkpoint_every > 0 or math.isinf(checkpoint_every):
            raise ValueError("checkpoint_every must be a positive number of seconds")
        if retries < 0:
            raise ValueError("retries must be zero or more")
        if retry_backoff < 0:
            raise ValueError("retry_backoff must be zero or more")
        if isinstance(engine_or_url, AsyncEngine):
            self.engine = engine_or_url
            self._owns_engine = False
        elif isinstance(engine_or_url, str):
            if not engine_or_url:
                raise ValueError("the database URL is empty")
            self.engine = create_async_engine(engine_or_url, pool_pre_ping=True)
            self._owns_engine = True
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            raise TypeError(
                f"engine_or_url must be a URL or an AsyncEngine, not {type(engine_or_url).__name__}"
            )
        if table is None or isinstance(table, str):
            if table == "":
                raise ValueError("the table name is empty")
            self.table = message_table(table or DEFAULT_TABLE)
        elif isinstance(table, Table):
            missing = [name for name in _COLUMNS if name not in table.c]
            if missing:
                raise ValueError(f"table {table.name!r} lacks the columns {missing}")
            self.table = table
        else:
            raise TypeError(f"table must be a name or a Table, not {type(table).__name__}")
        self.checkpoint_every = float(checkpoint_every)
        self.retries = retries
        self.retry_backoff = retry_backoff
        self._dialect = self.engine.dialect.name
        self._upsert_statement = _upsert_statement(self._dialect, self.table)
        # The rows waiting for the flusher, by message id, oldest first.
        self._pending: dict[str, _Queued] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._flusher_loop: asyncio.AbstractEventLoop | None = None
        self._last_statement = -math.inf  # the flusher loop's time of its last statement
        # PostgreSQL: the flusher's connection while it has rows to write.
        self._held: AsyncConnection | None = None

    def __repr__(self) -> str:
        # The URL's password never shows: render_as_string hides it by default.
        url = self.engine.url.render_as_string(hide_password=True)
        return f"DatabaseWriter({url!r}, table={self.table.name!r})"

    # --- schema and reads ----------------------------------------------------------------

    async def create_all(self) -> None:
        """Create the table and its indexes when they do not exist (SQLite: switch the file
        to WAL mode, which the file keeps).

        Processes that start together may call it at the same moment: the one that finds the
        table made meanwhile tries again and finds it.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database refused.
        """
        await create_tables(
            self.engine,
            self.table,
            lock=self._write_lock(),
            sqlite_wal=self._dialect == "sqlite",
        )

    async def get(self, message_id: str) -> StoredMessage | None:
        """The row of ``message_id``, or ``None`` when there is none.

        A read on a connection the database closed meanwhile is tried once more on a new one.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database refused.
        """
        columns = [self.table.c[name] for name in _COLUMNS]
        query = select(*columns).where(self.table.c.id == message_id)
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(query)).first()
        except exc.DBAPIError as failure:
            if not _retryable(failure):
                raise
            async with self.engine.connect() as conn:
                row = (await conn.execute(query)).first()
        if row is None:
            return None
        values = dict(zip(_COLUMNS, row, strict=True))
        for name in ("created_at", "updated_at"):
            stamp = values[name]
            if stamp is not None and stamp.tzinfo is None:  # SQLite keeps no zone: ours is UTC
                values[name] = stamp.replace(tzinfo=UTC)
        values["text"] = values["text"] or ""
        values["content"] = list(values["content"] or [])
        values["usage_estimated"] = bool(values["usage_estimated"])
        return StoredMessage(**values)

    async def recover(self, older_than: float = 60) -> int:
        """End the rows left ``streaming`` and not updated for ``older_than`` seconds (their
        process stopped before the reply ended) as ``incomplete``.

        A live reply's row is updated only when something arrives: choose ``older_than``
        above the longest silence a reply may have (the client's ``idle_timeout``). A live
        row ended here anyway takes its true final status at its final write.

        Returns:
            How many rows it ended.

        Raises:
            ValueError: ``older_than`` is negative.
            sqlalchemy.exc.SQLAlchemyError: the database refused.
        """
        if not older_than >= 0:
            raise ValueError("older_than must be zero or more seconds")
        now = _now()
        table = self.table
        statement = (
            update(table)
            .where(table.c.status == "streaming")
            .where(table.c.updated_at <= now - timedelta(seconds=older_than))
            .values(
                status="incomplete",
                error_type="IncompleteStreamError",
                error_message="the process saving this reply stopped before it ended",
                updated_at=now,
            )
        )
        async with self._write_lock(), self.engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)

    async def aclose(self) -> None:
        """Wait for the rows still queued, then dispose the engine when the writer made it from a
        URL (a given one is left open)."""
        flusher = self._flusher
        if flusher is not None and not flusher.done() and self._flusher_loop is _running_loop():
            with contextlib.suppress(Exception):
                await asyncio.shield(flusher)
        if self._owns_engine:
            await self.engine.dispose()

    # --- saving --------------------------------------------------------------------------

    async def save(
        self,
        events: reactivex.Observable[MessageStreamEvent],
        *,
        message_id: str,
        conversation_id: str | None = None,
    ) -> Message | None:
        """Save one reply as the row ``message_id``, while it streams.

        Subscribes to ``events`` once. The row is ``streaming`` from ``message_start`` on, its
        text and content saved at checkpoints (at each ``content_block_stop`` and every
        ``checkpoint_every`` seconds while something is unsaved, one write at a time), then it
        takes exactly one final status (see the module's rules). A row is written even for a
        reply that ended before ``message_start`` (no model, no content). A write that fails is
        retried ``retries`` times; a checkpoint that still fails is made good by the next
        write, which stores the whole snapshot.

        Returns:
            The final message; the cancelled snapshot (``cancelled=True``, usage estimated
            when no ``message_delta`` came) when the events completed without
            ``message_stop``; ``None`` when they did before ``message_start``.

        Raises:
            ValueError: ``message_id`` is empty (nothing was subscribed).
            DatabaseWriteError: the final row could not be written (the events were consumed
                to their end first; the stream's own error is its ``stream_error``).
            Exception: the stream's error (typed, with ``.partial_message``), after the row
                recorded it.

        Cancellation (of the awaiting task): the events are disposed, the row is ended
        ``incomplete`` (one attempt), and ``CancelledError`` propagates.
        """
        if not isinstance(message_id, str) or not message_id:
            raise ValueError("message_id must be a non-empty string")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise TypeError("conversation_id must be a string or None")
        saving = _Saving(self, asyncio.get_running_loop(), message_id, conversation_id)
        ended = False
        try:
            # From here on the checkpoints are the observer's callbacks and one timer: this
            # coroutine only waits for the end, then for the final row.
            saving.start(events)
            await saving.ended
            status, row_message, result = saving.outcome()
            ended = True
            error = result if isinstance(result, BaseException) else None
            try:
                await self._queue_final(saving, status, row_message, error, self.retries + 1)
            except (exc.SQLAlchemyError, OSError) as failure:
                raise DatabaseWriteError(
                    f"could not write the {status} row of message {message_id!r}: "
                    f"{type(failure).__name__}",
                    message_id=message_id,
                    stream_error=error,
                    partial_message=row_message,
                ) from failure
        except asyncio.CancelledError:
            saving.stop()
            if not ended:
                ended = True
                try:
                    await self._queue_final(
                        saving,
                        "incomplete",
                        saving.builder.message(),
                        IncompleteStreamError("the reply's saving was cancelled"),
                        1,
                    )
                except Exception:  # the cancel wins; recover() ends the row later
                    _log.exception("could not end message %r after a cancel", message_id)
            raise
        finally:
            saving.stop()
        if isinstance(result, BaseException):
            raise result
        return result

    def _queue_checkpoint(self, saving: _Saving) -> None:
        """Queue a ``streaming`` row of ``saving`` for the flusher, built when it is taken.

        Nothing waits for it: the flusher reports its end to ``saving``
        (:meth:`_Saving.not_written` when it could not be written).
        """
        self._enqueue(saving, None, self.retries + 1)
        saving.queued = True

    def _queue_final(
        self,
        saving: _Saving,
        status: Status,
        message: Message | None,
        error: BaseException | None,
        tries: int,
    ) -> asyncio.Future[None]:
        """Queue the final row of ``saving`` (``status``, ``message`` and ``error`` as given);
        the future is done when it is stored.

        The future's error is what the last attempt raised (``SQLAlchemyError``, ``OSError``)
        when it could not be. Cancelled: the row stays queued and is written all the same.
        """
        queued = self._enqueue(saving, (status, message, error), tries)
        done: asyncio.Future[None] = saving.loop.create_future()
        queued.waiters.append(done)
        return done

    def _enqueue(self, saving: _Saving, final: _Final | None, tries: int) -> _Queued:
        """Queue a row of ``saving`` for the flusher (started when none runs).

        A row of the same message still waiting (not yet taken) is replaced: its place in the
        queue, its waiters and the most tries of the two are kept. A row of a message whose
        previous one is being written waits for a later batch: the flusher writes one batch at
        a time, so the rows of a reply are stored in the order they were queued.
        """
        loop = saving.loop
        if self._flusher_loop is not loop:  # a writer reused on a new event loop
            self._pending.clear()
            self._flusher = None
            self._held = None  # its loop's connection: unusable here
            self._flusher_loop = loop
            self._last_statement = -math.inf
        message_id = saving.message_id
        queued = self._pending.get(message_id)
        if queued is None:
            queued = self._pending[message_id] = _Queued(saving, final, tries)
        else:
            if queued.saving is not saving:  # another save of the same id: the newer wins
                queued.saving.displaced()
                queued.saving = saving
            queued.final = final
            queued.tries = max(queued.tries, tries)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name=f"{self!r} flusher")
        return queued

    async def _flush(self) -> None:
        """Write what is queued, ``_BATCH`` rows per statement, until nothing is.

        One task per writer: the rows of every reply that checkpointed meanwhile go together
        in one ``executemany`` of the upsert compiled once, so the event loop is held once per
        batch instead of once per row. Each row is built as its batch is taken, from its
        reply's snapshot at that instant (a checkpoint) or from the final message given. On
        PostgreSQL the batches share one connection in autocommit (no ``BEGIN``/``COMMIT``
        round trips, the pool's pre-ping once per run of batches), given back as soon as the
        queue is empty. Statements that are not full batches go ``_GATHER`` seconds apart at
        most once a run has started, so the rows of many replies share them; the first row of
        a quiet writer goes at once (one turn of the event loop later).
        """
        batch: list[_Queued] = []
        loop = asyncio.get_running_loop()
        try:
            # The events that queued the first row may end their reply in the same turn: its
            # final row then replaces the checkpoint instead of following it.
            await asyncio.sleep(0)
            while True:
                if not self._pending:
                    await asyncio.sleep(0)  # rows queued in the same turn join this run
                    if not self._pending:
                        break
                if len(self._pending) < _BATCH:
                    gather = self._last_statement + _GATHER - loop.time()
                    if gather > 0:
                        await asyncio.sleep(gather)
                self._last_statement = loop.time()
                batch = []
                for message_id in list(itertools.islice(self._pending, _BATCH)):
                    queued = self._pending.pop(message_id)
                    batch.append(queued)
                    queued.build()
                await self._store(batch)
                batch = []
        except BaseException as failure:
            # Not a database error (those end in _store): nothing queued may wait forever, and
            # each save reports it as its row not written. Taken out of the queue first: a
            # checkpoint that fails may queue its next one.
            stopped = _FlusherStopped()
            stopped.__cause__ = failure
            failed = [*batch, *self._pending.values()]
            self._pending.clear()
            for queued in failed:
                queued.fail(stopped)
            raise
        finally:
            # Rows queued while the connection is given back start a new flusher.
            if self._flusher is asyncio.current_task():
                self._flusher = None
            await self._release(invalidate=False)

    async def _release(self, *, invalidate: bool) -> None:
        """Give the held connection back (``invalidate``: it may be dead, the pool drops it)."""
        conn, self._held = self._held, None
        if conn is None:
            return
        if invalidate:
            with contextlib.suppress(Exception):
                await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()

    async def _store(self, batch: list[_Queued]) -> None:
        """Write ``batch``, retrying a lost connection; every row ends stored or failed."""
        backoff = self.retry_backoff
        while batch:
            try:
                await self._execute([queued.row for queued in batch])
            except (exc.SQLAlchemyError, OSError) as failure:
                # Possibly dead: the next attempt takes another connection.
                await self._release(invalidate=True)
                if not _retryable(failure):
                    if len(batch) == 1:
                        batch[0].fail(failure)
                        return
                    # One row the database refuses must not fail its batch: each alone.
                    for queued in batch:
                        await self._store([queued])
                    return
                again = []
                for queued in batch:
                    queued.tries -= 1
                    if queued.tries > 0:
                        again.append(queued)
                    else:
                        queued.fail(failure)
                if again:
                    _log.info(
                        "writing %d row(s) (message %r first) failed (%s); retrying",
                        len(again),
                        again[0].row["id"],
                        type(failure).__name__,
                    )
                    await asyncio.sleep(backoff)
                    backoff *= 2
                batch = again
                continue
            for queued in batch:
                queued.succeed()
            return

    async def _execute(self, rows: list[dict[str, Any]]) -> None:
        """Upsert ``rows`` (each a different message) at once."""
        parameters: Any = rows[0] if len(rows) == 1 else rows
        if self._dialect == "postgresql":
            conn = self._held
            if conn is None:
                conn = self._held = await self.engine.connect()
                # One statement per batch: atomic by itself, no transaction to open or end.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(self._upsert_statement, parameters)
            await conn.commit()  # ends SQLAlchemy's own bookkeeping; nothing is sent
            return
        async with self._write_lock(), self.engine.begin() as own:
            if self._upsert_statement is not None:
                await own.execute(self._upsert_statement, parameters)
            else:
                for row in rows:
                    await self._update_or_insert(own, row)

    async def _update_or_insert(self, conn: AsyncConnection, row: dict[str, Any]) -> None:
        # Databases without ON CONFLICT: update, else insert (a racing insert updates).
        table = self.table
        changes = {name: value for name, value in row.items() if name not in ("id", "created_at")}
        updated = await conn.execute(update(table).where(table.c.id == row["id"]).values(changes))
        if updated.rowcount == 0:
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(table).values(row))
            except exc.IntegrityError:
                await conn.execute(update(table).where(table.c.id == row["id"]).values(changes))

    def _write_lock(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self._dialect != "sqlite":
            return contextlib.nullcontext()
        engine = self.engine.sync_engine
        lock = _SQLITE_LOCKS.get(engine)
        if lock is None:
            lock = _SQLITE_LOCKS[engine] = asyncio.Lock()
        return lock


def _retryable(failure: BaseException) -> bool:
    """A lost connection, or a database busy for now: worth another attempt."""
    if isinstance(failure, OSError):  # could not connect
        return True
    if isinstance(failure, exc.DBAPIError):
        return failure.connection_invalidated or isinstance(
            failure, exc.OperationalError | exc.InterfaceError
        )
    return isinstance(failure, exc.TimeoutError)  # no pooled connection came in time


class _FlusherStopped(exc.SQLAlchemyError):
    """The writer's flusher stopped (cancelled as its event loop closed, or an unexpected
    error, its ``__cause__``) before the row was written: a database error as far as
    ``save`` goes (a ``DatabaseWriteError``)."""

    def __init__(self) -> None:
        super().__init__("the writer stopped before the row was written")


# A final row's status, the message it stores and the error it records.
_Final: TypeAlias = tuple[Status, Message | None, BaseException | None]

# A row not built yet (never written to: each row built is a new dict).
_UNBUILT: Final[dict[str, Any]] = {}


class _Queued:
    """A row waiting for the flusher: whose it is, and who waits for it.

    A checkpoint (``final`` is ``None``) holds no snapshot: its row is built from the reply's
    builder when the flusher takes it, so it stores everything that arrived until then and no
    message waits in the queue. A final row is built from the ``final`` given. Only final rows
    have waiters; a checkpoint reports to its ``saving``.
    """

    __slots__ = ("final", "row", "saving", "tries", "waiters")

    def __init__(self, saving: _Saving, final: _Final | None, tries: int) -> None:
        self.saving = saving
        self.final = final
        self.tries = tries
        self.waiters: list[asyncio.Future[None]] = []
        self.row = _UNBUILT

    def build(self) -> None:
        """Build the row, as the flusher takes it."""
        saving = self.saving
        if self.final is None:
            saving.taken()
            status: Status = "streaming"
            message, error = saving.builder.message(), None
        else:
            status, message, error = self.final
        self.row = _row(
            saving.message_id,
            saving.conversation_id,
            saving.created,
            saving,
            message,
            status,
            error,
        )

    def succeed(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.final is None:
            self.saving.not_written(error)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(error)


def _upsert_statement(dialect: str, table: Table) -> Any:
    """The writer's upsert, built once: the row comes as bound parameters, so the compiled
    form is SQLAlchemy's cached one for every write (``None``: no ``ON CONFLICT`` here)."""
    if dialect not in ("sqlite", "postgresql"):
        return None
    dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = dialect_insert(table)
    changed = [name for name in _COLUMNS if name not in ("id", "created_at")]
    return statement.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={name: statement.excluded[name] for name in changed},
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


def _row(
    message_id: str,
    conversation_id: str | None,
    created: datetime,
    saving: _Saving,
    message: Message | None,
    status: Status,
    error: BaseException | None,
) -> dict[str, Any]:
    """The row's columns for ``message`` (the snapshot so far, or the final one)."""
    estimated = not saving.usage_reported
    error_type = error_message = None
    if error is not None:
        error_type, error_message = public_error(error)
    content: list[dict[str, Any]] = []
    text = ""
    input_tokens = output_tokens = None
    if message is not None:
        # The blocks alone: dumping the whole message would serialise it all to keep one key.
        content = [block.model_dump(mode="json", exclude_none=True) for block in message.content]
        text = "".join(block.text for block in message.content if isinstance(block, TextBlock))
        usage = message.usage
        if estimated:
            # cancelled_snapshot's estimate, without copying the message at every checkpoint
            reported = usage.output_tokens if usage is not None else 0
            input_tokens = usage.input_tokens if usage is not None else 0
            output_tokens = max(reported, math.ceil(_generated_chars(message) / _CHARS_PER_TOKEN))
        elif usage is not None:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
    return {
        "id": message_id,
        "conversation_id": conversation_id,
        "role": message.role if message is not None else None,
        "model": message.model if message is not None else None,
        "status": status,
        "text": text,
        "content": content,
        "stop_reason": message.stop_reason if message is not None else None,
        "error_type": error_type,
        "error_message": error_message,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "usage_estimated": estimated,
        "request_id": saving.request_id(error),
        "created_at": created,
        "updated_at": _now(),
    }


class _Saving:
    """One ``save``: the observer of the events, and its checkpoints.

    Every callback runs inside the source's reading (or the event loop's timer) and never
    awaits: ``on_next`` feeds the builder and, when a checkpoint is due, queues one for the
    writer's flusher, which builds its row when it takes it. A checkpoint is due at
    ``message_start`` and at each ``content_block_stop`` (at once), or ``next_due`` after the
    last one was queued, when something arrived since its row was built (one timer, armed by the
    first such change). The save coroutine only waits for ``ended``, then writes the final row.
    """

    __slots__ = (
        "_request_id",
        "_timer",
        "_upstream",
        "builder",
        "conversation_id",
        "created",
        "dirty",
        "ended",
        "error",
        "finished",
        "loop",
        "message_id",
        "next_due",
        "queued",
        "usage_reported",
        "writer",
    )

    def __init__(
        self,
        writer: DatabaseWriter,
        loop: asyncio.AbstractEventLoop,
        message_id: str,
        conversation_id: str | None,
    ) -> None:
        self.writer = writer
        self.loop = loop
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.created = _now()
        self._upstream: abc.DisposableBase | None = None
        self._request_id: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.builder = MessageBuilder()
        self.ended: asyncio.Future[None] = loop.create_future()  # done when the events end
        self.dirty = False  # something arrived since the last checkpoint was queued or built
        self.queued = False  # a checkpoint of this reply waits in the queue, not yet built
        self.next_due = -math.inf  # when an interval checkpoint may be queued next
        self.error: Exception | None = None
        self.finished = False
        self.usage_reported = False

    def start(self, events: reactivex.Observable[MessageStreamEvent]) -> None:
        try:
            self._upstream = events.subscribe(
                self.on_next,
                self.on_error,
                self.on_completed,
                scheduler=AsyncIOScheduler(self.loop),
            )
        except Exception as error:  # a source that fails to subscribe ends the reply as well
            self.on_error(error)
        if self.finished and self._upstream is not None:
            self._upstream.dispose()

    def on_next(self, item: MessageStreamEvent) -> None:
        if self.finished:
            return
        kind = type(item)
        if kind is PingEvent:
            return
        ended = feed_or_error(self.builder, item)
        if ended is not None:
            self.fail(ended)
            return
        if kind is ContentBlockStopEvent:
            self.checkpoint(urgent=True)
            return
        if kind is MessageStartEvent:
            meta = cast(MessageStartEvent, item).response_meta
            if meta is not None:
                self._request_id = meta.request_id
            self.checkpoint(urgent=True)
            return
        if kind is MessageDeltaEvent and cast(MessageDeltaEvent, item).usage is not None:
            self.usage_reported = True
        if self.dirty:
            return  # a delta: the checkpoint queued or the timer armed already takes it
        self.dirty = True
        if not self.queued:  # the queued checkpoint's row, built later, takes it
            self._arm()

    def on_error(self, error: Exception) -> None:
        self.fail(error)

    def on_completed(self) -> None:
        self._end()

    def fail(self, error: Exception) -> None:
        if self.finished:
            return
        if isinstance(error, AnthropicRxError) and error.partial_message is None:
            error.partial_message = self.builder.message()
        self.error = error
        self._end()
        if self._upstream is not None:
            self._upstream.dispose()

    def _end(self) -> None:
        self.finished = True
        self._disarm()
        if not self.ended.done():
            self.ended.set_result(None)

    def checkpoint(self, *, urgent: bool) -> None:
        """Queue a checkpoint now (``urgent``: an event forced it) and count the next interval
        from here."""
        # Replies that started together would otherwise checkpoint together forever (each
        # interval counted from the last checkpoint), hundreds of rows in one instant holding
        # the event loop: each interval gets up to a quarter more, at random, and the first
        # after a checkpoint an event forced (message_start, a block's stop: the instants that
        # replies share) up to a whole interval more.
        spread = 1.0 if urgent else _JITTER
        self._disarm()
        self.dirty = False
        self.next_due = self.loop.time() + self.writer.checkpoint_every * (1 + spread * _jitter())
        self.writer._queue_checkpoint(self)

    def _arm(self) -> None:
        """Queue an interval checkpoint at ``next_due`` (the next turn when that has passed)."""
        if self._timer is None:
            self._timer = self.loop.call_at(self.next_due, self._due)

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _due(self) -> None:
        self._timer = None
        if self.dirty and not self.finished and not self.queued:
            self.checkpoint(urgent=False)

    def taken(self) -> None:
        """The flusher builds this reply's checkpoint now: it holds everything so far."""
        self.queued = False
        self.dirty = False
        self._disarm()

    def not_written(self, error: BaseException) -> None:
        """This reply's checkpoint failed after its retries: the next write stores the whole
        snapshot (the next checkpoint, or the final row, whose failure is raised)."""
        _log.warning(
            "checkpoint of message %r not written (%s); the next write retries",
            self.message_id,
            type(error).__name__,
        )
        self.dirty = True
        if not self.finished and not self.queued:
            self._arm()

    def displaced(self) -> None:
        """Another save of the same message id replaced this one's row in the queue."""
        self.queued = False
        if not self.finished:
            self.dirty = True
            self._arm()

    def request_id(self, error: BaseException | None) -> str | None:
        if self._request_id is None and isinstance(error, AnthropicRxError):
            return error.request_id
        return self._request_id

    def outcome(self) -> tuple[Status, Message | None, Message | BaseException | None]:
        """The final status, the message the row stores, and what ``save`` returns or
        raises."""
        message = self.builder.message()
        error = self.error
        if error is not None:
            status: Status = "incomplete" if isinstance(error, IncompleteStreamError) else "failed"
            return status, message, error
        if self.builder.message_stopped and message is not None:
            return "finished", message, message
        cancelled = (
            cancelled_snapshot(message, estimate=not self.usage_reported)
            if message is not None
            else None
        )
        return "cancelled", cancelled, cancelled

    def stop(self) -> None:
        """Dispose the events (closing the response)."""
        self._end()
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.dispose()
