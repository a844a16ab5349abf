"""Save the full message: finished, stopped by the user, or failed mid-stream.

- ``arx.final_message(events)`` awaits the complete message (and raises on an error event or
  a truncated stream).
- ``ops.accumulate()`` + ``reactivex.operators.last()`` give the last snapshot of a stream that
  may be stopped on purpose: it is marked ``cancelled`` and its usage ``estimated`` when the
  API had not reported it yet.
- Every error after the stream opened carries ``.partial_message``: what arrived is kept.

The rows go to an in-memory SQLite table. Fake API by default; ``--real`` (or
``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY`` (the failing run needs the fake).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3

import reactivex
from reactivex import operators as rx_ops

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import operators as ops
from anthropic_rx import testing

MODEL = "claude-sonnet-4-5"


def save(
    db: sqlite3.Connection, conversation: str, message: arx.Message | None, status: str
) -> None:
    content = message.model_dump(mode="json", exclude_none=True)["content"] if message else []
    usage = message.usage if message else None
    db.execute(
        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
        (
            conversation,
            message.id if message else None,
            json.dumps(content),
            status,
            usage.output_tokens if usage else None,
            usage.estimated if usage else None,
        ),
    )


def request(client: arx.Client, prompt: str) -> reactivex.Observable[arx.MessageStreamEvent]:
    return client.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
    )


async def finished(client: arx.Client, db: sqlite3.Connection) -> None:
    message = await arx.final_message(request(client, "Say hello."))
    save(db, "c-1", message, "finished")


async def stopped(client: arx.Client, db: sqlite3.Connection, after: float) -> None:
    stop = arx.CancelToken()
    last = request(client, "Count to one hundred.").pipe(
        ops.raise_on_error(),
        ops.take_until_cancel(stop),
        ops.accumulate(),
        rx_ops.last_or_default(),  # None when stopped before the first event
    )
    asyncio.get_running_loop().call_later(after, stop.cancel)  # the user presses Stop
    message = await last
    save(db, "c-2", message, "cancelled" if message and message.cancelled else "finished")


async def failed(client: arx.Client, db: sqlite3.Connection) -> None:
    try:
        await arx.final_message(request(client, "Tell me about overload."))
    except arx.AnthropicRxError as exc:
        save(db, "c-3", exc.partial_message, f"failed: {type(exc).__name__}")


async def main(real: bool) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("Hello", "!"))
    numbers = [f"{n}, " for n in range(1, 101)]
    fake.add_stream(testing.text_reply(*numbers), tokens_per_second=50)
    partial = testing.text_reply(*re.findall(r"\S+\s*", "Overload happens when a server"))
    fake.add_stream(partial, error_after=(5, "overloaded_error", "Overloaded"))

    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE messages (conversation, message_id, content, status, output_tokens,"
        " estimated)"
    )
    async with arx.Client() if real else fake.client() as client:
        await finished(client, db)
        await stopped(client, db, after=1.5 if real else 0.2)
        if not real:
            await failed(client, db)
    for conversation, _, content, status, tokens, estimated in db.execute(
        "SELECT * FROM messages ORDER BY conversation"
    ):
        blocks = json.loads(content)
        text = "".join(b.get("text", "") for b in blocks)
        shown = text if len(text) < 40 else text[:37] + "..."
        print(f"{conversation} {status:<30} tokens={tokens} estimated={bool(estimated)} {shown!r}")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
