"""``sinks.DatabaseWriter``: one row per reply, checkpoints, final statuses, lost connections.

Parametrised on the database: SQLite (a file of the test's own) and the shared PostgreSQL (a
table of the test's own, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import operators as rx_ops
from reactivex.subject import Subject
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx import testing
from anthropic_rx.sinks import _database
from anthropic_rx.sinks._database import (
    _BATCH,
    _GATHER,
    DatabaseWriteError,
    DatabaseWriter,
    StoredMessage,
    message_table,
)
from tests.sinks._postgres import postgres_url, unique_application_name, unique_table

WAIT = 10.0  # seconds any single wait in this file may take before the test fails

WriterFactory = Callable[..., DatabaseWriter]


class Database:
    """Writers over one database, each on a table of its own; all closed (and, on
    PostgreSQL, their tables dropped) at the end."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.url = postgres_url() if kind == "postgres" else f"sqlite+aiosqlite:///{tmp_path}/db"
        self.tables: list[str] = []
        self.writers: list[DatabaseWriter] = []

    def writer(self, *, table: str | Table | None = None, **options: Any) -> DatabaseWriter:
        engine_or_url: str | AsyncEngine = options.pop("engine", None) or self.url
        if table is None:
            table = unique_table()
        self.tables.append(table if isinstance(table, str) else table.name)
        writer = DatabaseWriter(engine_or_url, table=table, **options)
        self.writers.append(writer)
        return writer

    def engine(self, **options: Any) -> AsyncEngine:
        return create_async_engine(self.url, **options)

    async def close(self) -> None:
        for writer in self.writers:
            await writer.aclose()
        if self.kind == "postgres" and self.tables:
            engine = self.engine()
            async with engine.begin() as conn:
                for name in self.tables:  # this test's own tables only
                    await conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(str(request.param), tmp_path)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database("sqlite", tmp_path)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def postgres_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database("postgres", tmp_path)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def fake() -> testing.FakeAnthropic:
    return testing.FakeAnthropic()


def stream(fake: testing.FakeAnthropic) -> reactivex.Observable[arx.MessageStreamEvent]:
    client = fake.client(max_retries=0)
    return client.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )


def words(count: int) -> testing.Reply:
    return testing.text_reply(*(f"w{n} " for n in range(count)))


def rich_reply() -> testing.Reply:
    return (
        testing.Reply(input_tokens=12)
        .thinking("Let me ", "think", signature="sig")
        .text("Hello", ", world")
        .tool_use("get_weather", {"city": "Paris", "days": 3}, fragment_size=5)
        .stop("tool_use", output_tokens=42)
    )


class Writes:
    """Counts the statements that write ``table`` on ``engine``."""

    def __init__(self, engine: AsyncEngine, table: str) -> None:
        self.count = 0
        self._table = table
        self._engine = engine
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        head = statement.lstrip().upper()
        if (head.startswith(("INSERT", "UPDATE"))) and self._table in statement:
            self.count += 1

    def __enter__(self) -> Writes:
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._seen)


async def until(check: Callable[[], Any], within: float = WAIT) -> None:
    # Polls: what is awaited is a row in a database, which signals nothing.
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# --- the row of a reply ----------------------------------------------------------------------


