"""A reply cut at any byte ends in a typed error or the whole message, never a hang, and
leaves no response open — through the whole client, clean EOF and dropped connection alike."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import anthropic_rx as arx
from anthropic_rx import testing
from tests.conftest import fixture_bytes

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}


@pytest.mark.parametrize("over", ["memory", "loopback"])
@pytest.mark.parametrize("how", ["truncate_after", "disconnect_after"])
@pytest.mark.parametrize("name", ["docs_basic_text", "docs_tool_use"])
async def test_every_cut_through_the_client(name: str, how: str, over: str) -> None:
    # In memory through the fake's httpx transport; over loopback through the client's own
    # HTTP/1.1 transport, so every cut also falls inside the chunked encoding somewhere.
    data = fixture_bytes(name)
    whole = await arx.final_message(arx.from_sse_bytes(data))
    fake = testing.FakeAnthropic()
    step = (1 if name == "docs_basic_text" else 5) * (3 if over == "loopback" else 1)
    offsets = list(range(0, len(data), step))
    for offset in offsets:
        if how == "truncate_after":
            fake.add_stream(data, chunk_size=64, truncate_after=offset)
        else:
            fake.add_stream(data, chunk_size=64, disconnect_after=offset)
    outcomes: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        if over == "loopback":
            base_url = await stack.enter_async_context(fake.serve())
            client = arx.Client(base_url=base_url, max_retries=0)
        else:
            client = arx.Client(transport=fake.transport, max_retries=0)
        await stack.enter_async_context(client)
        for offset in offsets:
            async with asyncio.timeout(5):  # never a hang
                try:
                    message = await arx.final_message(client.stream(**PARAMS))
                except (arx.IncompleteStreamError, arx.APIConnectionError) as error:
                    outcomes[type(error).__name__] = outcomes.get(type(error).__name__, 0) + 1
                    partial = error.partial_message
                    if partial is not None:  # what arrived is a prefix of the real reply
                        assert partial.id == whole.id
                        for got, full in zip(partial.content, whole.content, strict=False):
                            text = getattr(got, "text", None)
                            if text is not None:
                                assert getattr(full, "text", "").startswith(text), offset
                else:
                    # Only a cut after the last event can still give the message: the same one.
                    assert offset >= data.rindex(b"message_stop"), offset
                    assert message == whole
                    outcomes["complete"] = outcomes.get("complete", 0) + 1
        await fake.wait_closed()
    assert fake.open_streams == 0
    assert sum(outcomes.values()) == len(offsets)
    expected_error = "IncompleteStreamError" if how == "truncate_after" else "APIConnectionError"
    assert outcomes.get(expected_error, 0) > len(offsets) // 2
