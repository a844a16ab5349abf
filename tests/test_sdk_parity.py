"""Differential tests against the official ``anthropic`` SDK's stream helper.

For the same bytes, ``final_message(...).model_dump(mode="json", exclude_none=True)`` must equal
``client.messages.stream(...).get_final_message().model_dump(mode="json", exclude_none=True)``
wherever the SDK gives a message. Where the SDK raises, we give a complete message or the typed
error instead.

The fixture test always compares with ``tests/expected/*.json`` (written by
``scripts/make_sdk_expectations.py`` from the SDK); when the SDK is importable it also runs the
SDK live on the same bytes, so a stale expectation file fails too. The generated-stream test
needs the SDK and exists only when it is importable.
"""

from __future__ import annotations

import asyncio
import copy
import json
import warnings
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anthropic_rx as arx
from tests.conftest import FIXTURE_FILES, fixture_bytes
from tests.strategies import chunked, sse_streams, to_sse

EXPECTED = Path(__file__).parent / "expected"
SDK_AVAILABLE = find_spec("anthropic") is not None and find_spec("httpx2") is not None

Event = dict[str, Any]


def sdk_outcome(data: bytes, *, beta: bool = False) -> dict[str, Any]:
    """The SDK's final message for ``data``, or the class of what it raised and its snapshot.

    ``beta``: through the SDK's beta stream helper (``client.beta.messages.stream``).
    """
    import anthropic
    import httpx2

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = anthropic.Anthropic(api_key="k", http_client=http_client, max_retries=0)
    messages = client.beta.messages if beta else client.messages
    with (
        messages.stream(
            model="claude-rx-test", max_tokens=1024, messages=[{"role": "user", "content": "Hi"}]
        ) as stream,
        warnings.catch_warnings(),
    ):
        # The SDK stores a block type it does not know as a text block with extra fields, and
        # pydantic warns when it dumps one; the dump itself is still the data.
        warnings.filterwarnings(
            "ignore", message="Pydantic serializer warnings", category=UserWarning
        )
        try:
            message = stream.get_final_message()
        except Exception as exc:
            try:
                snapshot = stream.current_message_snapshot
            except AssertionError:
                partial = None
            else:
                partial = snapshot.model_dump(mode="json", exclude_none=True)
            return {"sdk_error": type(exc).__name__, "sdk_partial_message": partial}
        dumped = message.model_dump(mode="json", exclude_none=True)
    # The beta helper's fallback block dumps its ``from`` under both the alias and the name.
    for block in dumped["content"]:
        if block.get("type") == "fallback":
            block.pop("from_", None)
    return {"message": dumped}


async def ours(source: bytes | Iterable[bytes]) -> dict[str, Any]:
    message = await arx.final_message(arx.from_sse_bytes(source))
    return message.model_dump(mode="json", exclude_none=True)


# --- recorded fixtures -----------------------------------------------------------------------


def test_every_fixture_has_an_expectation() -> None:
    assert FIXTURE_FILES
    assert sorted(p.stem for p in EXPECTED.glob("*.json")) == [p.stem for p in FIXTURE_FILES]


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
async def test_fixture_matches_the_sdk(path: Path) -> None:
    data = fixture_bytes(path.name)
    expected = json.loads((EXPECTED / f"{path.stem}.json").read_text(encoding="utf-8"))
    if SDK_AVAILABLE:
        live = sdk_outcome(data)
        assert live == {k: v for k, v in expected.items() if k not in ("fixture", "sdk_version")}
    if "message" in expected:
        assert await ours(data) == expected["message"]
    elif expected["sdk_error"] == "APIStatusError":
        # An in-stream error event: the SDK raises; we raise the typed error with the same
        # snapshot the SDK held.
        with pytest.raises(arx.APIError) as caught:
            await ours(data)
        partial = caught.value.partial_message
        dumped = None if partial is None else partial.model_dump(mode="json", exclude_none=True)
        assert dumped == expected["sdk_partial_message"]
    else:
        # The SDK crashed on data it should accept; we finish the message it was building.
        assert await ours(data) == expected["sdk_partial_message"]


