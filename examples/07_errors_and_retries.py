"""Errors, retries and timeouts, each provoked on purpose with the fake API.

- Before the first byte, connection errors and 408/409/429/5xx are retried (``max_retries``),
  honouring ``retry-after-ms`` / ``retry-after`` / ``x-should-retry``.
- After the stream opened nothing is retried; the error carries ``.partial_message``.
- Every error carries the response ``.meta`` (request id, rate limits) when a response arrived.

With ``--real`` (or ``ANTHROPIC_RX_REAL=1``) it provokes one real error instead: a request for
a model that does not exist (needs ``ANTHROPIC_API_KEY``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import testing

PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Hello"}],
}


def text_of(message: arx.Message | None) -> str:
    if message is None:
        return ""
    return "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))


async def with_the_fake() -> None:
    fake = testing.FakeAnthropic()
    reply = testing.text_reply("Hello", " there", " friend")
    cut = reply.to_sse().index(b"event: content_block_stop")  # after the three deltas
    async with fake.client(max_retries=2) as client:
        # 1. Overloaded, then a 500: both retried; the third answer streams.
        fake.add_error(529, headers={"retry-after-ms": "10"})
        fake.add_error(500, headers={"retry-after-ms": "10"})
        fake.add_stream(testing.text_reply("third time lucky"))
        message = await arx.final_message(client.stream(**PARAMS))
        print(f"retried twice, then: {text_of(message)!r} ({len(fake.requests)} requests)")

        # 2. Rate limited: typed, with the wait the API asked for and the rate-limit headers.
        fake.add_error(
            429, headers={"retry-after": "30", "anthropic-ratelimit-requests-remaining": "0"}
        )
        try:
            await arx.final_message(client.stream(**PARAMS, max_retries=0))
        except arx.RateLimitError as exc:
            limits = exc.meta.rate_limits if exc.meta else {}
            remaining = limits["requests"].remaining
            print(f"RateLimitError: retry after {exc.retry_after} s, {remaining} requests left")

        # 3. An error event after HTTP 200: typed by error.type, never retried.
        fake.add_stream(reply, error_after=(4, "overloaded_error", "Overloaded"))
        try:
            await arx.final_message(client.stream(**PARAMS))
        except arx.OverloadedError as exc:
            kept = text_of(exc.partial_message)
            print(f"OverloadedError mid-stream (status {exc.status_code}), kept {kept!r}")

        # 4. The body ends before message_stop: truncation is an error.
        fake.add_stream(reply, truncate_after=cut)
        try:
            await arx.final_message(client.stream(**PARAMS))
        except arx.IncompleteStreamError as exc:
            print(f"IncompleteStreamError, kept {text_of(exc.partial_message)!r}")

        # 5. The connection drops mid-body.
        fake.add_stream(reply, disconnect_after=cut)
        try:
            await arx.final_message(client.stream(**PARAMS))
        except arx.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__
            print(f"APIConnectionError ({cause}), kept {text_of(exc.partial_message)!r}")

        # 6. The API stalls, sending only pings: pings do not reset the idle timeout.
        fake.add_stream(reply, stall_after=cut, stall_ping_every=0.05)
        try:
            await arx.final_message(client.stream(**PARAMS, idle_timeout=0.3))
        except arx.APITimeoutError as exc:
            print(f"APITimeoutError kind={exc.kind}: {exc}, kept {text_of(exc.partial_message)!r}")

        # 7. No answer at all within the total timeout.
        fake.add_stream(reply, latency=5.0)
        try:
            await arx.final_message(client.stream(**PARAMS, timeout=0.2, max_retries=0))
        except arx.APITimeoutError as exc:
            print(f"APITimeoutError kind={exc.kind}")
    await fake.wait_closed()
    print(f"open responses left: {fake.open_streams}")


async def with_the_real_api() -> None:
    async with arx.Client() as client:
        try:
            await arx.final_message(client.stream(**{**PARAMS, "model": "claude-no-such-model"}))
        except arx.APIError as exc:
            print(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    asyncio.run(with_the_real_api() if use_real_api(__doc__) else with_the_fake())
