"""A reply cut at any byte offset, through the whole pipeline a queued job runs.

The fake API serves the reply over real loopback HTTP/1.1 and cuts it at the offset, either
cleanly (the body ends: ``truncate_after``) or by dropping the connection (``disconnect_after``).
The client's stream goes through ``sinks.relay`` into a ``MemoryBroadcaster`` and a
``DatabaseWriter`` on SQLite, and a live subscriber follows the channel. For every cut:

- the relay raises a typed error (``IncompleteStreamError`` for a clean end,
  ``APIConnectionError`` for a dropped connection), or returns the whole message when the cut
  falls after ``message_stop``;
- the subscriber ends with the same error class, after the same text;
- the row ends ``incomplete`` (clean end) or ``failed`` (dropped), with ``error_type`` set,
  and holds that same text;
- nothing hangs (each cut has five seconds), and no response or socket is left open.

A normal run cuts around every frame boundary, at each byte of the multi-byte characters, and
at every 17th offset; ``ANTHROPIC_RX_SOAK=1`` cuts at every offset.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

import anthropic_rx as arx
from anthropic_rx import sinks, testing
from anthropic_rx.sinks._database import DatabaseWriter

from ._common import API_KEY, PARAMS, SOAK, need_proc, socket_count

CUT_WAIT = 5.0  # seconds one cut may take, relay and subscriber together

REPLY = testing.text_reply(*(f"w{n} " for n in range(12)), "ünï ", "\u2028 ", "€nd")
DATA = REPLY.to_sse()
WHOLE_TEXT = "".join(f"w{n} " for n in range(12)) + "ünï \u2028 €nd"


def offsets(data: bytes) -> list[int]:
    """Where to cut: all of them in a soak; else around each frame boundary, at each byte of
    the multi-byte characters, and at every 17th byte."""
    if SOAK:
        return list(range(len(data) + 1))
    chosen = set(range(0, len(data) + 1, 17))
    start = 0
    while (end := data.find(b"\n\n", start)) != -1:
        for offset in (end - 1, end, end + 1, end + 2, end + 3):
            chosen.add(offset)
        start = end + 2
    for needle in ("ü".encode(), "\u2028".encode(), "€".encode()):
        at = data.index(needle)
        chosen.update(range(at, at + len(needle) + 1))
    return sorted(o for o in chosen if 0 <= o <= len(data))


def subscriber_text(items: list[sinks.Broadcast]) -> str:
    """The text a subscriber saw: its text deltas, in order."""
    parts: list[str] = []
    for item in items:
        event = item.event
        if isinstance(event, arx.ContentBlockDeltaEvent) and isinstance(event.delta, arx.TextDelta):
            parts.append(event.delta.text)
    return "".join(parts)


async def follow(
    hub: sinks.MemoryBroadcaster, channel: str
) -> tuple[list[sinks.Broadcast], object]:
    """Every item of a subscription to ``channel``; the error it ended with, or ``None``."""
    items: list[sinks.Broadcast] = []
    try:
        async for item in arx.to_async_iterator(hub.subscribe(channel)):
            items.append(item)
    except Exception as error:
        return items, error
    return items, None


@pytest.mark.parametrize("how", ["truncate_after", "disconnect_after"])
async def test_every_cut_ends_typed_alike_in_the_row_and_the_subscriber(
    how: str, tmp_path: Path
) -> None:
    need_proc()
    cuts = offsets(DATA)
    stop_at = DATA.rindex(b"event: message_stop")
    fake = testing.FakeAnthropic()
    hub = sinks.MemoryBroadcaster()
    writer = DatabaseWriter(f"sqlite+aiosqlite:///{tmp_path}/cuts.db", checkpoint_every=0.05)
    await writer.create_all()
    sockets_before = socket_count()
    outcomes: Counter[str] = Counter()
    try:
        async with (
            fake.serve() as base_url,
            arx.Client(base_url=base_url, api_key=API_KEY, max_retries=0) as client,
        ):
            for offset in cuts:
                if how == "truncate_after":
                    fake.add_stream(DATA, chunk_size=64, truncate_after=offset)
                else:
                    fake.add_stream(DATA, chunk_size=64, disconnect_after=offset)
                channel = f"cut.{how}.{offset}"
                async with asyncio.timeout(CUT_WAIT):  # never a hang
                    job = await sinks.start_relay(
                        client.stream(**PARAMS),
                        hub=hub,
                        channel=channel,
                        writer=writer,
                        message_id=f"m{offset}",
                    )
                    items, sub_error = await follow(hub, channel)
                    try:
                        message = await job
                    except (arx.IncompleteStreamError, arx.APIConnectionError) as error:
                        relay_error: Exception | None = error
                        message = error.partial_message
                    else:
                        relay_error = None
                    await fake.wait_closed()
                row = await writer.get(f"m{offset}")
                assert row is not None, offset
                seen = subscriber_text(items)
                partial = (
                    ""
                    if message is None
                    else "".join(getattr(block, "text", "") for block in message.content)
                )
                assert seen == row.text == partial, (offset, seen, row.text, partial)
                assert WHOLE_TEXT.startswith(seen), offset
                if relay_error is None:
                    # Only a cut after the last event still gives the whole reply.
                    assert offset > stop_at, offset
                    assert (row.status, seen, sub_error) == ("finished", WHOLE_TEXT, None)
                    outcomes["finished"] += 1
                    continue
                assert type(sub_error) is type(relay_error), (offset, sub_error, relay_error)
                if how == "truncate_after":
                    assert isinstance(relay_error, arx.IncompleteStreamError), offset
                    assert row.status == "incomplete", (offset, row.status)
                else:
                    assert isinstance(relay_error, arx.APIConnectionError), offset
                    assert row.status == "failed", (offset, row.status)
                assert row.error_type, (offset, row)
                outcomes[f"{type(relay_error).__name__}/{row.status}"] += 1
            assert fake.open_streams == 0
    finally:
        await writer.aclose()
        await hub.aclose()
    assert sum(outcomes.values()) == len(cuts)
    assert outcomes["finished"] < len(cuts) // 10  # most cuts fall inside the reply
    # Client pool and loopback server gone: the sockets are back to what they were.
    assert socket_count() <= sockets_before, (socket_count(), sockets_before)
    print(f"{how}: {len(cuts)} cuts of {len(DATA)} bytes: {dict(outcomes)}")
