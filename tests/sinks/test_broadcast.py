"""The behaviour every broadcaster shares, through ``publish`` and ``subscribe`` only.

Parametrised on the backend: adding one is adding a ``backend`` param (and its factory).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import pytest
import reactivex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx import sinks, testing
from anthropic_rx.sinks._hub import (
    decode_event,
    decode_terminal,
    encode_event,
    encode_terminal,
    merge_deltas,
    rebuild_error,
)
from tests._services import redis_url, unique_prefix
from tests.conftest import FIXTURE_FILES, subscribed

SOAK = os.environ.get("ANTHROPIC_RX_SOAK") == "1"
WAIT = 5.0  # seconds any single wait in this file may take before the test fails

HubFactory = Callable[..., sinks.Broadcaster]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[HubFactory]:
    """A factory of broadcasters over one backend; every hub made is closed afterwards.

    Redis: the shared server, under a key prefix of this test's own (never flushed).
    """
    made: list[sinks.Broadcaster] = []
    url = redis_url() if request.param == "redis" else ""
    prefix = unique_prefix()

    def make(**options: Any) -> sinks.Broadcaster:
        if request.param == "memory":
            hub: sinks.Broadcaster = sinks.MemoryBroadcaster(**options)
        elif request.param == "redis":
            hub = sinks.RedisBroadcaster(url, prefix=prefix, **options)
        else:  # pragma: no cover - a backend param without a factory
            raise AssertionError(request.param)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        await hub.aclose()


@pytest.fixture
def fake() -> testing.FakeAnthropic:
    return testing.FakeAnthropic()


# --- helpers ---------------------------------------------------------------------------------


def id_key(entry_id: str) -> tuple[int, ...]:
    """Order of ids: memory's "12", Redis's "1700000000000-3"."""
    return tuple(int(part) for part in entry_id.split("-"))


def wire(events: Sequence[arx.MessageStreamEvent | None]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json", exclude_none=True) for e in events if e is not None]


def reply_events(reply: testing.Reply) -> list[arx.MessageStreamEvent]:
    return [arx.parse_event(json.dumps(event)) for event in reply.events()]


def words(count: int, prefix: str = "w") -> testing.Reply:
    return testing.text_reply(*(f"{prefix}{i} " for i in range(count)))


def request(client: arx.Client) -> reactivex.Observable[arx.MessageStreamEvent]:
    return client.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )


async def collect(
    subscription: reactivex.Observable[sinks.Broadcast], *, within: float = WAIT
) -> tuple[list[sinks.Broadcast], BaseException | None]:
    """Every item of a subscription, and the error it ended with (``None``: completed)."""
    items: list[sinks.Broadcast] = []
    async with asyncio.timeout(within):
        try:
            async for item in arx.to_async_iterator(subscription):
                items.append(item)
        except Exception as exc:
            return items, exc
    return items, None


async def opened(hub: sinks.Broadcaster, channel: str) -> None:
    """Wait until the channel's reply has its first entry."""
    async with asyncio.timeout(WAIT):
        while True:
            iterator = arx.to_async_iterator(hub.subscribe(channel))
            try:
                await iterator.__anext__()
                return
            except sinks.ChannelNotFound:
                await asyncio.sleep(0.005)
            finally:
                await iterator.aclose()


class Feed:
    """A source the test releases event by event (a reply that arrives when told)."""

    def __init__(self, reply: testing.Reply) -> None:
        self.events = reply_events(reply)
        self.sent = 0
        self.subscriptions = 0
        self.closed = False
        self._queue: asyncio.Queue[arx.MessageStreamEvent | None] = asyncio.Queue()

    def observable(self) -> reactivex.Observable[arx.MessageStreamEvent]:
        async def generate() -> AsyncIterator[arx.MessageStreamEvent]:
            self.subscriptions += 1
            try:
                while (event := await self._queue.get()) is not None:
                    yield event
            finally:
                self.closed = True

        return arx.from_async_iterable(generate())

    def send(self, count: int | None = None) -> None:
        end = len(self.events) if count is None else self.sent + count
        for event in self.events[self.sent : end]:
            self._queue.put_nowait(event)
        self.sent = min(end, len(self.events))

    def complete(self) -> None:
        """End the source here (without message_stop unless everything was sent)."""
        self._queue.put_nowait(None)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition nothing signals (a count, a flag set in a ``finally``)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - polled: there is no event to wait on
            await asyncio.sleep(0.002)


