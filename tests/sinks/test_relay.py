"""``sinks.relay``: one request feeds a broadcaster's channel and a database row.

Every test counts the requests the fake received: one reply is one request, whatever the sinks
do.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import reactivex

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx import sinks, testing
from anthropic_rx._snapshot import apply_event
from anthropic_rx.sinks._database import DatabaseWriteError, DatabaseWriter
from anthropic_rx.sinks._hub import Lease
from anthropic_rx.sinks._memory import MemoryBackend
from anthropic_rx.sinks._relay import relay
from tests.sinks.test_database_writer import Database, rich_reply, stream, until, words

WAIT = 10.0  # seconds any single wait in this file may take before the test fails
CHANNEL = "conversation.1"


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
def fake() -> testing.FakeAnthropic:
    return testing.FakeAnthropic()


async def ready(db: Database, **options: Any) -> DatabaseWriter:
    writer = db.writer(checkpoint_every=0.05, **options)
    await writer.create_all()
    return writer


async def collect(
    subscription: reactivex.Observable[sinks.Broadcast],
) -> tuple[list[sinks.Broadcast], BaseException | None]:
    """Every item of a subscription, and the error it ended with (``None``: completed)."""
    items: list[sinks.Broadcast] = []
    async with asyncio.timeout(WAIT):
        try:
            async for item in arx.to_async_iterator(subscription):
                items.append(item)
        except Exception as error:
            return items, error
    return items, None


async def follow(hub: sinks.Broadcaster, channel: str = CHANNEL) -> asyncio.Task[Any]:
    """A live subscriber of ``channel``, from when the channel exists."""

    async def subscribe() -> tuple[list[sinks.Broadcast], BaseException | None]:
        async with asyncio.timeout(WAIT):
            while True:
                items, error = await collect(hub.subscribe(channel))
                if not isinstance(error, sinks.ChannelNotFound):
                    return items, error
                await asyncio.sleep(0.005)

    return asyncio.create_task(subscribe())


def replayed(items: Sequence[sinks.Broadcast]) -> arx.Message | None:
    """The message a subscriber's items build."""
    message: arx.Message | None = None
    for item in items:
        if item.event is not None:
            message = apply_event(message, item.event)
    return message


# --- one request, two sinks ------------------------------------------------------------------


