"""Thousands of short streams, each ended its own way, leave nothing behind.

Against the fake API over loopback (the client's own HTTP/1.1 transport and pool), streams are
read to the end, left by ``break`` from ``async for``, disposed mid-stream, cancelled
(``task.cancel()``) mid-stream, or fail (a truncated body, a dropped connection, HTTP 529, an
in-stream error event). The streams that are left early stall on the server first, so the client
really leaves in the middle of a body. Afterwards, compared with a baseline taken after a
warm-up of the same mix:

- every response is closed on the server side (``fake.open_streams == 0``);
- sockets and file descriptors: at most :data:`FD_TOLERANCE` more (the pool keeps idle
  keep-alive connections; the warm-up filled it already);
- asyncio tasks: none more;
- RSS: at most :data:`RSS_TOLERANCE_KIB` more (the fake's own log of requests is emptied
  between batches: it is test machinery, about 3 KiB a request);
- live instances of the library's (not the fake's), httpx's, h11's and reactivex's classes:
  at most :data:`OBJECT_TOLERANCE` more;

and once the client and the server are closed, the sockets are exactly those of before.

A normal run makes 1,000 streams, ``ANTHROPIC_RX_SOAK=1`` 10,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter

import reactivex

import anthropic_rx as arx
from anthropic_rx import testing

from ._common import API_KEY, PARAMS, SOAK, fd_count, need_proc, rss_kib, socket_count

STREAMS = 10_000 if SOAK else 1_000
WARM_UP = 200
AT_ONCE = 16  # streams in flight at a time
FD_TOLERANCE = 4
RSS_TOLERANCE_KIB = 8 * 1024
OBJECT_TOLERANCE = 16  # instances of the library's, httpx's and reactivex's classes
BATCH = 500
WAIT = 5.0  # seconds any one stream may take

REPLY = testing.text_reply("one ", "two ", "three ", "four ", "five")
DATA = REPLY.to_sse()
MIDDLE = DATA.index(b"three")
MODES = ["complete", "break", "dispose", "cancel", "truncated", "dropped", "529", "error-event"]


def answer(request: testing.RecordedRequest) -> testing.FakeResponse:
    """The fake's answer to one request: the mode is the question's text (streams run
    concurrently, so a queue of plans would not meet its own request)."""
    mode = request.json["messages"][0]["content"]
    if mode == "complete":
        return testing.FakeResponse.stream(DATA)
    if mode in ("break", "dispose", "cancel"):
        # The server stalls in the middle: the client leaves while the body is unfinished.
        return testing.FakeResponse.stream(DATA, stall_after=MIDDLE, stall_for=30.0)
    if mode == "truncated":
        return testing.FakeResponse.stream(DATA, truncate_after=MIDDLE)
    if mode == "dropped":
        return testing.FakeResponse.stream(DATA, disconnect_after=MIDDLE)
    if mode == "529":
        return testing.FakeResponse.error(529)
    if mode == "error-event":
        return testing.FakeResponse.stream(REPLY, error_after=(3, "overloaded_error", "busy"))
    raise AssertionError(mode)


async def run_one(client: arx.Client, mode: str) -> str:
    """One stream, ended as ``mode`` says; what it ended with."""
    events = client.stream(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": mode}]
    )
    if mode == "break":
        async for _ in arx.to_async_iterator(events):
            break
        return "left"
    if mode == "dispose":
        first = asyncio.Event()
        subscription = events.subscribe(lambda _: first.set())
        await first.wait()
        subscription.dispose()
        return "left"
    if mode == "cancel":
        first = asyncio.Event()

        async def read() -> None:
            async for _ in arx.to_async_iterator(events):
                first.set()

        task = asyncio.create_task(read())
        await first.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return "left" if task.cancelled() else "not cancelled"
    try:
        await arx.final_message(events)
    except arx.AnthropicRxError as error:
        return type(error).__name__
    return "complete"


async def run_many(client: arx.Client, count: int, offset: int = 0) -> Counter[str]:
    """``count`` streams, :data:`AT_ONCE` at a time, the modes in turn."""
    outcomes: Counter[str] = Counter()
    queue = asyncio.Queue[str]()
    for n in range(count):
        queue.put_nowait(MODES[(n + offset) % len(MODES)])

    async def worker() -> None:
        while not queue.empty():
            mode = queue.get_nowait()
            async with asyncio.timeout(WAIT):  # never a hang
                outcomes[f"{mode}: {await run_one(client, mode)}"] += 1

    await asyncio.gather(*(worker() for _ in range(AT_ONCE)))
    return outcomes


def live_objects() -> Counter[str]:
    """Live instances of the library's classes (not the fake's), httpx's and reactivex's."""
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        module = getattr(type(obj), "__module__", None)
        if (
            isinstance(module, str)
            and module.startswith(("anthropic_rx", "httpx", "reactivex", "h11"))
            and not (module.startswith("anthropic_rx.testing"))
        ):
            counts[f"{module}.{type(obj).__qualname__}"] += 1
    return counts


def snapshot() -> tuple[int, int, int, int]:
    return fd_count(), socket_count(), len(asyncio.all_tasks()), rss_kib()


async def test_thousands_of_streams_ended_every_way_leave_nothing_open() -> None:
    need_proc()
    # The fake keeps one request (about 3 KiB each): the memory measured is the client's.
    fake = testing.FakeAnthropic(default=answer, keep_requests=1)
    sockets_at_start = socket_count()
    async with (
        fake.serve() as base_url,
        arx.Client(base_url=base_url, api_key=API_KEY, max_retries=0, idle_timeout=10) as client,
    ):
        await run_many(client, WARM_UP)
        await fake.wait_closed(WAIT)
        fds, sockets, tasks, rss = snapshot()
        objects = live_objects()
        started = time.monotonic()
        outcomes: Counter[str] = Counter()
        for batch in range(0, STREAMS, BATCH):
            outcomes += await run_many(client, BATCH, offset=WARM_UP + batch)
            elapsed = time.monotonic() - started
        await fake.wait_closed(WAIT)
        # The server's and the bridges' tasks end a turn or two after the last response.
        for _ in range(20):
            if len(asyncio.all_tasks()) <= tasks:
                break
            await asyncio.sleep(0.01)
        fds_after, sockets_after, tasks_after, rss_after = snapshot()
        objects_after = live_objects()
        assert fake.open_streams == 0
    sockets_at_end = socket_count()
    per_mode = STREAMS // len(MODES)
    expected = {
        "complete: complete": per_mode,
        "break: left": per_mode,
        "dispose: left": per_mode,
        "cancel: left": per_mode,
        "truncated: IncompleteStreamError": per_mode,
        "dropped: APIConnectionError": per_mode,
        "529: OverloadedError": per_mode,
        "error-event: OverloadedError": per_mode,
    }
    assert dict(outcomes) == expected
    # Every stream left early was seen leaving by the server (none ran to the end).
    assert fake.disconnects >= 3 * (per_mode + WARM_UP // len(MODES))
    assert fds_after <= fds + FD_TOLERANCE, (fds, fds_after)
    assert sockets_after <= sockets + FD_TOLERANCE, (sockets, sockets_after)
    assert tasks_after <= tasks, (tasks, tasks_after)
    assert rss_after <= rss + RSS_TOLERANCE_KIB, (rss, rss_after)
    grown = {name: n - objects.get(name, 0) for name, n in objects_after.items()}
    grown = {name: n for name, n in grown.items() if n > 0}
    assert sum(grown.values()) <= OBJECT_TOLERANCE, grown
    assert sockets_at_end <= sockets_at_start, (sockets_at_start, sockets_at_end)
    print(
        f"{STREAMS} streams in {elapsed:.1f} s: fds {fds}->{fds_after}, sockets "
        f"{sockets}->{sockets_after} (closed: {sockets_at_start}->{sockets_at_end}), tasks "
        f"{tasks}->{tasks_after}, RSS {rss}->{rss_after} KiB ({rss_after - rss:+d}), "
        f"library objects {sum(objects.values())}->{sum(objects_after.values())}"
    )


async def test_a_stream_never_subscribed_costs_nothing() -> None:
    # Cold: building a stream sends nothing and holds nothing; only a subscription does.
    need_proc()
    fake = testing.FakeAnthropic()
    async with fake.serve() as base_url, arx.Client(base_url=base_url, api_key=API_KEY) as client:
        before = snapshot()[:3]
        streams: list[reactivex.Observable[arx.MessageStreamEvent]] = [
            client.stream(**PARAMS) for _ in range(1000)
        ]
        assert snapshot()[:3] == before
        assert len(streams) == 1000 and fake.requests == []