# --- ids, terminal, replay -------------------------------------------------------------------


async def test_ids_strictly_increase_pings_are_not_logged_and_one_terminal_ends_the_log(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend()
    reply = words(30)
    fake.add_stream(reply.to_sse(ping_every=4), chunk_size=97)
    async with fake.client() as client:
        message = await hub.publish("c", request(client))
    items, error = await collect(hub.subscribe("c"))
    assert error is None
    keys = [id_key(item.id) for item in items]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [item.is_end for item in items] == [False] * (len(items) - 1) + [True]
    assert wire([item.event for item in items]) == wire(reply_events(reply))  # no ping
    terminal = items[-1]
    assert terminal.end == "done" and terminal.event is None
    assert message is not None and message == reply.message()
    assert terminal.stop_reason == "end_turn" and terminal.usage == message.usage


async def test_a_subscriber_joining_mid_reply_gets_everything_exactly_once_in_order(
    backend: HubFactory,
) -> None:
    hub = backend()
    feed = Feed(words(40))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(10)
    await opened(hub, "c")
    late = asyncio.create_task(collect(hub.subscribe("c")))
    await asyncio.sleep(0.01)
    feed.send()
    feed.complete()
    await job
    items, error = await late
    assert error is None
    assert wire([item.event for item in items]) == wire(feed.events)
    replay, _ = await collect(hub.subscribe("c"))
    assert [item.id for item in items] == [item.id for item in replay]


async def test_resume_from_every_id_of_a_finished_reply_gives_exactly_the_suffix(
    backend: HubFactory,
) -> None:
    hub = backend()
    await hub.publish("c", arx.from_sse_bytes(words(25).to_sse()))
    log, _ = await collect(hub.subscribe("c"))
    for position, entry in enumerate(log):
        suffix, error = await collect(hub.subscribe("c", last_event_id=entry.id))
        assert error is None
        assert suffix == log[position + 1 :], position


async def test_resume_mid_reply_while_live_gives_the_rest_without_gap_or_duplicate(
    backend: HubFactory,
) -> None:
    hub = backend()
    feed = Feed(words(30))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(12)
    await opened(hub, "c")
    await asyncio.sleep(0.01)
    so_far: list[sinks.Broadcast] = []
    async with asyncio.timeout(WAIT):
        async for item in arx.to_async_iterator(hub.subscribe("c")):
            so_far.append(item)
            if len(so_far) == 7:
                break
    resumed = asyncio.create_task(collect(hub.subscribe("c", last_event_id=so_far[-1].id)))
    await asyncio.sleep(0.01)
    feed.send()
    feed.complete()
    await job
    rest, error = await resumed
    assert error is None
    whole, _ = await collect(hub.subscribe("c"))
    assert so_far + rest == whole


async def test_resuming_at_the_terminal_id_completes_at_once_with_nothing(
    backend: HubFactory,
) -> None:
    hub = backend()
    await hub.publish("c", arx.from_sse_bytes(words(3).to_sse()))
    log, _ = await collect(hub.subscribe("c"))
    assert await collect(hub.subscribe("c", last_event_id=log[-1].id)) == ([], None)


@pytest.mark.parametrize("bad", ["abc", "1.5", "", " 1", "x-y"])
async def test_a_malformed_last_event_id_is_a_resume_error(backend: HubFactory, bad: str) -> None:
    hub = backend()
    await hub.publish("c", arx.from_sse_bytes(words(3).to_sse()))
    items, error = await collect(hub.subscribe("c", last_event_id=bad))
    assert items == [] and isinstance(error, sinks.ResumeError)


@pytest.mark.parametrize("bad", ["7" * 10_000, "1-" + "2" * 10_000, "x" * 10_000])
async def test_a_huge_last_event_id_is_quoted_short_in_the_resume_error(
    backend: HubFactory, bad: str
) -> None:
    hub = backend()
    await hub.publish("c", arx.from_sse_bytes(words(3).to_sse()))
    _, error = await collect(hub.subscribe("c", last_event_id=bad))
    assert isinstance(error, sinks.ResumeError)
    # A header of kilobytes must not become a log line of kilobytes.
    assert len(str(error)) < 200 and "10,00" in str(error), str(error)


async def test_a_channel_never_published_is_channel_not_found(backend: HubFactory) -> None:
    hub = backend()
    subscription = hub.subscribe("nobody", last_event_id=None)
    assert isinstance(subscription, sinks.BroadcastSubscription)
    assert (subscription.channel, subscription.last_event_id) == ("nobody", None)
    items, error = await collect(subscription)
    assert items == [] and isinstance(error, sinks.ChannelNotFound)


async def test_history_is_kept_for_ttl_after_the_end_then_the_channel_is_not_found(
    backend: HubFactory,
) -> None:
    hub = backend(ttl=0.2)
    await hub.publish("c", arx.from_sse_bytes(words(3).to_sse()))
    ended = time.monotonic()
    items, error = await collect(hub.subscribe("c"))
    assert error is None and items[-1].end == "done"
    await asyncio.sleep(0.1)
    assert (await collect(hub.subscribe("c")))[0] == items  # still there within ttl
    await asyncio.sleep(max(0.0, ended + 0.25 - time.monotonic()))
    items, error = await collect(hub.subscribe("c"))
    assert items == [] and isinstance(error, sinks.ChannelNotFound)


# --- one reply at a time ---------------------------------------------------------------------


async def test_a_second_publisher_is_refused_before_it_makes_a_request(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend()
    fake.add_stream(words(20), tokens_per_second=200)
    fake.add_stream(words(5))
    async with fake.client() as client:
        first = asyncio.create_task(hub.publish("c", request(client)))
        await opened(hub, "c")
        with pytest.raises(sinks.ChannelBusyError):
            await hub.publish("c", request(client))
        assert len(fake.requests) == 1
        await first
        other = await hub.publish("other", request(client))  # other channels are free
    assert other is not None and len(fake.requests) == 2


async def test_a_new_reply_gets_greater_ids_and_an_old_id_replays_it_from_the_start(
    backend: HubFactory,
) -> None:
    hub = backend()
    await hub.publish("c", arx.from_sse_bytes(words(5, "old").to_sse()))
    old, _ = await collect(hub.subscribe("c"))
    second = words(6, "new")
    await hub.publish("c", arx.from_sse_bytes(second.to_sse()))
    new, _ = await collect(hub.subscribe("c"))
    assert min(id_key(item.id) for item in new) > max(id_key(item.id) for item in old)
    assert wire([item.event for item in new]) == wire(reply_events(second))
    for entry in (old[0], old[3], old[-1]):
        assert (await collect(hub.subscribe("c", last_event_id=entry.id))) == (new, None)


async def test_a_reader_of_a_reply_still_gets_all_of_it_when_the_next_one_begins(
    backend: HubFactory,
) -> None:
    hub = backend(buffer=4)  # it reads the old reply four entries at a time
    await hub.publish("c", arx.from_sse_bytes(words(30, "old").to_sse()))
    old, _ = await collect(hub.subscribe("c"))
    reading = arx.to_async_iterator(hub.subscribe("c"), max_buffer=2)
    received = [await reading.__anext__()]
    await hub.publish("c", arx.from_sse_bytes(words(3, "new").to_sse()))
    async with asyncio.timeout(WAIT):
        received += [item async for item in reading]
    assert received == old


# --- how a reply ends ------------------------------------------------------------------------


async def test_an_in_stream_error_is_the_typed_error_of_publish_and_of_every_subscriber(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend()
    fake.add_stream(words(10), error_after=(6, "overloaded_error", "Overloaded"), chunk_size=50)
    async with fake.client() as client:
        job = asyncio.create_task(hub.publish("c", request(client)))
        await opened(hub, "c")
        live = [asyncio.create_task(collect(hub.subscribe("c"))) for _ in range(3)]
        with pytest.raises(arx.OverloadedError) as raised:
            await job
    assert raised.value.partial_message is not None
    expected_text = raised.value.partial_message.content[0].text  # type: ignore[union-attr]
    late = await collect(hub.subscribe("c"))
    for items, error in [*[await task for task in live], late]:
        assert isinstance(error, arx.OverloadedError)
        assert error.error_type == "overloaded_error" and error.message == "Overloaded"
        assert error.partial_message is not None
        assert error.partial_message.content[0].text == expected_text  # type: ignore[union-attr]
        terminal = items[-1]
        assert (terminal.end, terminal.error_type, terminal.error_class) == (
            "error",
            "overloaded_error",
            "OverloadedError",
        )
        assert terminal.error_message == "Overloaded"
        assert all(item.event is None or item.event.type != "error" for item in items)


async def test_an_error_before_the_first_event_is_a_lone_error_terminal(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend()
    fake.add_error(529)
    async with fake.client(max_retries=0) as client:
        with pytest.raises(arx.OverloadedError):
            await hub.publish("c", request(client))
    items, error = await collect(hub.subscribe("c"))
    assert [item.end for item in items] == ["error"]
    assert isinstance(error, arx.OverloadedError) and error.partial_message is None


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ({"disconnect_after": 700}, arx.APIConnectionError),
        ({"truncate_after": 700}, arx.IncompleteStreamError),
        ({"body": b'event: message_start\ndata: {"type": "message_start"\n\n'}, arx.ProtocolError),
    ],
)
async def test_a_broken_stream_reaches_subscribers_as_the_same_class(
    backend: HubFactory,
    fake: testing.FakeAnthropic,
    plan: dict[str, Any],
    expected: type[Exception],
) -> None:
    hub = backend()
    plan = dict(plan)  # the parameter is shared by every backend's run: pop from a copy
    body = plan.pop("body", None)
    fake.add_stream(body if body is not None else words(40).to_sse(), **plan)
    async with fake.client() as client:
        with pytest.raises(expected) as raised:
            await hub.publish("c", request(client))
    items, error = await collect(hub.subscribe("c"))
    assert type(error) is type(raised.value)
    assert items[-1].error_class == type(raised.value).__name__
    assert isinstance(error, arx.AnthropicRxError)
    assert error.partial_message == raised.value.partial_message  # type: ignore[attr-defined]
    await fake.wait_closed()


async def test_a_cancelled_reply_ends_cancelled_with_estimated_usage(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend()
    stop = asyncio.Event()
    fake.add_stream(words(200), tokens_per_second=400)
    async with fake.client() as client:
        events = request(client).pipe(ops.take_until_cancel(stop))
        job = asyncio.create_task(hub.publish("c", events))
        await opened(hub, "c")
        await asyncio.sleep(0.05)
        stop.set()
        message = await asyncio.wait_for(job, WAIT)
        await fake.wait_closed()
    assert message is not None and message.cancelled
    assert message.usage is not None and message.usage.estimated
    items, error = await collect(hub.subscribe("c"))
    assert error is None
    terminal = items[-1]
    assert terminal.end == "cancelled" and terminal.usage == message.usage
    assert terminal.usage is not None and terminal.usage.estimated
    text = "".join(
        item.event.delta.text  # type: ignore[union-attr]
        for item in items
        if isinstance(item.event, arx.ContentBlockDeltaEvent)
    )
    assert text == message.content[0].text  # type: ignore[union-attr]


async def test_a_reply_cancelled_before_message_start_returns_none(backend: HubFactory) -> None:
    hub = backend()
    feed = Feed(words(3))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    await asyncio.sleep(0.01)
    feed.complete()
    assert await asyncio.wait_for(job, WAIT) is None
    items, error = await collect(hub.subscribe("c"))
    assert error is None and [(i.end, i.usage) for i in items] == [("cancelled", None)]


async def test_events_in_an_impossible_order_end_the_reply_as_a_protocol_error(
    backend: HubFactory,
) -> None:
    hub = backend()
    events = reply_events(words(3))
    disordered = reactivex.from_iterable([events[0], events[2], events[1]])
    with pytest.raises(arx.ProtocolError):
        await hub.publish("c", disordered)
    items, error = await collect(hub.subscribe("c"))
    assert [item.event for item in items[:-1]] == [events[0]]
    assert isinstance(error, arx.ProtocolError) and items[-1].error_class == "ProtocolError"


async def test_a_source_that_fails_to_subscribe_ends_the_reply_with_its_error(
    backend: HubFactory,
) -> None:
    hub = backend()

    def refuse(observer: Any, scheduler: Any = None) -> Any:
        raise LookupError("no such stream")

    with pytest.raises(LookupError):
        await hub.publish("c", reactivex.create(refuse))
    items, error = await collect(hub.subscribe("c"))
    # The text of an exception that is not the library's may hold anything: the publisher
    # raised it whole; subscribers, in any process, learn only that it was internal.
    terminal = items[-1]
    assert (terminal.error_class, terminal.error_type) == ("LookupError", "internal_error")
    assert terminal.error_message == "internal server error"
    assert type(error) is arx.AnthropicRxError and "no such stream" not in str(error)


# --- slow, failing and vanished parties ------------------------------------------------------


async def test_a_stalled_subscriber_slows_no_one_and_holds_at_most_its_buffer(
    backend: HubFactory,
) -> None:
    hub = backend(buffer=16)
    feed = Feed(words(300))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(3)
    await opened(hub, "c")
    stalled = arx.to_async_iterator(hub.subscribe("c"), max_buffer=2)
    await stalled.__anext__()  # subscribed, then never read again until the end
    healthy = asyncio.create_task(collect(hub.subscribe("c")))
    await asyncio.sleep(0.01)
    for _ in range(30):
        feed.send(10)
        await asyncio.sleep(0)
        assert all(count <= 16 for count in hub.buffered("c"))
    feed.send()
    feed.complete()
    async with asyncio.timeout(WAIT):
        await job
        items, error = await healthy
    assert error is None and wire([i.event for i in items]) == wire(feed.events)
    counts = hub.buffered("c")
    assert len(counts) == 1 and counts[0] <= 16  # the stalled one, still subscribed
    await stalled.aclose()
    await until(lambda: hub.buffered("c") == [])


async def _stall_then_drain(
    hub: sinks.Broadcaster, reply: testing.Reply
) -> tuple[list[sinks.Broadcast], BaseException | None, list[sinks.Broadcast]]:
    """A subscriber takes one item, stalls while the whole reply is published, then drains.

    Returns what it received, how it ended, and the full log.
    """
    feed = Feed(reply)
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(1)
    await opened(hub, "c")
    stalled = arx.to_async_iterator(hub.subscribe("c"), max_buffer=2)
    received = [await stalled.__anext__()]
    await asyncio.sleep(0.01)
    feed.send()
    feed.complete()
    await asyncio.wait_for(job, WAIT)
    error: BaseException | None = None
    async with asyncio.timeout(WAIT):
        try:
            async for item in stalled:
                received.append(item)
        except Exception as exc:
            error = exc
    log, _ = await collect(hub.subscribe("c"))
    return received, error, log


async def test_slow_coalesce_merges_text_deltas_losslessly_with_the_last_merged_id(
    backend: HubFactory,
) -> None:
    hub = backend(buffer=8)  # slow="coalesce" is the default
    reply = words(200)
    received, error, log = await _stall_then_drain(hub, reply)
    assert error is None and received[-1] == log[-1]
    assert len(received) < len(log)
    ids = [item.id for item in log]
    position = {entry_id: index for index, entry_id in enumerate(ids)}
    previous = -1
    for item in received:
        here = position[item.id]  # every id it got is a real id of the log
        assert here > previous
        covered = log[previous + 1 : here + 1]
        if item.event != log[here].event:  # a merged entry: exactly the deltas up to its id
            assert isinstance(item.event, arx.ContentBlockDeltaEvent)
            assert item.event.delta.text == "".join(  # type: ignore[union-attr]
                entry.event.delta.text  # type: ignore[union-attr]
                for entry in covered
            )
        previous = here
    builder = arx.final_message(
        reactivex.from_iterable([i.event for i in received if i.event is not None])
    )
    assert await builder == reply.message()
    # resuming from any id it received is exact
    middle = received[len(received) // 2]
    assert (await collect(hub.subscribe("c", last_event_id=middle.id)))[0] == log[
        position[middle.id] + 1 :
    ]


async def test_slow_coalesce_falls_back_to_disconnect_when_nothing_can_be_merged(
    backend: HubFactory,
) -> None:
    hub = backend(buffer=4)
    reply = testing.Reply()
    for number in range(60):
        reply = reply.text(f"block {number}")  # one delta per block: nothing adjacent
    received, error, log = await _stall_then_drain(hub, reply)
    assert error is None and not received[-1].is_end  # completed without the terminal
    rest, _ = await collect(hub.subscribe("c", last_event_id=received[-1].id))
    assert received + rest == log


async def test_slow_disconnect_completes_silently_and_resumes_exactly(
    backend: HubFactory,
) -> None:
    hub = backend(buffer=8, slow="disconnect")
    received, error, log = await _stall_then_drain(hub, words(200))
    assert error is None and not received[-1].is_end
    assert received == log[: len(received)]
    rest, error = await collect(hub.subscribe("c", last_event_id=received[-1].id))
    assert error is None and received + rest == log


async def test_slow_error_raises_slow_subscriber_error_that_names_where_to_resume(
    backend: HubFactory,
) -> None:
    hub = backend(buffer=8, slow="error")
    received, error, log = await _stall_then_drain(hub, words(200))
    assert isinstance(error, sinks.SlowSubscriberError)
    assert isinstance(error, sinks.BroadcastError)
    assert error.last_event_id == received[-1].id and received == log[: len(received)]
    rest, _ = await collect(hub.subscribe("c", last_event_id=error.last_event_id))
    assert received + rest == log


async def test_a_raising_subscriber_is_removed_alone(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend()
    fake.add_stream(words(50), tokens_per_second=1000)
    boom = RuntimeError("subscriber bug")
    failures: list[Exception] = []
    seen: list[sinks.Broadcast] = []

    def on_next(item: sinks.Broadcast) -> None:
        seen.append(item)
        if len(seen) == 3:
            raise boom

    async with fake.client() as client:
        job = asyncio.create_task(hub.publish("c", request(client)))
        await opened(hub, "c")
        hub.subscribe("c").subscribe(on_next, failures.append)
        other = asyncio.create_task(collect(hub.subscribe("c")))
        message = await asyncio.wait_for(job, WAIT)
    items, error = await other
    assert message is not None and error is None and items[-1].end == "done"
    assert failures == [boom] and len(seen) == 3


async def test_a_cancelled_publisher_ends_its_subscribers_and_closes_the_request(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend(stale_after=1.0)
    fake.add_stream(words(500), tokens_per_second=200)
    async with fake.client() as client:
        job = asyncio.create_task(hub.publish("c", request(client)))
        await opened(hub, "c")
        live = asyncio.create_task(collect(hub.subscribe("c")))
        await asyncio.sleep(0.1)
        job.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await job
        items, error = await live
        assert time.monotonic() - cancelled_at < 1.0
        await fake.wait_closed()
        assert fake.disconnects == 1
    assert isinstance(error, arx.IncompleteStreamError)
    assert items[-1].end == "error" and items[-1].error_class == "IncompleteStreamError"
    assert error.partial_message is not None
    sent = "".join(
        i.event.delta.text  # type: ignore[union-attr]
        for i in items
        if isinstance(i.event, arx.ContentBlockDeltaEvent)
    )
    assert sent and error.partial_message.content[0].text == sent  # type: ignore[union-attr]


async def _step(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine by hand to its next suspension and until what it waits for is done."""
    waited = coroutine.send(None)
    if waited is None:
        await asyncio.sleep(0)
    else:
        await asyncio.wait([waited])


async def test_a_publisher_that_stops_running_is_noticed_by_its_heartbeat(
    fake: testing.FakeAnthropic,
) -> None:
    # In memory only: a coroutine run by hand cannot stand for redis-py's, whose timeouts
    # cancel the task current when they were entered. For Redis the same is shown by killing
    # a publisher process (test_redis_broadcaster).
    hub = sinks.MemoryBroadcaster(stale_after=0.3)
    fake.add_stream(words(500), tokens_per_second=200)
    async with fake.client() as client:
        publishing = hub.publish("c", request(client))
        # Run the publisher by hand until its reply has a few entries, then never again:
        # as a task that is no longer scheduled, or a process that was killed.
        items: list[sinks.Broadcast] = []
        errors: list[Exception] = []
        ended = asyncio.Event()

        def on_error(error: Exception) -> None:
            errors.append(error)
            ended.set()

        async with asyncio.timeout(WAIT):
            while len(items) <= 5:
                await _step(publishing)
                if not items and (not errors or isinstance(errors[-1], sinks.ChannelNotFound)):
                    errors.clear()
                    ended.clear()
                    hub.subscribe("c").subscribe(items.append, on_error)
        frozen_at = time.monotonic()
        ended.clear()
        await asyncio.wait_for(ended.wait(), WAIT)
        waited = time.monotonic() - frozen_at
        error = errors[0]
        publishing.close()  # its finally disposes the request
        await fake.wait_closed()
    assert isinstance(error, arx.IncompleteStreamError) and waited < 0.3 + 0.1
    assert items[-1].error_class == "IncompleteStreamError"
    assert error.partial_message is not None and len(items) > 5
    # The channel is free again: the next reply is accepted.
    assert await hub.publish("c", arx.from_sse_bytes(words(2).to_sse())) is not None


async def test_200_subscribers_of_a_500_delta_reply_get_identical_logs(
    backend: HubFactory, fake: testing.FakeAnthropic
) -> None:
    hub = backend()
    fake.add_stream(words(500), tokens_per_second=2500, chunk_size=300)
    async with fake.client() as client:
        job = asyncio.create_task(hub.publish("c", request(client)))
        await opened(hub, "c")
        # 200 x 506 items through async iterators: slow under coverage, hence the long bound
        subscribers = [
            asyncio.create_task(collect(hub.subscribe("c"), within=60)) for _ in range(200)
        ]
        message = await asyncio.wait_for(job, 60)
        results = await asyncio.gather(*subscribers)
    first, _ = results[0]
    assert message is not None and len(first) == 500 + 6
    assert all(error is None and items == first for items, error in results)


# --- the parts both backends share, alone ----------------------------------------------------


def _terminal(error_class: str, error_type: str, message: str = "m") -> sinks.Broadcast:
    return sinks.Broadcast(
        "9", end="error", error_class=error_class, error_type=error_type, error_message=message
    )


@pytest.mark.parametrize(
    ("error_class", "error_type", "expected"),
    [
        ("OverloadedError", "overloaded_error", arx.OverloadedError),
        ("InternalServerError", "InternalServerError", arx.InternalServerError),
        ("APIError", "weird_error", arx.APIError),
        ("ErrorOfANewerVersion", "rate_limit_error", arx.RateLimitError),
        ("IncompleteStreamError", "IncompleteStreamError", arx.IncompleteStreamError),
        ("ProtocolError", "ProtocolError", arx.ProtocolError),
        ("APIConnectionError", "APIConnectionError", arx.APIConnectionError),
        ("APITimeoutError", "APITimeoutError", arx.APITimeoutError),
        ("ValueError", "ValueError", arx.AnthropicRxError),
    ],
)
def test_an_error_terminal_rebuilds_the_publishers_class(
    error_class: str, error_type: str, expected: type[Exception]
) -> None:
    partial = words(1).message()
    error = rebuild_error(_terminal(error_class, error_type), partial)
    assert type(error) is expected and error.partial_message is partial
    if isinstance(error, arx.APIError):
        assert error.message == "m"
        assert error.error_type == (None if error_type == error_class else error_type)
    else:
        assert str(error) == ("ValueError: m" if error_class == "ValueError" else "m")


_texts = st.lists(st.text(max_size=4), min_size=1, max_size=12)


@settings(max_examples=300 if SOAK else 40, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(_texts, min_size=1, max_size=4), cut=st.integers(0, 60))
def test_merging_deltas_is_lossless_and_keeps_the_last_id(
    blocks: list[list[str]], cut: int
) -> None:
    reply = testing.Reply()
    for parts in blocks:
        reply = reply.text(*parts)
    events = reply_events(reply)
    entries = [sinks.Broadcast(str(n), e) for n, e in enumerate(events[cut % len(events) :], 1)]
    merged = merge_deltas(entries)
    assert [e.id for e in merged] == sorted({e.id for e in merged}, key=int)
    assert merged[-1].id == entries[-1].id
    text = [
        e.event.delta.text  # type: ignore[union-attr]
        for e in entries
        if isinstance(e.event, arx.ContentBlockDeltaEvent)
    ]
    merged_text = [
        e.event.delta.text  # type: ignore[union-attr]
        for e in merged
        if isinstance(e.event, arx.ContentBlockDeltaEvent)
    ]
    assert "".join(text) == "".join(merged_text)
    deltas = [e for e in merged if isinstance(e.event, arx.ContentBlockDeltaEvent)]
    assert len(deltas) <= len(blocks)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda path: path.name)
def test_every_event_of_the_fixtures_survives_encoding_as_bytes(path: Any) -> None:
    events, _, _ = subscribed(path.read_bytes())
    for number, event in enumerate(events, 1):
        entry = decode_event(str(number), encode_event(event))
        assert entry.id == str(number) and wire([entry.event]) == wire([event])


@pytest.mark.parametrize(
    "terminal",
    [
        sinks.Broadcast("7", end="done", stop_reason="end_turn", usage=arx.Usage(output_tokens=3)),
        sinks.Broadcast("7", end="cancelled", usage=arx.Usage(output_tokens=9, estimated=True)),
        sinks.Broadcast("7", end="cancelled"),
        _terminal("OverloadedError", "overloaded_error", "Overloaded\n\u2028"),
    ],
)
def test_a_terminal_entry_survives_encoding_as_bytes(terminal: sinks.Broadcast) -> None:
    decoded = decode_terminal(terminal.id, encode_terminal(terminal))
    assert decoded == terminal
    assert (decoded.usage and decoded.usage.estimated) == (
        terminal.usage and terminal.usage.estimated
    )


@pytest.mark.parametrize("data", [b"{}", b"[]", b'{"end": "later"}', b"not json"])
def test_bytes_that_are_no_terminal_entry_are_a_protocol_error(data: bytes) -> None:
    with pytest.raises(arx.ProtocolError):
        decode_terminal("1", data)


@pytest.mark.parametrize("bad", ["", "a b", "{c}", "c\n", "c*", "é", "x" * 201])
async def test_every_backend_refuses_a_channel_name_redis_could_not_hold(
    backend: HubFactory, bad: str
) -> None:
    hub = backend()
    feed = Feed(words(2))
    with pytest.raises(ValueError, match="must match"):
        await hub.publish(bad, feed.observable())
    with pytest.raises(ValueError, match="must match"):
        await hub.start(bad, feed.observable())
    assert feed.subscriptions == 0
    with pytest.raises(ValueError, match="must match"):
        hub.subscribe(bad)
