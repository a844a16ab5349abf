"""A ``useChat`` front end reads our endpoint unchanged: the real ``ai`` package, under Node,
reads ``sinks.sse_response(format="ai-sdk")`` served by uvicorn over loopback."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from anthropic_rx import sinks, testing

from ._node import UiStream, read_ui_stream
from ._server import serve

pytestmark = pytest.mark.services


async def read_route(reply: testing.Reply) -> UiStream:
    fake = testing.FakeAnthropic()
    fake.add_stream(reply)
    client = fake.client(max_retries=0)

    async def chat(request: Request) -> Response:
        events = client.stream(
            model="claude-sonnet-4-5",
            max_tokens=256,
            messages=[{"role": "user", "content": "hi"}],
        )
        return sinks.sse_response(events, format="ai-sdk")

    app = Starlette(routes=[Route("/api/chat", chat, methods=["POST"])])
    async with client, serve(app) as running, asyncio.timeout(30):
        return await asyncio.to_thread(read_ui_stream, b"", f"{running.url}/api/chat", "{}")


async def test_the_ai_package_reads_text_thinking_and_a_tool_call_from_the_route() -> None:
    reply = (
        testing.Reply()
        .thinking("Let me ", "think", signature="sig")
        .text("Hello\n\ndata: x", ", world \u2028</script>")
        .tool_use("get_weather", {"city": "Paris", "days": 3}, fragment_size=5)
        .stop("tool_use")
    )
    read = await read_route(reply)
    assert read.headers is not None and read.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert read.done  # data: [DONE] ended the stream
    assert [p["text"] for p in read.parts("reasoning")] == ["Let me think"]
    assert [p["text"] for p in read.parts("text")] == ["Hello\n\ndata: x, world \u2028</script>"]
    (tool,) = read.parts("tool-get_weather")
    assert tool["state"] == "input-available"
    assert tool["input"] == {"city": "Paris", "days": 3}


async def test_the_ai_package_reads_a_mid_stream_error_from_the_route() -> None:
    read = await read_route(testing.Reply().text("partial").error("overloaded_error", "Overloaded"))
    assert [p["text"] for p in read.parts("text")] == ["partial"]
    assert any("overloaded_error" in str(error) for error in read.errors)