async def test_thinking_without_usage_is_a_complete_message() -> None:
    # The SDK raises AttributeError ('NoneType' object has no attribute 'output_tokens'):
    # message_start carries no usage, and its message_delta handler writes into usage.
    message = await arx.final_message(arx.from_sse_bytes(fixture_bytes("docs_thinking")))
    assert message.usage is None
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("name", "partial_text"),
    [("docs_error_only", None), ("docs_error_overloaded_midstream", "Hello")],
)
async def test_error_fixtures_raise_overloaded(name: str, partial_text: str | None) -> None:
    with pytest.raises(arx.OverloadedError) as caught:
        await arx.final_message(arx.from_sse_bytes(fixture_bytes(name)))
    error = caught.value
    assert error.status_code == 200
    assert error.error_type == "overloaded_error"
    assert error.message == "Overloaded"
    if partial_text is None:
        assert error.partial_message is None
    else:
        assert error.partial_message is not None
        assert error.partial_message.content == (arx.TextBlock(text=partial_text),)


# --- generated streams -----------------------------------------------------------------------

# Block types the SDK's GA stream helper knows; the generator's other block types are "future".
_SDK_BLOCKS = {
    "text",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "server_tool_use",
    "web_search_tool_result",
}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _normalise_unknown_blocks(dumped: dict[str, Any]) -> dict[str, Any]:
    """SDK difference, excluded narrowly: for a block type the SDK does not know, it keeps the
    block's nested objects as plain dicts, where ``exclude_none`` does not reach, so nulls
    inside them survive its dump (``{"payload": {"k": null}}``). We keep every nested object as
    a model, so ``exclude_none`` drops those nulls as it does inside known blocks. Only the
    unknown blocks' nested nulls are removed from the SDK's side."""
    result = copy.deepcopy(dumped)
    result["content"] = [
        block if block["type"] in _SDK_BLOCKS else _without_nulls(block)
        for block in result["content"]
    ]
    return result


def _with_start_usage(events: list[Event]) -> list[Event]:
    patched = copy.deepcopy(events)
    for event in patched:
        if event["type"] == "message_start":
            event["message"]["usage"] = {"input_tokens": 0, "output_tokens": 0}
    return patched


if SDK_AVAILABLE:

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(sse_streams(), st.data())
    def test_generated_streams_match_the_sdk(
        stream: tuple[list[Event], bytes], data: st.DataObject
    ) -> None:
        events, raw = stream
        chunks = data.draw(chunked(raw), label="chunks")
        mine = asyncio.run(ours(chunks))
        assert mine == asyncio.run(ours(raw))
        outcome = sdk_outcome(raw)
        if "message" in outcome:
            assert mine == _normalise_unknown_blocks(outcome["message"])
            return
        # SDK crash: message_start without usage, then a message_delta. Its handler assigns
        # ``snapshot.usage.output_tokens`` and raises AttributeError on None. We start usage
        # from the delta's counts, which is what the SDK gives when message_start had zeros.
        assert outcome["sdk_error"] == "AttributeError"
        start = next(e for e in events if e["type"] == "message_start")
        assert "usage" not in start["message"]
        assert any(e["type"] == "message_delta" for e in events)
        patched = sdk_outcome(to_sse(_with_start_usage(events)))
        assert "message" in patched
        assert mine == _normalise_unknown_blocks(patched["message"])


# --- fields beside the message's ------------------------------------------------------------


def _extra_fields_stream() -> bytes:
    """The SDK's extra-fields case: a field of the message, and one of the same name beside the
    message fields of ``message_delta`` (event level, not message data)."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-rx-test",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
            "private_field": {"nested": {"values": [1, 2]}},
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 2, "iterations": [{"type": "message", "output_tokens": 2}]},
        "private_field": {"nested": {"values": [6]}},
    }
    return to_sse(
        [
            start,
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
            {"type": "content_block_stop", "index": 0},
            delta,
            {"type": "message_stop"},
        ]
    )


async def test_event_level_extra_fields_do_not_overwrite_the_message() -> None:
    mine = await ours(_extra_fields_stream())
    assert mine["private_field"] == {"nested": {"values": [1, 2]}}
    # Usage fields the SDK's GA helper leaves out are message data all the same.
    assert mine["usage"]["iterations"] == [{"type": "message", "output_tokens": 2}]
    if SDK_AVAILABLE:
        outcome = sdk_outcome(_extra_fields_stream())
        assert outcome["message"]["private_field"] == {"nested": {"values": [1, 2]}}
        sdk = outcome["message"]
        assert {k: v for k, v in mine.items() if k != "usage"} == {
            k: v for k, v in sdk.items() if k != "usage"
        }
        beta = sdk_outcome(_extra_fields_stream(), beta=True)
        assert mine == beta["message"]
