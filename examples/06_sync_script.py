"""A plain synchronous script: ``for event in arx.to_iterator(events)``, no ``async`` anywhere.

``arx.to_iterator`` runs the stream on a private event loop that turns only while the loop body
waits for the next event, so the network is read as fast as the script takes events. Leaving
the ``with`` block (or ``break``) closes the HTTP response.

This is the guide's first recipe, event by event: text deltas are printed, the stop reason and
usage come from ``message_delta``. Each ``to_iterator`` stream runs on its own event loop, so
each gets its own ``Client`` here.

Fake API by default; ``--real`` (or ``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import re

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import testing

MODEL = "claude-sonnet-4-5"


def main(real: bool) -> None:
    fake = testing.FakeAnthropic()
    haiku = "Bytes cross the wire,\nevents bloom one by one,\nthe message is whole."
    fake.add_stream(testing.text_reply(*re.findall(r"\S+\s*", haiku)), tokens_per_second=80)
    client = arx.Client() if real else fake.client()
    events = client.stream(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "A haiku about streaming, please."}],
    )
    with arx.to_iterator(events) as iterator:
        for event in iterator:
            if isinstance(event, arx.ContentBlockDeltaEvent) and isinstance(
                event.delta, arx.TextDelta
            ):
                print(event.delta.text, end="", flush=True)
            elif isinstance(event, arx.MessageDeltaEvent):
                tokens = event.usage.output_tokens if event.usage else None
                print(f"\n-- stop reason: {event.delta.stop_reason}, output tokens: {tokens}")
            elif isinstance(event, arx.ErrorEvent):
                raise SystemExit(f"the API failed mid-stream: {event.error.message}")


if __name__ == "__main__":
    main(use_real_api(__doc__))
