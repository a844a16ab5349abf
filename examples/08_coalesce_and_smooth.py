"""Reshape text for what shows it: fewer, longer chunks for a slow consumer, or steady words.

- ``ops.coalesce(max_delay=..., max_chars=...)`` merges consecutive chunks so a slow consumer
  (a database row update, a websocket frame, a chat app's message edit) is called less often.
- ``ops.smooth("word", interval=...)`` re-cuts text into whole words, one every ``interval``
  seconds, for an even typing effect however the network delivers it.

Both are lossless: the joined output is the joined input. Fake API by default; ``--real`` (or
``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio
import time

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import operators as ops
from anthropic_rx import testing

MODEL = "claude-sonnet-4-5"
TEXT = "Reactive streams make slow consumers and jumpy networks easy to handle."


def client_for(real: bool, fake: testing.FakeAnthropic) -> arx.Client:
    return arx.Client() if real else fake.client()


async def coalesced(real: bool) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*TEXT), tokens_per_second=400)  # one character a delta
    async with client_for(real, fake) as client:
        events = client.stream(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Say something."}]
        )
        deltas = events.pipe(ops.raise_on_error(), ops.text_deltas())
        updates = deltas.pipe(ops.coalesce(max_delay=0.05, max_chars=200))
        chunks = [chunk async for chunk in arx.to_async_iterator(updates)]
    print(f"coalesce: {len(''.join(chunks))} characters in {len(chunks)} updates")
    if not real:
        print(f"coalesce lost nothing: {''.join(chunks) == TEXT}")


async def smoothed(real: bool) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(
        testing.text_reply("Reac", "tive str", "eams make slow consumers and jum", "py")
    )
    async with client_for(real, fake) as client:
        events = client.stream(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Say something."}]
        )
        words = events.pipe(ops.raise_on_error(), ops.text_deltas(), ops.smooth("word", 0.02))
        started = time.monotonic()
        shown = [word async for word in arx.to_async_iterator(words)]
    elapsed = time.monotonic() - started
    print(f"smooth: {' | '.join(shown)}")
    print(f"smooth: {len(shown)} words in {elapsed:.2f} s")


async def main(real: bool) -> None:
    await coalesced(real)
    await smoothed(real)


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