async def test_a_finished_reply_is_one_row_with_its_text_content_and_usage(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer()
    await writer.create_all()
    await writer.create_all()  # idempotent
    reply = rich_reply()
    fake.add_stream(reply)
    async with asyncio.timeout(WAIT):
        message = await writer.save(stream(fake), message_id="m1", conversation_id="c1")
    assert message is not None and message == reply.message()
    row = await writer.get("m1")
    assert row is not None
    assert (row.id, row.conversation_id, row.role, row.model) == (
        "m1",
        "c1",
        "assistant",
        reply.message().model,
    )
    assert row.status == "finished" and row.stop_reason == "tool_use"
    assert row.text == "Hello, world"
    assert row.content == message.model_dump(mode="json", exclude_none=True)["content"]
    assert row.content[2]["input"] == {"city": "Paris", "days": 3}
    assert row.content[0]["thinking"] == "Let me think"
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (12, 42, False)
    assert row.usage == {"input_tokens": 12, "output_tokens": 42}
    assert row.error_type is None and row.error_message is None
    assert row.request_id == fake.requests[0].request_id and row.request_id
    assert row.created_at.tzinfo is not None
    assert row.created_at <= row.updated_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert await writer.get("nope") is None
    with pytest.raises(FrozenInstanceError):
        row.status = "failed"  # type: ignore[misc]
    await fake.wait_closed()


async def test_the_text_is_saved_at_checkpoints_while_it_streams(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer(checkpoint_every=0.05)
    await writer.create_all()
    fake.add_stream(words(40), tokens_per_second=100)
    job = asyncio.create_task(writer.save(stream(fake), message_id="m1"))
    seen: list[StoredMessage] = []

    async def streaming_with_text() -> bool:
        row = await writer.get("m1")
        if row is not None and row.status == "streaming" and row.text:
            seen.append(row)
        return len(seen) >= 2

    await until(streaming_with_text)
    final = await asyncio.wait_for(job, WAIT)
    assert final is not None
    final_text = "".join(f"w{n} " for n in range(40))
    assert all(final_text.startswith(row.text) and row.text != final_text for row in seen)
    assert len(seen[1].text) >= len(seen[0].text)
    assert seen[0].usage_estimated  # no message_delta yet
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.text == final_text


async def test_writes_follow_checkpoints_never_deltas(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer(checkpoint_every=0.05)
    await writer.create_all()
    deltas = 60
    fake.add_stream(words(deltas), tokens_per_second=200)  # about 0.3 s
    with Writes(writer.engine, writer.table.name) as writes:
        started = time.monotonic()
        async with asyncio.timeout(WAIT):
            await writer.save(stream(fake), message_id="m1")
        elapsed = time.monotonic() - started
    # message_start, one per interval at most, one per block stop, the final status
    bound = 1 + int(elapsed / 0.05) + 1 + 1 + 1
    assert 3 <= writes.count <= bound
    assert writes.count < deltas / 3


@pytest.mark.parametrize("drawn", [0.0, 1.0])
async def test_interval_checkpoints_come_later_at_random(
    database: Database, fake: testing.FakeAnthropic, monkeypatch: pytest.MonkeyPatch, drawn: float
) -> None:
    monkeypatch.setattr(_database, "_jitter", lambda: drawn)
    every = 0.08
    writer = database.writer(checkpoint_every=every)
    await writer.create_all()
    fake.add_stream(words(150), tokens_per_second=200)  # 0.75 s of deltas, one text block
    seen: list[float] = []
    with Statements(writer.engine, writer.table.name) as statements:
        statements.on_statement = lambda: seen.append(time.monotonic())
        async with asyncio.timeout(WAIT):
            await writer.save(stream(fake), message_id="m1")
    # Between message_start's row and the block's stop, the rows are interval checkpoints:
    # each at least checkpoint_every times (1 + a quarter of what was drawn) after the last,
    # the first (after message_start's, a write an event forced) 1 + all of what was drawn.
    intervals = [later - earlier for earlier, later in itertools.pairwise(seen[:-2])]
    assert len(intervals) >= 3
    least = every * (1 + 0.25 * drawn)
    assert min(intervals) >= least * 0.95, (least, intervals)
    assert intervals[0] >= every * (1 + drawn) * 0.95, intervals
    if drawn == 0.0:
        assert min(intervals) < every * 1.25 * 0.95 + 0.05  # not always the longest


async def test_an_unpaced_reply_is_a_handful_of_writes(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer(checkpoint_every=0.05)
    await writer.create_all()
    fake.add_stream(words(2000))
    with Writes(writer.engine, writer.table.name) as writes:
        async with asyncio.timeout(WAIT):
            await writer.save(stream(fake), message_id="m1")
    assert writes.count <= 6
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.text.endswith("w1999 ")


async def test_a_database_that_waits_does_not_slow_the_stream(
    sqlite_db: Database, fake: testing.FakeAnthropic, tmp_path: Path
) -> None:
    writer = sqlite_db.writer(checkpoint_every=0.05)
    await writer.create_all()
    fake.add_stream(words(30), tokens_per_second=200)  # about 0.15 s
    blocker = sqlite3.connect(f"{tmp_path}/db", isolation_level=None, check_same_thread=False)
    ended: list[float] = []
    events = stream(fake).pipe(
        rx_ops.do_action(on_completed=lambda: ended.append(time.monotonic()))
    )
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process's write holds the database
        started = time.monotonic()
        job = asyncio.create_task(writer.save(events, message_id="m1"))
        await asyncio.sleep(1.0)
        assert ended and ended[0] - started < 0.8  # read to its end while writes waited
        assert not job.done()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await asyncio.wait_for(job, WAIT) is not None
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.text.endswith("w29 ")


async def test_concurrent_replies_on_one_sqlite_file_are_all_saved(
    sqlite_db: Database, fake: testing.FakeAnthropic
) -> None:
    writers = [sqlite_db.writer(checkpoint_every=0.02) for _ in range(2)]
    for writer in writers:
        await writer.create_all()
    count = 12
    for _ in range(count):
        fake.add_stream(words(20), tokens_per_second=400)
    async with asyncio.timeout(WAIT * 2):
        await asyncio.gather(
            *(
                writers[n % 2].save(stream(fake), message_id=f"m{n}", conversation_id="c")
                for n in range(count)
            )
        )
    for n in range(count):
        row = await writers[n % 2].get(f"m{n}")
        assert row is not None and row.status == "finished" and row.text.endswith("w19 ")


@pytest.mark.services
async def test_concurrent_replies_on_postgresql_are_all_saved(
    postgres_db: Database, fake: testing.FakeAnthropic
) -> None:
    writer = postgres_db.writer(checkpoint_every=0.02)
    await writer.create_all()
    count = 40  # more than the engine's pool holds: saves wait for a connection, none fails
    for _ in range(count):
        fake.add_stream(words(20), tokens_per_second=400)
    async with asyncio.timeout(WAIT * 2):
        await asyncio.gather(*(writer.save(stream(fake), message_id=f"m{n}") for n in range(count)))
    for n in range(count):
        row = await writer.get(f"m{n}")
        assert row is not None and row.status == "finished" and row.text.endswith("w19 ")


# --- the final statuses ------------------------------------------------------------------------


async def test_a_cancelled_reply_ends_cancelled_with_estimated_usage(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer(checkpoint_every=0.05)
    await writer.create_all()
    fake.add_stream(words(200), tokens_per_second=100)
    token = arx.CancelToken()
    job = asyncio.create_task(
        writer.save(stream(fake).pipe(ops.take_until_cancel(token)), message_id="m1")
    )

    async def some_text() -> bool:
        row = await writer.get("m1")
        return row is not None and len(row.text) > 10

    await until(some_text)
    token.cancel()
    message = await asyncio.wait_for(job, WAIT)
    assert message is not None and message.cancelled
    assert message.usage is not None and message.usage.estimated
    row = await writer.get("m1")
    assert row is not None and row.status == "cancelled"
    assert row.text == "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))
    assert row.usage_estimated and row.output_tokens == message.usage.output_tokens > 1
    assert row.error_type is None
    await fake.wait_closed()


async def test_a_reply_cancelled_before_message_start_returns_none_and_ends_its_row(
    database: Database,
) -> None:
    writer = database.writer()
    await writer.create_all()
    token = arx.CancelToken()
    token.cancel()
    events = arx.from_sse_bytes(words(3).to_sse()).pipe(ops.take_until_cancel(token))
    assert await writer.save(events, message_id="m1", conversation_id="c") is None
    row = await writer.get("m1")
    assert row is not None and row.status == "cancelled"
    assert (row.model, row.text, row.content, row.usage) == (None, "", [], None)


async def test_an_error_event_ends_the_row_failed_and_is_raised(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer()
    await writer.create_all()
    fake.add_stream(testing.Reply().text("Hello", " there").error("overloaded_error", "Overloaded"))
    with pytest.raises(arx.OverloadedError) as caught:
        await asyncio.wait_for(writer.save(stream(fake), message_id="m1"), WAIT)
    assert caught.value.partial_message is not None
    row = await writer.get("m1")
    assert row is not None and row.status == "failed"
    assert (row.error_type, row.error_message) == ("overloaded_error", "Overloaded")
    assert row.text == "Hello there" and row.usage_estimated


async def test_the_api_key_never_reaches_the_row(database: Database) -> None:
    writer = database.writer()
    await writer.create_all()
    leaky = testing.Reply().text("x").error("api_error", "bad key sk-ant-api03-SECRET_value-1")
    with pytest.raises(arx.InternalServerError):
        await writer.save(arx.from_sse_bytes(leaky.to_sse()), message_id="m1")
    row = await writer.get("m1")
    assert row is not None and row.error_message is not None
    assert "SECRET" not in row.error_message and "[redacted]" in row.error_message


async def test_a_truncated_body_ends_the_row_incomplete(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer()
    await writer.create_all()
    reply = words(20)
    fake.add_stream(reply, truncate_after=len(reply.to_sse()) // 2)
    with pytest.raises(arx.IncompleteStreamError):
        await asyncio.wait_for(writer.save(stream(fake), message_id="m1"), WAIT)
    row = await writer.get("m1")
    assert row is not None and row.status == "incomplete"
    assert row.error_type == "IncompleteStreamError" and row.text.startswith("w0 ")


async def test_a_lost_api_connection_ends_the_row_failed(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer()
    await writer.create_all()
    reply = words(20)
    fake.add_stream(reply, disconnect_after=len(reply.to_sse()) // 2)
    with pytest.raises(arx.APIConnectionError):
        await asyncio.wait_for(writer.save(stream(fake), message_id="m1"), WAIT)
    row = await writer.get("m1")
    assert row is not None and row.status == "failed"
    assert row.error_type == "APIConnectionError" and row.text.startswith("w0 ")
    await fake.wait_closed()


async def test_a_cancelled_save_ends_the_row_incomplete_and_closes_the_response(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer(checkpoint_every=0.05)
    await writer.create_all()
    fake.add_stream(words(200), tokens_per_second=100)
    job = asyncio.create_task(writer.save(stream(fake), message_id="m1"))

    async def streaming() -> bool:
        row = await writer.get("m1")
        return row is not None and bool(row.text)

    await until(streaming)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    row = await writer.get("m1")
    assert row is not None and row.status == "incomplete"
    await fake.wait_closed()


# --- tables, recovery, arguments ---------------------------------------------------------------


async def test_a_users_own_table_with_more_columns_is_written(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    own = message_table(unique_table(), MetaData())
    own.append_column(Column("tenant", String(32), nullable=True))
    own.append_column(Column("rank", Integer, nullable=True))
    writer = database.writer(table=own)
    await writer.create_all()
    fake.add_stream(words(3))
    await asyncio.wait_for(writer.save(stream(fake), message_id="m1"), WAIT)
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.text == "w0 w1 w2 "
    async with writer.engine.connect() as conn:
        tenant = (await conn.execute(text(f'SELECT tenant FROM "{own.name}"'))).scalar_one()
    assert tenant is None


async def test_a_table_without_the_columns_is_refused() -> None:
    partial = Table("t", MetaData(), Column("id", String, primary_key=True))
    with pytest.raises(ValueError, match="lacks the columns"):
        DatabaseWriter("sqlite+aiosqlite:///:memory:", table=partial)


async def test_recover_ends_rows_left_streaming_and_counts_them(database: Database) -> None:
    writer = database.writer()
    await writer.create_all()
    old = datetime.now(UTC) - timedelta(seconds=120)
    fresh = datetime.now(UTC)

    def row(message_id: str, status: str, updated: datetime) -> dict[str, Any]:
        return {
            "id": message_id,
            "status": status,
            "text": "partial",
            "content": [],
            "usage_estimated": True,
            "created_at": updated,
            "updated_at": updated,
        }

    async with writer.engine.begin() as conn:
        await conn.execute(
            insert(writer.table),
            [
                row("crashed", "streaming", old),
                row("live", "streaming", fresh),
                row("done", "finished", old),
            ],
        )
    assert await writer.recover(older_than=60) == 1
    crashed, live, done = [await writer.get(m) for m in ("crashed", "live", "done")]
    assert crashed is not None and crashed.status == "incomplete" and crashed.text == "partial"
    assert crashed.error_type == "IncompleteStreamError"
    assert live is not None and live.status == "streaming"
    assert done is not None and done.status == "finished"
    assert await writer.recover(older_than=60) == 0
    await asyncio.sleep(0.01)
    assert await writer.recover(older_than=0) == 1
    with pytest.raises(ValueError, match="older_than"):
        await writer.recover(older_than=-1)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"checkpoint_every": 0}, ValueError),
        ({"checkpoint_every": -1}, ValueError),
        ({"checkpoint_every": float("nan")}, ValueError),
        ({"checkpoint_every": float("inf")}, ValueError),
        ({"retries": -1}, ValueError),
        ({"table": ""}, ValueError),
        ({"table": 3}, TypeError),
    ],
)
def test_options_are_checked(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        DatabaseWriter("sqlite+aiosqlite:///:memory:", **options)


def test_the_url_is_checked() -> None:
    with pytest.raises(ValueError, match="URL is empty"):
        DatabaseWriter("")
    with pytest.raises(TypeError):
        DatabaseWriter(3)  # type: ignore[arg-type]


async def test_an_empty_message_id_subscribes_nothing(fake: testing.FakeAnthropic) -> None:
    writer = DatabaseWriter("sqlite+aiosqlite:///:memory:")
    try:
        with pytest.raises(ValueError, match="message_id"):
            await writer.save(stream(fake), message_id="")
        assert fake.requests == []
    finally:
        await writer.aclose()


async def test_aclose_disposes_its_own_engine_only(sqlite_db: Database) -> None:
    own = sqlite_db.writer()
    pool = own.engine.pool
    await own.aclose()
    assert own.engine.pool is not pool  # disposed: a new, empty pool
    engine = sqlite_db.engine()
    try:
        given = sqlite_db.writer(engine=engine)
        await given.aclose()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        assert given.engine is engine
    finally:
        await engine.dispose()


def test_the_repr_hides_the_password() -> None:
    writer = DatabaseWriter("postgresql+asyncpg://user:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in repr(writer) and "arx_messages" in repr(writer)


# --- a database that goes away -----------------------------------------------------------------


async def terminate(application_name: str) -> int:
    """End the server sessions of ``application_name`` (one test's engine, no one else's)."""
    admin = create_async_engine(postgres_url())
    try:
        async with admin.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": application_name},
            )
            return len(result.all())
    finally:
        await admin.dispose()


@pytest.mark.services
@pytest.mark.parametrize("pre_ping", [True, False])
async def test_a_session_killed_mid_save_is_retried_and_nothing_is_lost(
    postgres_db: Database,
    fake: testing.FakeAnthropic,
    pre_ping: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique_application_name()
    engine = postgres_db.engine(
        pool_pre_ping=pre_ping, connect_args={"server_settings": {"application_name": name}}
    )
    try:
        writer = postgres_db.writer(engine=engine, checkpoint_every=0.05)
        await writer.create_all()
        fake.add_stream(words(60), tokens_per_second=150)
        job = asyncio.create_task(writer.save(stream(fake), message_id="m1"))

        async def streaming() -> bool:
            row = await writer.get("m1")
            return row is not None and bool(row.text)

        caplog.set_level(logging.INFO, logger="anthropic_rx.sinks")
        await until(streaming)
        assert await terminate(name) >= 1
        message = await asyncio.wait_for(job, WAIT)
        assert message is not None
        row = await writer.get("m1")
        assert row is not None and row.status == "finished" and row.text.endswith("w59 ")
        if not pre_ping:  # the dead pooled connection failed a write: the retry saved it
            assert any("retrying" in r.getMessage() for r in caplog.records)
    finally:
        await engine.dispose()


async def settle_failed_sqlite_connects() -> None:
    # aiosqlite stops the thread of a connection that failed to open without waiting for it:
    # the thread reports back to the event loop a moment later, which must still be open.
    await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        postgres_url()
        yield "postgresql+asyncpg://postgres@127.0.0.1:1/test"  # nothing listens there
    else:
        yield f"sqlite+aiosqlite:///{tmp_path}/gone/db"  # its directory does not exist


async def test_a_database_gone_for_good_is_a_typed_error_after_the_reply(
    unreachable: str, fake: testing.FakeAnthropic
) -> None:
    writer = DatabaseWriter(unreachable, checkpoint_every=0.05, retry_backoff=0.01)
    try:
        fake.add_stream(words(20), tokens_per_second=200)
        with pytest.raises(DatabaseWriteError) as caught:
            await asyncio.wait_for(writer.save(stream(fake), message_id="m1"), WAIT)
        error = caught.value
        assert error.message_id == "m1" and error.stream_error is None
        assert error.__cause__ is not None
        assert error.partial_message is not None  # the whole reply was read
        assert error.partial_message.stop_reason == "end_turn"
        assert "finished" in str(error)
        await fake.wait_closed()
    finally:
        await writer.aclose()
        await settle_failed_sqlite_connects()


async def test_a_failing_database_keeps_the_streams_own_error(fake: testing.FakeAnthropic) -> None:
    writer = DatabaseWriter("sqlite+aiosqlite:////nonexistent/dir/db", retries=0)
    try:
        fake.add_stream(testing.Reply().text("Hi").error("overloaded_error", "Overloaded"))
        with pytest.raises(DatabaseWriteError) as caught:
            await asyncio.wait_for(writer.save(stream(fake), message_id="m1"), WAIT)
        assert isinstance(caught.value.stream_error, arx.OverloadedError)
    finally:
        await writer.aclose()
        await settle_failed_sqlite_connects()


# --- many replies through one writer: batches, one compiled statement ------------------------


class Statements:
    """Every statement writing ``table`` on ``engine``: its compiled form and its rows."""

    def __init__(self, engine: AsyncEngine, table: str) -> None:
        self.compiled: list[Any] = []
        self.rows: list[int] = []
        self.on_statement: Callable[[], object] = lambda: None
        self._table = table
        self._engine = engine
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(
        self,
        _conn: Any,
        _cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT") and self._table in statement:
            self.compiled.append(context.compiled)
            self.rows.append(len(parameters) if executemany else 1)
            self.on_statement()

    def __enter__(self) -> Statements:
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._seen)


def reply_of(n: int) -> reactivex.Observable[arx.MessageStreamEvent]:
    return arx.from_sse_bytes(testing.text_reply(f"reply {n} ", "says ", f"{n * 7}").to_sse())


async def test_replies_ending_together_are_batched_each_into_its_own_row(
    database: Database,
) -> None:
    writer = database.writer()
    await writer.create_all()
    count = 120  # more than one batch holds
    with Statements(writer.engine, writer.table.name) as statements:
        async with asyncio.timeout(WAIT):
            messages = await asyncio.gather(
                *(
                    writer.save(reply_of(n), message_id=f"m{n}", conversation_id=f"c{n}")
                    for n in range(count)
                )
            )
    assert all(message is not None for message in messages)
    # Every reply ended in the same turn: far fewer statements than rows, each row in one, and
    # no statement above the bound of a batch.
    assert 0 < len(statements.compiled) < count
    assert sum(statements.rows) == count and max(statements.rows) <= _BATCH
    for n in range(count):
        row = await writer.get(f"m{n}")
        assert row is not None and row.status == "finished"
        assert (row.text, row.conversation_id) == (f"reply {n} says {n * 7}", f"c{n}")
        assert row.content == [{"type": "text", "text": f"reply {n} says {n * 7}"}]


async def test_checkpoints_of_many_paced_replies_share_statements(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer(checkpoint_every=0.01)
    await writer.create_all()
    count = 20
    for _ in range(count):
        fake.add_stream(words(40), tokens_per_second=200)
    with Statements(writer.engine, writer.table.name) as statements:
        began = time.monotonic()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(
                *(writer.save(stream(fake), message_id=f"m{n}") for n in range(count))
            )
        took = time.monotonic() - began
    # Each reply checkpoints about every 10 ms for its 0.2 s: alone, a statement each. Gathered,
    # statements go _GATHER apart unless a batch is full, so they are bounded by the time taken.
    rows = sum(statements.rows)
    assert rows >= count * 3
    assert len(statements.rows) <= took / _GATHER + rows / _BATCH + 2
    assert len(statements.rows) < rows / 2
    for n in range(count):
        row = await writer.get(f"m{n}")
        assert row is not None and row.status == "finished" and row.text.endswith("w39 ")


async def test_a_writer_s_first_statement_goes_at_once_and_the_next_gather_apart(
    database: Database, fake: testing.FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    gather = 0.4  # long enough to tell apart from a loaded machine's own delays
    monkeypatch.setattr(_database, "_GATHER", gather)
    writer = database.writer()
    await writer.create_all()
    fake.add_stream(words(3), tokens_per_second=30)
    seen: list[float] = []
    with Statements(writer.engine, writer.table.name) as statements:
        statements.on_statement = lambda: seen.append(time.monotonic())
        began = time.monotonic()
        async with asyncio.timeout(WAIT):
            await writer.save(stream(fake), message_id="m0")
    # message_start's row at once; the block's stop and the end come within the gather: the
    # later snapshot replaces the queued one, written in the next statement.
    assert statements.rows == [1, 1]
    assert seen[0] - began < gather / 2
    assert all(later - earlier >= gather * 0.9 for earlier, later in itertools.pairwise(seen))
    row = await writer.get("m0")
    assert row is not None and row.status == "finished"


async def test_the_upsert_is_compiled_once_for_every_write(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    writer = database.writer(checkpoint_every=0.02)
    await writer.create_all()
    for _ in range(3):
        fake.add_stream(words(20), tokens_per_second=200)
    with Statements(writer.engine, writer.table.name) as statements:
        async with asyncio.timeout(WAIT):
            await writer.save(stream(fake), message_id="m0")
            await asyncio.gather(*(writer.save(stream(fake), message_id=f"m{n}") for n in (1, 2)))
    assert len(statements.compiled) >= 6  # checkpoints and finals, single rows and batches
    # One compiled form for a single row and one for an executemany of several: none per write.
    assert len({id(compiled) for compiled in statements.compiled}) <= 2


@pytest.mark.services
async def test_a_row_the_database_refuses_fails_alone_not_its_batch(
    postgres_db: Database,
) -> None:
    writer = postgres_db.writer(retry_backoff=0.01)
    await writer.create_all()
    too_long = "c" * 300  # the column holds 255: refused, not retryable
    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(
            *(
                writer.save(
                    reply_of(n), message_id=f"m{n}", conversation_id=too_long if n == 3 else None
                )
                for n in range(8)
            ),
            return_exceptions=True,
        )
    refused = results[3]
    assert isinstance(refused, DatabaseWriteError) and refused.message_id == "m3"
    for n in range(8):
        row = await writer.get(f"m{n}")
        if n == 3:
            assert row is None
        else:
            assert (
                row is not None and row.status == "finished" and row.text.startswith(f"reply {n} ")
            )


async def test_a_database_gone_fails_every_row_of_a_batch_each_with_its_id(
    unreachable: str,
) -> None:
    writer = DatabaseWriter(unreachable, retry_backoff=0.01)
    try:
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(
                *(writer.save(reply_of(n), message_id=f"m{n}") for n in range(6)),
                return_exceptions=True,
            )
        assert all(isinstance(result, DatabaseWriteError) for result in results)
        assert [cast_error(result).message_id for result in results] == [f"m{n}" for n in range(6)]
        assert all(cast_error(result).partial_message is not None for result in results)
    finally:
        await writer.aclose()
        await settle_failed_sqlite_connects()


def cast_error(result: object) -> DatabaseWriteError:
    assert isinstance(result, DatabaseWriteError)
    return result


@pytest.mark.services
async def test_sessions_killed_under_many_replies_lose_no_row(
    postgres_db: Database, fake: testing.FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_application_name()
    engine = postgres_db.engine(
        pool_pre_ping=False, connect_args={"server_settings": {"application_name": name}}
    )
    try:
        writer = postgres_db.writer(engine=engine, checkpoint_every=0.02)
        await writer.create_all()
        count = 20
        reply = words(60)
        # Each reply pauses halfway, and the sessions are killed during the pause: whatever
        # the load, every reply still has rows to write after the kill.
        middle = reply.to_sse().index(b"w30 ")
        for _ in range(count):
            fake.add_stream(reply, tokens_per_second=300, stall_after=middle, stall_for=3.0)
        jobs = [
            asyncio.create_task(writer.save(stream(fake), message_id=f"m{n}")) for n in range(count)
        ]

        async def all_streaming() -> bool:
            rows = [await writer.get(f"m{n}") for n in range(count)]
            return all(row is not None and row.text for row in rows)

        caplog.set_level(logging.INFO, logger="anthropic_rx.sinks")
        await until(all_streaming)
        assert await terminate(name) >= 1
        async with asyncio.timeout(WAIT):
            messages = await asyncio.gather(*jobs)
        assert all(message is not None for message in messages)
        for n in range(count):
            row = await writer.get(f"m{n}")
            assert row is not None and row.status == "finished" and row.text.endswith("w59 ")
        assert any("retrying" in r.getMessage() for r in caplog.records)
    finally:
        await engine.dispose()


# --- checkpoints as callbacks: one timer per reply, rows built as they are taken -------------


def events_of(reply: testing.Reply) -> list[arx.MessageStreamEvent]:
    """The reply's events, parsed at once (a synchronous source emits before subscribe
    returns)."""
    events: list[arx.MessageStreamEvent] = []
    arx.from_sse_bytes(reply.to_sse()).subscribe(events.append)
    return events


def sqlalchemy_s(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is one SQLAlchemy made (it closes a connection in a task of its own)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "sqlalchemy" in code.co_filename


async def test_saves_run_no_task_but_the_flusher_and_arm_one_timer_at_a_time(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = sqlite_db.writer(checkpoint_every=0.02)
    await writer.create_all()
    loop = asyncio.get_running_loop()
    count = 20
    events = events_of(words(30))
    subjects = [Subject[arx.MessageStreamEvent]() for _ in range(count)]

    # Every task made on the loop while the replies stream, and every timer a save arms.
    created: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **options)
        created.append(task)
        return task

    armed: dict[int, set[asyncio.TimerHandle]] = {}
    timers = 0
    most_armed = 0
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **options: Any) -> Any:
        nonlocal timers, most_armed
        owner = getattr(callback, "__self__", None)
        if not isinstance(owner, _database._Saving):
            return call_at(when, callback, *args, **options)
        live = armed.setdefault(id(owner), set())

        def fire() -> None:
            live.discard(handle)
            callback(*args)

        handle = call_at(when, fire, **options)
        live.add(handle)
        timers += 1
        most_armed = max(most_armed, sum(not timer.cancelled() for timer in live))
        return handle

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    before = asyncio.all_tasks()
    previous_factory = loop.get_task_factory()
    loop.set_task_factory(factory)
    try:
        with Statements(writer.engine, writer.table.name) as statements:
            saves = [
                asyncio.create_task(writer.save(subject, message_id=f"m{n}"))
                for n, subject in enumerate(subjects)
            ]
            await asyncio.sleep(0)  # each save subscribes
            flushers_alive = 0
            for event in events:
                for subject in subjects:
                    subject.on_next(event)
                await asyncio.sleep(0.004)  # the pace of the deltas, not a wait for anything
                others = asyncio.all_tasks() - before - set(saves)
                alive = [task for task in others if not sqlalchemy_s(task)]
                assert all(task.get_name().endswith(" flusher") for task in alive), alive
                flushers_alive = max(flushers_alive, len(alive))
            for subject in subjects:
                subject.on_completed()
            async with asyncio.timeout(WAIT):
                messages = await asyncio.gather(*saves)
    finally:
        loop.set_task_factory(previous_factory)
    assert all(message is not None for message in messages)
    # Besides the saves: the flusher, and SQLAlchemy's own (it closes a connection in a task),
    # one per statement at most; nothing per save or per checkpoint.
    made = [task for task in created if task not in saves]
    flushers = [task for task in made if task.get_name().endswith(" flusher")]
    engines = [task for task in made if sqlalchemy_s(task)]
    assert flushers and len(flushers) + len(engines) == len(made), made
    assert len(engines) <= len(statements.rows)
    assert flushers_alive <= 1
    # Interval checkpoints were armed (about 0.13 s of deltas, one every 0.02 s or so), never
    # two timers of one save at once.
    assert timers >= count
    assert most_armed == 1
    for n in range(count):
        row = await writer.get(f"m{n}")
        assert row is not None and row.status == "finished" and row.text.endswith("w29 ")


async def test_a_queued_checkpoint_stores_what_arrived_until_the_flusher_took_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    gather = 0.5  # the flusher's wait before its second statement: the checkpoint waits
    monkeypatch.setattr(_database, "_GATHER", gather)
    monkeypatch.setattr(_database, "_jitter", lambda: 0.0)
    writer = database.writer(checkpoint_every=0.05)
    await writer.create_all()
    start, block_start, early, late, *rest = events_of(testing.text_reply("early ", "late "))
    checkpoint_queued = asyncio.Event()
    queue_checkpoint = writer._queue_checkpoint

    def spied(saving: Any) -> None:
        queue_checkpoint(saving)
        checkpoint_queued.set()

    monkeypatch.setattr(writer, "_queue_checkpoint", spied)
    subject = Subject[arx.MessageStreamEvent]()
    with Statements(writer.engine, writer.table.name) as statements:
        job = asyncio.create_task(writer.save(subject, message_id="m1"))
        await asyncio.sleep(0)  # the save subscribes
        subject.on_next(start)  # message_start: a checkpoint at once, a quiet writer's first row

        async def started() -> bool:
            return await writer.get("m1") is not None

        await until(started)
        checkpoint_queued.clear()
        subject.on_next(block_start)
        subject.on_next(early)  # the first unsaved change: the interval checkpoint's timer
        async with asyncio.timeout(WAIT):
            await checkpoint_queued.wait()
        assert statements.rows == [1]  # queued, not written: the flusher gathers
        subject.on_next(late)  # after the checkpoint was queued

        async def checkpointed() -> bool:
            row = await writer.get("m1")
            return row is not None and bool(row.text)

        await until(checkpointed)
        row = await writer.get("m1")
        assert row is not None and (row.status, row.text) == ("streaming", "early late ")
        assert statements.rows == [1, 1]
        for event in rest:
            subject.on_next(event)
        subject.on_completed()
        assert await asyncio.wait_for(job, WAIT) is not None
    row = await writer.get("m1")
    assert row is not None and (row.status, row.text) == ("finished", "early late ")
