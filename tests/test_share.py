"""One reply, several consumers, one of them broken: what ``share()`` does, what a broadcaster does.

reactivex's ``share()`` delivers each event to its subscribers in turn from one upstream
subscription; an exception one subscriber's ``on_next`` raises ends that subscription, and every
subscriber gets it as ``on_error``: one broken tab stops the save. A broadcaster's subscribers
each read the channel's log in a task of their own, so a raising one stops alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from reactivex import operators as rx_ops

import anthropic_rx as arx
from anthropic_rx import sinks, testing

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}
WORDS = [f"w{i} " for i in range(12)]


class BrokenTab:
    """A subscriber whose ``on_next`` raises at its first item (a bug in one tab's code)."""

    def __init__(self) -> None:
        self.bug = ValueError("the tab's own bug")
        self.errors: list[Exception] = []

    def on_next(self, _: object) -> None:
        raise self.bug

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)


async def test_share_spreads_one_subscribers_exception_to_the_others() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    tab = BrokenTab()
    async with fake.client(max_retries=0) as client:
        shared = client.stream(**PARAMS).pipe(rx_ops.share())
        saving = asyncio.create_task(arx.final_message(shared))
        await asyncio.sleep(0)  # the save subscribes first
        shared.subscribe(tab.on_next, tab.on_error)
        async with asyncio.timeout(5):
            with pytest.raises(ValueError, match="the tab's own bug") as caught:
                await saving
        await fake.wait_closed()
    assert caught.value is tab.bug  # the save failed with the tab's exception
    assert tab.errors == [tab.bug]
    assert fake.open_streams == 0
    assert fake.disconnects == 1  # the reply was cut off


async def test_a_broadcaster_stops_a_raising_subscriber_alone() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    hub = sinks.MemoryBroadcaster()
    tab = BrokenTab()
    async with fake.client(max_retries=0) as client:
        publishing = asyncio.create_task(hub.publish("c", client.stream(**PARAMS)))
        async with asyncio.timeout(5):
            while True:  # the channel exists once publish has opened it
                try:
                    healthy = arx.to_async_iterator(hub.subscribe("c"))
                    first = await anext(healthy)
                    break
                except sinks.ChannelNotFound:
                    await asyncio.sleep(0.005)
            hub.subscribe("c").subscribe(tab.on_next, tab.on_error)
            items = [first, *[item async for item in healthy]]
            message = await publishing
        await fake.wait_closed()
    assert tab.errors == [tab.bug]  # the broken tab alone stopped
    assert message is not None
    assert message.content == (arx.TextBlock(text="".join(WORDS)),)  # the save got it all
    assert items[-1].end == "done"  # and so did the other tab
    texts = [
        item.event.delta.text
        for item in items
        if isinstance(item.event, arx.ContentBlockDeltaEvent)
        and isinstance(item.event.delta, arx.TextDelta)
    ]
    assert "".join(texts) == "".join(WORDS)
    assert fake.open_streams == 0