async def test_one_request_feeds_the_channel_and_the_row_the_same_reply(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(database)
    reply = rich_reply()
    fake.add_stream(reply, tokens_per_second=200)
    live = await follow(hub)
    async with asyncio.timeout(WAIT):
        message = await relay(
            stream(fake),
            hub=hub,
            channel=CHANNEL,
            writer=writer,
            message_id="m1",
            conversation_id="c1",
        )
    assert len(fake.requests) == 1
    assert message == reply.message()
    items, error = await live
    assert error is None and items[-1].end == "done"
    assert replayed(items) == message
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.conversation_id == "c1"
    assert row.content == message.model_dump(mode="json", exclude_none=True)["content"]
    assert (row.output_tokens, items[-1].usage) == (42, message.usage)
    await fake.wait_closed()


async def test_relay_runs_as_a_plain_task(sqlite_db: Database, fake: testing.FakeAnthropic) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    fake.add_stream(words(30), tokens_per_second=200)
    job = asyncio.create_task(
        relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1")
    )
    live = await follow(hub)

    async def row_streaming() -> bool:
        row = await writer.get("m1")
        return row is not None and row.status == "streaming"

    await until(row_streaming)
    assert not job.done()
    message = await asyncio.wait_for(job, WAIT)
    items, error = await live
    assert error is None and replayed(items) == message
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.text.endswith("w29 ")
    assert len(fake.requests) == 1


async def test_each_sink_alone_is_one_request_too(
    sqlite_db: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    fake.add_stream(words(3))
    fake.add_stream(words(4))
    only_hub = await asyncio.wait_for(relay(stream(fake), hub=hub, channel=CHANNEL), WAIT)
    only_row = await asyncio.wait_for(relay(stream(fake), writer=writer, message_id="m1"), WAIT)
    assert len(fake.requests) == 2
    assert only_hub is not None and only_row is not None
    items, _ = await collect(hub.subscribe(CHANNEL))
    assert replayed(items) == only_hub
    row = await writer.get("m1")
    assert row is not None and row.text == "w0 w1 w2 w3 "


# --- how a reply ends --------------------------------------------------------------------------


async def test_a_cancelled_reply_ends_the_row_and_the_channel_cancelled(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(database)
    fake.add_stream(words(300), tokens_per_second=200)
    token = arx.CancelToken()
    job = asyncio.create_task(
        relay(
            stream(fake).pipe(ops.take_until_cancel(token)),
            hub=hub,
            channel=CHANNEL,
            writer=writer,
            message_id="m1",
        )
    )
    live = await follow(hub)

    async def some_text() -> bool:
        row = await writer.get("m1")
        return row is not None and len(row.text) > 10

    await until(some_text)
    token.cancel()
    message = await asyncio.wait_for(job, WAIT)
    assert message is not None and message.cancelled and message.usage is not None
    items, error = await live
    assert error is None and items[-1].end == "cancelled"
    assert items[-1].usage is not None and items[-1].usage.estimated
    row = await writer.get("m1")
    assert row is not None and row.status == "cancelled" and row.usage_estimated
    assert row.output_tokens == items[-1].usage.output_tokens == message.usage.output_tokens
    assert row.text == "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))
    assert len(fake.requests) == 1
    await fake.wait_closed()


async def test_an_error_event_ends_both_with_the_same_type(
    database: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(database)
    fake.add_stream(testing.Reply().text("Hello", " there").error("overloaded_error", "Overloaded"))
    live = await follow(hub)
    with pytest.raises(arx.OverloadedError) as caught:
        await asyncio.wait_for(
            relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"), WAIT
        )
    assert caught.value.partial_message is not None
    items, error = await live
    assert isinstance(error, arx.OverloadedError)
    terminal = items[-1]
    assert (terminal.end, terminal.error_type) == ("error", "overloaded_error")
    row = await writer.get("m1")
    assert row is not None and row.status == "failed"
    assert (row.error_type, row.error_message) == ("overloaded_error", "Overloaded")
    assert row.text == "Hello there"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("cut", "error_class", "status"),
    [
        ("disconnect_after", arx.APIConnectionError, "failed"),
        ("truncate_after", arx.IncompleteStreamError, "incomplete"),
    ],
)
async def test_a_cut_reply_ends_the_row_by_its_rule_and_subscribers_with_the_typed_error(
    sqlite_db: Database,
    fake: testing.FakeAnthropic,
    cut: str,
    error_class: type[Exception],
    status: str,
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    reply = words(20)
    half = len(reply.to_sse()) // 2
    if cut == "disconnect_after":
        fake.add_stream(reply, disconnect_after=half)
    else:
        fake.add_stream(reply, truncate_after=half)
    live = await follow(hub)
    with pytest.raises(error_class):
        await asyncio.wait_for(
            relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"), WAIT
        )
    items, error = await live
    assert type(error) is error_class
    assert items[-1].error_class == error_class.__name__
    row = await writer.get("m1")
    assert row is not None and row.status == status and row.error_type == error_class.__name__
    assert row.text and row.text == "".join(
        item.event.delta.text  # type: ignore[union-attr]
        for item in items
        if isinstance(item.event, arx.ContentBlockDeltaEvent)
    )
    await fake.wait_closed()


# --- one sink failing --------------------------------------------------------------------------


async def test_a_writer_whose_database_is_gone_does_not_stop_the_broadcast(
    tmp_path: Path, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = DatabaseWriter(
        f"sqlite+aiosqlite:///{tmp_path}/gone/db", checkpoint_every=0.05, retry_backoff=0.01
    )
    try:
        reply = words(30)
        fake.add_stream(reply, tokens_per_second=300)
        live = await follow(hub)
        with pytest.raises(DatabaseWriteError) as caught:
            await asyncio.wait_for(
                relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"),
                WAIT,
            )
        assert caught.value.message_id == "m1"
        items, error = await live
        assert error is None and items[-1].end == "done"
        assert replayed(items) == reply.message()
        assert len(fake.requests) == 1
    finally:
        await writer.aclose()
        await asyncio.sleep(0.05)  # aiosqlite's failed-connect threads report back


async def test_a_slow_database_does_not_hold_back_the_subscribers(
    sqlite_db: Database, fake: testing.FakeAnthropic, tmp_path: Path
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    reply = words(30)
    fake.add_stream(reply, tokens_per_second=300)  # about 0.1 s
    blocker = sqlite3.connect(f"{tmp_path}/db", isolation_level=None, check_same_thread=False)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process's write holds the database
        job = asyncio.create_task(
            relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1")
        )
        items, error = await asyncio.wait_for(await follow(hub), 1.0)
        assert error is None and items[-1].end == "done"  # while the row could not be written
        assert replayed(items) == reply.message()
        assert not job.done()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await asyncio.wait_for(job, WAIT) == reply.message()
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.text.endswith("w29 ")


class FailingBackend(MemoryBackend):
    """A memory backend that loses its store after the first append."""

    def __init__(self) -> None:
        super().__init__()
        self.appends = 0

    async def append(
        self, channel: str, lease: Lease, events: Sequence[arx.MessageStreamEvent]
    ) -> None:
        self.appends += 1
        if self.appends > 1:
            raise sinks.BroadcastError("the broadcast store went away")
        await super().append(channel, lease, events)


async def test_a_failing_broadcaster_does_not_stop_the_row(
    sqlite_db: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.Broadcaster(FailingBackend())
    writer = await ready(sqlite_db)
    fake.add_stream(words(30), tokens_per_second=300)
    with pytest.raises(sinks.BroadcastError, match="went away"):
        await asyncio.wait_for(
            relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"), WAIT
        )
    row = await writer.get("m1")
    assert row is not None and row.status == "finished" and row.text.endswith("w29 ")
    assert len(fake.requests) == 1
    await fake.wait_closed()


async def test_a_busy_channel_is_refused_before_any_request(
    sqlite_db: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    fake.add_stream(words(100), tokens_per_second=200)
    first = await hub.start(CHANNEL, stream(fake))
    with pytest.raises(sinks.ChannelBusyError):
        await relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m2")
    assert await writer.get("m2") is None  # nothing written either
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(fake.requests) == 1


async def test_a_cancelled_relay_ends_both_sinks_and_closes_the_response(
    sqlite_db: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    fake.add_stream(words(300), tokens_per_second=200)
    job = asyncio.create_task(
        relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1")
    )
    live = await follow(hub)

    async def some_text() -> bool:
        row = await writer.get("m1")
        return row is not None and bool(row.text)

    await until(some_text)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    items, error = await live
    assert isinstance(error, arx.IncompleteStreamError)
    assert items[-1].end == "error" and items[:-1]  # what came before the cancel was relayed
    row = await writer.get("m1")
    assert row is not None and row.status == "incomplete"
    await fake.wait_closed()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"hub": "h"},
        {"channel": CHANNEL},
        {"writer": "w"},
        {"message_id": "m1"},
        {"writer": "w", "message_id": ""},
        {"hub": "h", "channel": CHANNEL, "conversation_id": "c"},
    ],
)
async def test_sinks_and_their_arguments_go_together(
    options: dict[str, Any], fake: testing.FakeAnthropic
) -> None:
    resolved = dict(options)
    if resolved.get("hub") == "h":
        resolved["hub"] = sinks.MemoryBroadcaster()
    if resolved.get("writer") == "w":
        resolved["writer"] = DatabaseWriter("sqlite+aiosqlite:///:memory:")
    try:
        with pytest.raises(ValueError, match=r"together|non-empty|needs|stored by"):
            await relay(stream(fake), **resolved)
    finally:
        if isinstance(resolved.get("writer"), DatabaseWriter):
            await resolved["writer"].aclose()
    assert fake.requests == []


class RefusingWriter(DatabaseWriter):
    """A writer whose ``save`` fails before it subscribes to anything."""

    async def save(
        self,
        events: reactivex.Observable[arx.MessageStreamEvent],
        *,
        message_id: str,
        conversation_id: str | None = None,
    ) -> arx.Message | None:
        raise RuntimeError("no database configured")


async def test_a_sink_failing_before_it_subscribes_leaves_the_other_the_whole_reply(
    fake: testing.FakeAnthropic,
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = RefusingWriter("sqlite+aiosqlite:///:memory:")
    try:
        reply = words(10)
        fake.add_stream(reply, tokens_per_second=500)
        live = await follow(hub)
        with pytest.raises(RuntimeError, match="no database"):
            await asyncio.wait_for(
                relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"),
                WAIT,
            )
        items, error = await live
        assert error is None and items[-1].end == "done"
        assert replayed(items) == reply.message()
        assert len(fake.requests) == 1
    finally:
        await writer.aclose()


# --- how failures combine ----------------------------------------------------------------------


async def test_the_streams_error_wins_and_names_a_failed_sink_in_a_note(
    fake: testing.FakeAnthropic,
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = RefusingWriter("sqlite+aiosqlite:///:memory:")
    try:
        fake.add_stream(words(20).error("overloaded_error", "Overloaded"), tokens_per_second=400)
        with pytest.raises(arx.OverloadedError) as caught:
            await asyncio.wait_for(
                relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"),
                WAIT,
            )
        notes = getattr(caught.value, "__notes__", [])
        assert any("no database configured" in note for note in notes)
        assert len(fake.requests) == 1
    finally:
        await writer.aclose()


async def test_two_failed_sinks_raise_the_first_with_the_other_in_a_note(
    fake: testing.FakeAnthropic,
) -> None:
    hub = sinks.Broadcaster(FailingBackend())
    writer = RefusingWriter("sqlite+aiosqlite:///:memory:")
    try:
        fake.add_stream(words(20), tokens_per_second=400)
        with pytest.raises((sinks.BroadcastError, RuntimeError)) as caught:
            await asyncio.wait_for(
                relay(stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"),
                WAIT,
            )
        notes = " ".join(getattr(caught.value, "__notes__", []))
        assert "another sink failed too" in notes
    finally:
        await writer.aclose()


async def test_a_source_that_fails_to_subscribe_ends_both_sinks_with_its_error(
    sqlite_db: Database,
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)

    def refuse(observer: Any, scheduler: Any = None) -> Any:
        raise arx.APIConnectionError("no route to the API")

    with pytest.raises(arx.APIConnectionError, match="no route"):
        await asyncio.wait_for(
            relay(
                reactivex.create(refuse), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"
            ),
            WAIT,
        )
    items, error = await collect(hub.subscribe(CHANNEL))
    assert isinstance(error, arx.APIConnectionError) and items[-1].end == "error"


async def test_events_in_an_impossible_order_end_both_sinks_as_a_protocol_error(
    sqlite_db: Database,
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    events = [arx.parse_event(json.dumps(event)) for event in words(3).events()]
    disordered = reactivex.from_iterable([events[0], events[2], events[1]])
    with pytest.raises(arx.ProtocolError):
        await asyncio.wait_for(
            relay(disordered, hub=hub, channel=CHANNEL, writer=writer, message_id="m1"), WAIT
        )
    items, error = await collect(hub.subscribe(CHANNEL))
    assert isinstance(error, arx.ProtocolError) and items[-1].error_class == "ProtocolError"
    row = await writer.get("m1")
    assert row is not None and row.status == "failed" and row.error_type == "ProtocolError"


# --- start_relay: what a web request awaits ------------------------------------------------------


async def test_start_relay_returns_once_the_channel_is_open(
    sqlite_db: Database, fake: testing.FakeAnthropic
) -> None:
    hub = sinks.MemoryBroadcaster()
    writer = await ready(sqlite_db)
    reply = words(20)
    fake.add_stream(reply, tokens_per_second=400)
    task = await sinks.start_relay(
        stream(fake), hub=hub, channel=CHANNEL, writer=writer, message_id="m1"
    )
    # No wait at all: the browser's subscription right after the answer finds the reply.
    items, error = await collect(hub.subscribe(CHANNEL))
    assert error is None and replayed(items) == reply.message()
    assert await asyncio.wait_for(task, WAIT) == reply.message()
    row = await writer.get("m1")
    assert row is not None and row.status == "finished"
    assert len(fake.requests) == 1


async def test_start_relay_refuses_a_busy_channel_at_the_call(fake: testing.FakeAnthropic) -> None:
    hub = sinks.MemoryBroadcaster()
    fake.add_stream(words(50), tokens_per_second=100)
    first = await sinks.start_relay(stream(fake), hub=hub, channel=CHANNEL)
    with pytest.raises(sinks.ChannelBusyError):
        await sinks.start_relay(stream(fake), hub=hub, channel=CHANNEL)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(fake.requests) == 1  # the refused reply made no request
    await fake.wait_closed()


async def test_a_started_relay_that_fails_is_logged_not_left_unretrieved(
    fake: testing.FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    hub = sinks.MemoryBroadcaster()
    fake.add_stream(words(3).error("overloaded_error", "Overloaded"))
    caplog.set_level("INFO", logger="anthropic_rx.sinks")
    task = await sinks.start_relay(stream(fake), hub=hub, channel=CHANNEL)
    await asyncio.wait([task], timeout=WAIT)
    assert isinstance(task.exception(), arx.OverloadedError)
    assert any("OverloadedError" in record.getMessage() for record in caplog.records)
