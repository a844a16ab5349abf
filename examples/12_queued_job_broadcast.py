"""A queued job streams a reply to every open tab and to the database, and Stop ends it.

The job (an ``asyncio`` task here, standing in for a queue worker) runs ``sinks.relay``: one
request to the model feeds a broadcaster channel per conversation and a database row per
reply. Two tabs subscribe to the channel and see the whole reply; a third drops its connection
mid-reply and resumes with the id of the last entry it saw (what a browser's ``Last-Event-ID``
does), getting the rest with no duplicate and no gap. A second reply is stopped mid-generation
by ``flags.request_stop``, as a Stop button in any process would: its channel ends
``cancelled``, its row reads ``cancelled``, and the request to the model is closed.

Memory broadcaster and flags (one process; ``sinks.RedisBroadcaster`` and
``cancel.RedisCancelFlags`` span processes), SQLite in a temporary directory. Needs the
``database`` extra (``pip install ".[database]"``).

Fake API by default; ``--real`` (or ``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import AsyncGenerator

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import cancel, sinks, testing
from anthropic_rx import operators as ops

MODEL = "claude-sonnet-4-5"
flags = cancel.MemoryCancelFlags()  # one per process, shared by every request handler
hub = sinks.MemoryBroadcaster()


async def ask_claude_job(
    client: arx.Client,
    writer: sinks.DatabaseWriter,
    conversation_id: str,
    message_id: str,
    prompt: str,
) -> arx.Message | None:
    """The queued job: one request to the model, to every tab and to the database.

    Ends the reply ``cancelled`` when the flag ``stop-stream-{message_id}`` is set; an error
    of the stream is raised once the channel and the row recorded it.
    """
    events = client.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
    ).pipe(ops.take_until_cancel(flags.watch(f"stop-stream-{message_id}")))
    return await sinks.relay(
        events,
        hub=hub,
        channel=f"conversation.{conversation_id}",
        writer=writer,
        message_id=message_id,
        conversation_id=conversation_id,
    )


async def follow(
    channel: str, last_event_id: str | None = None
) -> AsyncGenerator[sinks.Broadcast, None]:
    """A tab's subscription to ``channel``, after ``last_event_id``, until the reply ends.

    The job is queued: until its worker has opened the channel there is none
    (``ChannelNotFound``, which the SSE route answers with 204), so the tab looks again, for a
    few seconds at most. Closing the generator disposes the subscription.
    """
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            async with arx.to_async_iterator(hub.subscribe(channel, last_event_id)) as items:
                async for item in items:
                    yield item
            return
        except sinks.ChannelNotFound:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)


def text_of(item: sinks.Broadcast) -> str:
    event = item.event
    if isinstance(event, arx.ContentBlockDeltaEvent) and isinstance(event.delta, arx.TextDelta):
        return event.delta.text
    return ""


async def tab(name: str, channel: str) -> list[str]:
    """An open tab: shows the reply's text, then how it ended; returns the ids it saw."""
    ids: list[str] = []
    shown = ""
    async for item in follow(channel):
        ids.append(item.id)
        shown += text_of(item)
        if item.end is not None:
            print(f"{name} saw: {shown} ({len(ids)} entries, ended {item.end})")
    return ids


async def reloading_tab(channel: str, drop_after: int) -> list[str]:
    """A tab whose connection drops after ``drop_after`` entries, then resumes by id."""
    ids: list[str] = []
    shown = ""
    async with contextlib.aclosing(follow(channel)) as items:
        async for item in items:
            ids.append(item.id)
            shown += text_of(item)
            if len(ids) == drop_after:
                break  # the connection drops: leaving `async with` disposes the subscription
    print(f"late tab dropped after id {ids[-1]}: {shown}")
    await asyncio.sleep(0.05)  # the reply goes on meanwhile
    resumed_after = ids[-1]
    rest = ""
    async for item in follow(channel, last_event_id=resumed_after):
        ids.append(item.id)
        rest += text_of(item)
    print(f"late tab resumed after id {resumed_after}: {rest}")
    return ids


async def stopping_tab(channel: str, message_id: str, stop_after: int) -> None:
    """A tab whose user presses Stop after ``stop_after`` text deltas."""
    shown = ""
    deltas = 0
    async for item in follow(channel):
        if text := text_of(item):
            shown += text
            deltas += 1
            if deltas == stop_after:
                await flags.request_stop(f"stop-stream-{message_id}")  # the Stop button
        if item.end is not None:
            print(f"stopping tab saw: {shown.strip()} (ended {item.end})")


async def main(real: bool) -> None:
    fake = testing.FakeAnthropic()
    story = "Once upon a time, a small robot learned to stream its thoughts, one word at a time."
    fake.add_stream(testing.text_reply(*re.findall(r"\S+\s*", story)), tokens_per_second=100)
    counting = testing.text_reply(*[f"{n}, " for n in range(1, 201)])
    # Three text deltas, then nothing until the client goes away: a model still writing.
    fake.add_stream(
        counting, tokens_per_second=200, stall_after=len(testing.sse_bytes(counting.events()[:5]))
    )
    client = arx.Client() if real else fake.client()
    with tempfile.TemporaryDirectory() as directory:
        writer = sinks.DatabaseWriter(f"sqlite+aiosqlite:///{directory}/chat.db")
        try:
            await writer.create_all()
            async with client:
                # Reply 1: two tabs follow it whole; a third drops mid-reply and resumes.
                job = asyncio.create_task(
                    ask_claude_job(client, writer, "42", "msg-1", "Tell me a very short story.")
                )
                channel = "conversation.42"
                tab1, tab2, late = await asyncio.gather(
                    tab("tab 1", channel), tab("tab 2", channel), reloading_tab(channel, 6)
                )
                await job
                print(f"tabs saw the same entries: {tab1 == tab2}")
                print(f"late tab: no duplicate, no gap: {late == tab1}")
                row = await writer.get("msg-1")
                assert row is not None
                print(f"stored: {row.status} {row.text!r}")

                # Reply 2, in another conversation: stopped mid-generation. (A tab of
                # conversation 42 subscribing before a queued job opened that channel for its
                # next reply would replay msg-1's log: the app knows its current reply.)
                job = asyncio.create_task(
                    ask_claude_job(client, writer, "7", "msg-2", "Count slowly to two hundred.")
                )
                await stopping_tab("conversation.7", "msg-2", stop_after=3)
                message = await job
                assert message is not None
                print(f"stopped reply cancelled: {message.cancelled}")
                row = await writer.get("msg-2")
                assert row is not None
                print(f"stopped reply stored: {row.status}")
                print(f"stored text: {row.text!r}, usage estimated: {row.usage_estimated}")
        finally:
            await writer.aclose()
    if not real:
        await fake.wait_closed()
        print(f"requests: {len(fake.requests)}, closed by the client: {fake.disconnects}")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
