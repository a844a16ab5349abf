"""Use aiostream's operators on a reply: ``arx.to_stream`` gives an aiostream ``Stream``.

The stream is cold like the Observable: each ``async with stream.stream()`` (or
``stream.list``) sends one request, and leaving the block closes its HTTP response, here after
the first five words (``pipe.take``).

Fake API by default; ``--real`` (or ``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio

from aiostream import pipe

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import operators as ops
from anthropic_rx import testing

MODEL = "claude-sonnet-4-5"


def shout(text: str) -> str:
    return text.upper()


async def main(real: bool) -> None:
    # With nothing queued, the fake echoes the prompt word by word, here 20 words a second.
    fake = testing.FakeAnthropic(default=testing.Echo(tokens_per_second=20))
    async with arx.Client() if real else fake.client() as client:
        events = client.stream(
            model=MODEL,
            max_tokens=256,
            messages=[{"role": "user", "content": "one two three four five six seven"}],
        )
        text = arx.to_stream(events.pipe(ops.raise_on_error(), ops.text_deltas()))
        loud = text | pipe.map(shout) | pipe.take(5)  # type: ignore[arg-type]
        async with loud.stream() as chunks:
            async for chunk in chunks:
                print(chunk, end="", flush=True)
        print()
    if not real:
        await fake.wait_closed()
        print(f"requests: {len(fake.requests)}, closed early: {fake.disconnects == 1}")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
