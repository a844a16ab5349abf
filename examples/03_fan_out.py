"""One request, several consumers: show the text in every open tab and save the message.

``reactivex.operators.share()`` turns the cold stream (one HTTP request per subscription) into
one request whose events go to every subscriber. Here a background job sends each text chunk to
two open browser tabs (stand-ins: two ``asyncio.Queue``) and, from the same request, saves the
final message.

Fake API by default; ``--real`` (or ``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio
import re

from reactivex import operators as rx_ops

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import operators as ops
from anthropic_rx import testing

MODEL = "claude-sonnet-4-5"
Tab = asyncio.Queue[str | None]  # None: the reply ended


async def ask_claude_job(
    client: arx.Client, prompt: str, tabs: list[Tab], saved: dict[str, str]
) -> None:
    """The background job: one request, fanned out to the tabs and to the saved copy."""
    events = client.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
    ).pipe(ops.raise_on_error(), rx_ops.share())

    async def send_to_tabs() -> None:
        try:
            async for chunk in arx.to_async_iterator(events.pipe(ops.text_deltas())):
                for tab in tabs:
                    tab.put_nowait(chunk)
        finally:
            for tab in tabs:
                tab.put_nowait(None)

    async def save() -> None:
        message = await arx.final_message(events)
        saved["content"] = "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))
        saved["status"] = "finished"

    # Both subscribe before the first event arrives (it comes from a task on the event loop).
    await asyncio.gather(send_to_tabs(), save())


async def browser_tab(name: str, tab: Tab) -> None:
    shown = ""
    while (chunk := await tab.get()) is not None:
        shown += chunk
    print(f"{name} showed: {shown}")


async def main(real: bool) -> None:
    fake = testing.FakeAnthropic()
    reply = "Streams are sequences of events over time."
    fake.add_stream(testing.text_reply(*re.findall(r"\S+\s*", reply)), tokens_per_second=100)
    client = arx.Client() if real else fake.client()
    tabs: list[Tab] = [asyncio.Queue(), asyncio.Queue()]
    saved: dict[str, str] = {}
    async with client:
        await asyncio.gather(
            ask_claude_job(client, "What is a stream? One sentence.", tabs, saved),
            browser_tab("tab 1", tabs[0]),
            browser_tab("tab 2", tabs[1]),
        )
    print(f"saved ({saved['status']}): {saved['content']}")
    if not real:
        print(f"requests sent: {len(fake.requests)}")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
