"""Stop a reply mid-generation when the user presses Stop, by conversation id.

One task streams the reply (the chat request), another presses Stop a moment later (the Stop
button's request). They share only ``MemoryCancelFlags`` and the conversation id. The stream
completes cleanly, its HTTP response is closed, and the last snapshot says ``cancelled``.

Fake API by default; ``--real`` (or ``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import operators as ops
from anthropic_rx import testing
from anthropic_rx.cancel import MemoryCancelFlags

MODEL = "claude-sonnet-4-5"
flags = MemoryCancelFlags()  # one per process, shared by every request handler


async def chat(client: arx.Client, conversation_id: int, prompt: str) -> arx.Message | None:
    """The request that streams: shows text until the conversation's stop flag is set."""
    stop = flags.watch(f"stop-stream-{conversation_id}")
    snapshots = client.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
    ).pipe(ops.raise_on_error(), ops.take_until_cancel(stop), ops.accumulate())
    last: arx.Message | None = None
    shown = 0
    async for snapshot in arx.to_async_iterator(snapshots):
        last = snapshot
        text = "".join(b.text for b in snapshot.content if isinstance(b, arx.TextBlock))
        print(text[shown:], end="", flush=True)  # what this snapshot added
        shown = len(text)
    print()
    return last


async def stop_button(conversation_id: int) -> None:
    """The request behind the Stop button (any handler in the same process)."""
    await flags.request_stop(f"stop-stream-{conversation_id}")


async def main(real: bool) -> None:
    fake = testing.FakeAnthropic()
    words = [f"word{i} " for i in range(200)]
    fake.add_stream(testing.text_reply(*words), tokens_per_second=40)
    client = arx.Client() if real else fake.client()
    async with client:
        streaming = asyncio.create_task(chat(client, 7, "Count slowly to two hundred."))
        await asyncio.sleep(0.3 if not real else 2.0)
        await stop_button(7)
        message = await streaming
    assert message is not None
    print(f"cancelled: {message.cancelled}")
    if message.usage is not None:
        print(
            f"output tokens: {message.usage.output_tokens} (estimated: {message.usage.estimated})"
        )
    if not real:
        await fake.wait_closed()
        print(f"stopped early: {len(fake.requests) == 1 and fake.disconnects == 1}")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
