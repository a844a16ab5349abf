"""RecordingTransport: streams saved as .sse files, replayed by the fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

import anthropic_rx as arx
from anthropic_rx import testing

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Hi"}],
}


async def test_record_then_replay(tmp_path: Path) -> None:
    live = testing.FakeAnthropic()
    reply = testing.Reply(id="msg_1").text("Hello", " there").tool_use("f", {"a": 1})
    live.add_stream(reply, chunk_size=11).add_error(529)
    recorder = testing.RecordingTransport(tmp_path / "recorded", transport=live.transport)

    async with arx.Client(transport=recorder, max_retries=0) as client:
        message = await arx.final_message(
            client.stream(model="m", max_tokens=8, messages=BODY["messages"])
        )
        async with httpx.AsyncClient(transport=recorder, base_url="http://fake.test") as http:
            error = await http.post("/v1/messages", json=BODY)

    assert error.status_code == 529  # not a stream: passed through, not recorded
    assert recorder.paths == [tmp_path / "recorded" / "0001.sse"]
    assert recorder.paths[0].read_bytes() == reply.to_sse()

    replay = testing.FakeAnthropic()
    replay.add_stream(recorder.paths[0])
    async with replay.client() as client:
        replayed = await arx.final_message(
            client.stream(model="m", max_tokens=8, messages=BODY["messages"])
        )
    assert replayed == message == reply.message()


async def test_a_body_closed_early_is_recorded_as_far_as_it_was_read(tmp_path: Path) -> None:
    live = testing.FakeAnthropic()
    reply = testing.text_reply("a", "b", "c")
    live.add_stream(reply)
    recorder = testing.RecordingTransport(tmp_path, transport=live.transport)

    async with (
        httpx.AsyncClient(transport=recorder, base_url="http://fake.test") as http,
        http.stream("POST", "/v1/messages", json=BODY) as response,
    ):
        first = await anext(response.aiter_raw())

    assert recorder.paths[0].read_bytes() == first
    assert first == testing.sse_bytes(reply.events()[:1])
    await live.wait_closed()
    assert live.disconnects == 1
