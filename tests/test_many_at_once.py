"""Many replies at once over loopback, each ending its own way: every one ends typed, none
hangs, none slows the others past its limits, and no connection is left open."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx._transport import StreamingTransport

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}
WORDS = [f"word{i} " for i in range(30)]
# ``make soak``: ten times the replies, 1,200 at once through one client.
SCALE = 10 if os.environ.get("ANTHROPIC_RX_SOAK") == "1" else 1


def plan(fake: testing.FakeAnthropic) -> Counter[str]:
    """Queue a mix of endings; the count of each outcome the client must report."""
    reply = testing.text_reply(*WORDS)
    data = reply.to_sse()
    middle = data.index(b"word15")
    expected: Counter[str] = Counter()
    for _ in range(40 * SCALE):
        fake.add_stream(reply, tokens_per_second=400)
        expected["complete"] += 1
    for _ in range(20 * SCALE):
        fake.add_stream(reply, tokens_per_second=400, truncate_after=middle)
        expected["IncompleteStreamError"] += 1
    for _ in range(20 * SCALE):
        fake.add_stream(reply, tokens_per_second=400, disconnect_after=middle)
        expected["APIConnectionError"] += 1
    for _ in range(20 * SCALE):
        fake.add_stream(reply, tokens_per_second=400, error_after=(10, "overloaded_error", "busy"))
        expected["OverloadedError"] += 1
    for _ in range(10 * SCALE):
        fake.add_error(529, "overloaded_error", "busy")
        expected["OverloadedError (nothing kept)"] += 1
    for _ in range(10 * SCALE):
        fake.add_stream(reply, stall_after=middle, stall_for=10.0)
        expected["APITimeoutError"] += 1
    return expected


async def test_a_hundred_and_twenty_replies_at_once_each_end_their_own_way() -> None:
    fake = testing.FakeAnthropic()
    expected = plan(fake)
    text = "".join(WORDS)
    async with (
        fake.serve() as base_url,
        # The fake shares the loop: a pause of that loop (a full garbage collection late in a
        # long test run takes most of a second) is silence for every reply at once, so the idle
        # limit sits well above one and well below the stalled replies' ten seconds.
        arx.Client(base_url=base_url, max_retries=0, idle_timeout=2.5) as client,
    ):

        async def one() -> str:
            try:
                message = await arx.final_message(client.stream(**PARAMS))
            except arx.AnthropicRxError as error:
                # What arrived is kept: every failure but the HTTP 529 comes after message_start.
                lost = "" if error.partial_message is not None else " (nothing kept)"
                return type(error).__name__ + lost
            assert message.content == (arx.TextBlock(text=text),)
            return "complete"

        async with asyncio.timeout(20 * SCALE):  # never a hang
            outcomes = Counter(
                await asyncio.gather(*(one() for _ in range(sum(expected.values()))))
            )
        assert outcomes == expected
        await fake.wait_closed(timeout=5.0)
        transport = client._pools.acquire()._transport
        assert isinstance(transport, StreamingTransport)
        assert not transport._open  # every response released its connection
        idle = [c for stack in transport._idle.values() for c in stack]
        assert idle  # completed replies gave their connections back...
        assert all(c.reusable for c in idle)  # ...and only those
    assert fake.open_streams == 0
