"""Print a reply's text as it arrives.

Runs against the fake Anthropic API by default (no API key, no network). With ``--real`` (or
``ANTHROPIC_RX_REAL=1``) it calls the real API with ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio
import re

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import operators as ops
from anthropic_rx import testing

MODEL = "claude-sonnet-4-5"


def make_client(real: bool) -> arx.Client:
    if real:
        return arx.Client()  # ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
    fake = testing.FakeAnthropic()
    story = "Once upon a time, a small robot learned to stream its thoughts, one word at a time."
    fake.add_stream(testing.text_reply(*re.findall(r"\S+\s*", story)), tokens_per_second=60)
    return fake.client()


async def main(real: bool) -> None:
    async with make_client(real) as client:
        events = client.stream(
            model=MODEL,
            max_tokens=1024,
            messages=[{"role": "user", "content": "Tell me a very short story."}],
        )
        text = events.pipe(ops.raise_on_error(), ops.text_deltas())
        words = 0
        async for chunk in arx.to_async_iterator(text):
            print(chunk, end="", flush=True)
            words += 1
        print()
        print(f"-- {words} text deltas")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
