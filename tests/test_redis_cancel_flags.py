"""RedisCancelFlags: a stop from any connection or process ends the stream watching its name."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
import reactivex

import anthropic_rx as arx
from anthropic_rx import cancel, testing
from anthropic_rx import operators as ops
from tests._services import redis_url, unique_prefix

pytestmark = pytest.mark.services

WAIT = 5.0


@pytest.fixture
async def url() -> str:
    return redis_url()


@pytest.fixture
async def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def flags(url: str, prefix: str) -> AsyncIterator[cancel.RedisCancelFlags]:
    made = cancel.RedisCancelFlags(url, prefix=prefix)
    yield made
    await made.aclose()


@pytest.fixture
async def stopper(url: str, prefix: str) -> AsyncIterator[cancel.RedisCancelFlags]:
    """A second flags object: another pub/sub connection, as another worker would have."""
    made = cancel.RedisCancelFlags(url, prefix=prefix)
    yield made
    await made.aclose()


def request(client: arx.Client) -> reactivex.Observable[arx.MessageStreamEvent]:
    return client.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )


def paced(fake: testing.FakeAnthropic, words: int = 200) -> None:
    fake.add_stream(testing.text_reply(*(f"w{i} " for i in range(words))), tokens_per_second=20)


async def stream_text(
    events: reactivex.Observable[arx.MessageStreamEvent],
) -> tuple[list[str], float]:
    """The text deltas of a stream and the time it ended (monotonic)."""
    chunks: list[str] = []
    async with asyncio.timeout(WAIT):
        async for chunk in arx.to_async_iterator(events.pipe(ops.text_deltas())):
            chunks.append(chunk)
    return chunks, time.monotonic()


async def until_deltas(chunks_seen: list[str], count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(chunks_seen) < count:  # noqa: ASYNC110 - polled: a count, nothing to wait on
            await asyncio.sleep(0.01)


async def test_a_stop_from_another_connection_ends_the_stream_within_one_event(
    flags: cancel.RedisCancelFlags, stopper: cancel.RedisCancelFlags
) -> None:
    fake = testing.FakeAnthropic()
    paced(fake)
    seen: list[str] = []
    async with fake.client() as client:
        events = request(client).pipe(ops.take_until_cancel(flags.watch("stop-stream-1")))

        async def run() -> float:
            async with asyncio.timeout(WAIT):
                async for chunk in arx.to_async_iterator(events.pipe(ops.text_deltas())):
                    seen.append(chunk)
            return time.monotonic()

        task = asyncio.create_task(run())
        await until_deltas(seen, 3)
        asked = time.monotonic()
        before = len(seen)
        await stopper.request_stop("stop-stream-1")
        ended = await task
        await fake.wait_closed()
        assert fake.disconnects == 1
    # 20 tokens/s: one event every 50 ms. The stop lands before the next one or right after.
    assert ended - asked < 0.05 + 0.05
    assert len(seen) - before <= 1 and len(seen) < 200


async def test_a_stop_from_another_process_ends_the_stream(
    flags: cancel.RedisCancelFlags, url: str, prefix: str
) -> None:
    fake = testing.FakeAnthropic()
    paced(fake)
    seen: list[str] = []
    script = (
        "import asyncio, sys\n"
        "from anthropic_rx import cancel\n"
        "async def main():\n"
        # A wide retry window: a loaded machine may take seconds to start and connect it.
        "    flags = cancel.RedisCancelFlags(sys.argv[1], prefix=sys.argv[2], retry_window=10)\n"
        "    await flags.request_stop('stop-stream-2')\n"
        "    await flags.aclose()\n"
        "asyncio.run(main())\n"
    )
    async with fake.client() as client:
        events = request(client).pipe(ops.take_until_cancel(flags.watch("stop-stream-2")))
        task = asyncio.create_task(stream_text(events))
        await asyncio.sleep(0.2)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, url, prefix, stderr=subprocess.PIPE
        )
        async with asyncio.timeout(20):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        exited = time.monotonic()
        seen, ended = await task
        await fake.wait_closed()
    assert ended - exited < 0.1 and 0 < len(seen) < 200


async def test_a_stop_before_the_watch_is_kept_and_ends_the_stream_at_once(
    flags: cancel.RedisCancelFlags, stopper: cancel.RedisCancelFlags
) -> None:
    await stopper.request_stop("stop-stream-3")
    fake = testing.FakeAnthropic()
    paced(fake)
    async with fake.client() as client:
        events = request(client).pipe(ops.take_until_cancel(flags.watch("stop-stream-3")))
        seen, _ = await stream_text(events)
        await fake.wait_closed()
    assert len(seen) <= 1  # the pending stop is found as the watch starts, before the deltas


async def test_a_stop_is_consumed_once_a_second_watch_runs_to_the_end(
    flags: cancel.RedisCancelFlags, stopper: cancel.RedisCancelFlags
) -> None:
    await stopper.request_stop("stop-stream-4")
    first = flags.watch("stop-stream-4")
    async with asyncio.timeout(WAIT):
        assert await first.wait() == cancel.STOP_REASON
    second = flags.watch("stop-stream-4")
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("a ", "b ", "c "), tokens_per_second=50)
    async with fake.client() as client:
        seen, _ = await stream_text(request(client).pipe(ops.take_until_cancel(second)))
    assert seen == ["a ", "b ", "c "] and not second.cancelled


async def test_a_stop_heard_live_is_consumed_too(
    flags: cancel.RedisCancelFlags, stopper: cancel.RedisCancelFlags
) -> None:
    token = flags.watch("stop-stream-5")
    waiting = asyncio.create_task(token.wait())
    await asyncio.sleep(0.1)  # subscribed by now
    await stopper.request_stop("stop-stream-5")
    async with asyncio.timeout(WAIT):
        await waiting
    await asyncio.sleep(0.1)  # the pending key is deleted after the message
    later = flags.watch("stop-stream-5")
    waiting = asyncio.create_task(later.wait())
    await asyncio.sleep(0.3)
    assert not later.cancelled
    waiting.cancel()


async def test_every_token_watching_a_name_stops_other_names_do_not(
    flags: cancel.RedisCancelFlags, stopper: cancel.RedisCancelFlags
) -> None:
    tokens = [flags.watch("stop-stream-6") for _ in range(3)]
    other = flags.watch("stop-stream-7")
    waits = [asyncio.create_task(token.wait()) for token in [*tokens, other]]
    await asyncio.sleep(0.1)
    await stopper.request_stop("stop-stream-6")
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*waits[:3])
    assert all(token.cancelled for token in tokens) and not other.cancelled
    waits[3].cancel()


async def test_a_pending_stop_expires_after_its_ttl(url: str, prefix: str) -> None:
    short = cancel.RedisCancelFlags(url, prefix=prefix, ttl=0.15)
    try:
        await short.request_stop("stop-stream-8")
        await asyncio.sleep(0.3)
        token = short.watch("stop-stream-8")
        waiting = asyncio.create_task(token.wait())
        await asyncio.sleep(0.2)
        assert not token.cancelled
        waiting.cancel()
        await short.request_stop("stop-stream-9")  # within the ttl it is still there
        async with asyncio.timeout(WAIT):
            await short.watch("stop-stream-9").wait()
    finally:
        await short.aclose()


@pytest.mark.parametrize("bad", ["", "a b", "x{y}", "new\nline", "tab\t", "é", "k" * 201])
async def test_a_name_outside_the_safe_set_is_refused(
    flags: cancel.RedisCancelFlags, bad: str
) -> None:
    with pytest.raises(ValueError, match="must match"):
        flags.watch(bad)
    with pytest.raises(ValueError, match="must match"):
        await flags.request_stop(bad)


async def test_redis_unreachable_is_an_api_connection_error() -> None:
    from redis.exceptions import RedisError

    dead = cancel.RedisCancelFlags("redis://127.0.0.1:1/0", retry_window=0.1)
    try:
        async with asyncio.timeout(WAIT):
            with pytest.raises(arx.APIConnectionError) as raised:
                await dead.request_stop("stop-stream-10")
        assert isinstance(raised.value.__cause__, RedisError)
    finally:
        await dead.aclose()


async def test_flags_follow_the_protocol_and_close_their_connections(url: str, prefix: str) -> None:
    flags = cancel.RedisCancelFlags(url, prefix=prefix)
    assert isinstance(flags, cancel.CancelFlags)
    token = flags.watch("stop-stream-11")
    waiting = asyncio.create_task(token.wait())
    await asyncio.sleep(0.1)
    await flags.aclose()
    waiting.cancel()
    assert "prefix" in repr(flags)
