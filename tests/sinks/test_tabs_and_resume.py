"""A reply in every browser tab, resumable, stoppable: the SSE response over a broadcaster.

The app is the one of ``docs/sse.md``'s resumable recipe: ``POST .../messages`` starts a reply as
a job publishing on the conversation's channel, ``GET .../stream`` answers each browser with a
subscription (``Last-Event-ID`` resumes), ``POST .../stop`` sets the reply's cancel flag. The
model is the fake API over real loopback HTTP; the browsers are raw-socket readers that parse
the frames strictly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import anthropic_rx as arx
from anthropic_rx import cancel, sinks, testing
from anthropic_rx import operators as ops

from ._server import Frame, RawClient, data_frames, eventually, serve

WORDS = [f"word{i} " for i in range(40)]
HOSTILE = ["a\n\ndata: injected\n\n", "b\r\nid: 999\r\n", "c\u2028d", "</script><img onerror=x>"]


@dataclass
class Chat:
    fake: testing.FakeAnthropic
    port: int
    hub: sinks.MemoryBroadcaster
    opened: list[RawClient]

    async def open(self, path: str, **options: Any) -> RawClient:
        client = await RawClient.open(self.port, path, **options)
        self.opened.append(client)
        return client

    async def ask(self, cid: str = "c1") -> int:
        client = await self.open(f"/c/{cid}/messages", method="POST", body=b'{"content": "hi"}')
        await body_of(client)
        return client.status

    async def browser(
        self, cid: str = "c1", last_event_id: str | None = None, **options: int
    ) -> RawClient:
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        client = await self.open(f"/c/{cid}/stream", headers=headers, **options)
        await client.read_head()
        return client


async def body_of(client: RawClient) -> bytes:
    """The whole body of a response whose head was not read yet."""
    await client.read_head()
    while not client.ended:
        await client.read_some()
    return client.body


def texts(frames: list[Frame]) -> list[str]:
    return [json.loads(f.data)["text"] for f in data_frames(frames) if f.event is None and f.data]


def terminal(frames: list[Frame]) -> Frame | None:
    ends = [f for f in frames if f.event in ("done", "cancelled", "error")]
    assert len(ends) <= 1, f"more than one terminal frame: {ends}"
    return ends[0] if ends else None


def app_for(client: arx.Client, hub: sinks.MemoryBroadcaster) -> Starlette:
    flags = cancel.MemoryCancelFlags()

    async def ask(request: Request) -> Response:
        cid = request.path_params["cid"]
        content = (await request.json())["content"]
        events = client.stream(
            model="claude-sonnet-4-5",
            max_tokens=256,
            messages=[{"role": "user", "content": content}],
        ).pipe(ops.take_until_cancel(flags.watch(f"stop-{cid}")))
        try:
            await hub.start(f"conversation.{cid}", events)
        except sinks.ChannelBusyError:
            return JSONResponse({"error": "a reply is streaming"}, status_code=409)
        return JSONResponse({"ok": True}, status_code=202)

    async def stream(request: Request) -> Response:
        replay = hub.subscribe(
            f"conversation.{request.path_params['cid']}",
            last_event_id=request.headers.get("last-event-id"),
        )
        return sinks.sse_response(replay, ping=1.0)

    async def stop(request: Request) -> Response:
        await flags.request_stop(f"stop-{request.path_params['cid']}")
        return JSONResponse({"ok": True}, status_code=202)

    return Starlette(
        routes=[
            Route("/c/{cid}/messages", ask, methods=["POST"]),
            Route("/c/{cid}/stream", stream),
            Route("/c/{cid}/stop", stop, methods=["POST"]),
        ]
    )


@pytest.fixture
async def chat() -> AsyncIterator[Chat]:
    fake = testing.FakeAnthropic()
    hub = sinks.MemoryBroadcaster()
    async with fake.serve() as base_url:
        client = arx.Client(base_url=base_url, api_key="sk-test-key-0000", max_retries=0)
        async with client, serve(app_for(client, hub)) as running:
            chat = Chat(fake, running.port, hub, [])
            try:
                yield chat
            finally:
                for opened in chat.opened:
                    await opened.close()
            await fake.wait_closed()


async def test_every_tab_gets_the_whole_reply_whenever_it_joins(chat: Chat) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    assert await chat.ask() == 202
    early = await chat.browser()
    first = await early.read_until(lambda frames: len(texts(frames)) >= 10)
    late = await chat.browser()  # joins mid-reply: replay, then live
    early_frames = await early.read_to_end()
    late_frames = await late.read_to_end()
    assert len(texts(first)) >= 10
    for frames in (early_frames, late_frames):
        assert "".join(texts(frames)) == "".join(WORDS)
        end = terminal(frames)
        assert end is not None and end.event == "done"
        assert json.loads(end.data or "")["stop_reason"] == "end_turn"
    assert [f.id for f in data_frames(early_frames)] == [f.id for f in data_frames(late_frames)]
    assert len(chat.fake.requests) == 1  # one model request for every tab


async def test_a_reconnect_with_last_event_id_continues_without_duplicating_text(
    chat: Chat,
) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    await chat.ask()
    tab = await chat.browser()
    before = data_frames(await tab.read_until(lambda frames: len(texts(frames)) >= 7))
    await tab.close()  # the connection drops mid-reply
    last_id = before[-1].id
    assert last_id is not None
    again = await chat.browser(last_event_id=last_id)
    after = data_frames(await again.read_to_end())
    ids = [int(f.id or "") for f in before + after]
    assert ids == sorted(set(ids)), "an id twice, or out of order"
    assert "".join(texts(before) + texts(after)) == "".join(WORDS)


async def test_a_reload_without_last_event_id_replays_the_reply_so_far(chat: Chat) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    await chat.ask()
    tab = await chat.browser()
    await tab.read_until(lambda frames: len(texts(frames)) >= 5)
    await tab.close()
    reloaded = await chat.browser()
    assert "".join(texts(await reloaded.read_to_end())) == "".join(WORDS)


async def test_a_reconnect_after_the_end_gets_204(chat: Chat) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS[:5]))
    await chat.ask()
    frames = await (await chat.browser()).read_to_end()
    end = terminal(frames)
    assert end is not None and end.id is not None
    reconnect = await chat.browser(last_event_id=end.id)
    assert reconnect.status == 204  # EventSource stops reconnecting: no second generation
    assert len(chat.fake.requests) == 1


async def test_an_unknown_conversation_is_204(chat: Chat) -> None:
    tab = await chat.browser("nobody")
    assert tab.status == 204
    assert chat.fake.requests == []


async def test_stop_ends_every_tab_with_cancelled_and_closes_the_model_request(
    chat: Chat,
) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS * 10), tokens_per_second=50)
    await chat.ask()
    tabs = [await chat.browser(), await chat.browser()]
    for tab in tabs:
        await tab.read_until(lambda frames: len(texts(frames)) >= 3)
    stop = await chat.open("/c/c1/stop", method="POST")
    await body_of(stop)
    assert stop.status == 202
    for tab in tabs:
        frames = await tab.read_to_end()
        end = terminal(frames)
        assert end is not None and end.event == "cancelled"
        body = json.loads(end.data or "")
        assert body["usage_estimated"] is True and body["usage"]["output_tokens"] > 0
        assert 3 <= len(texts(frames)) < len(WORDS * 10)
    await chat.fake.wait_closed()
    assert chat.fake.disconnects == 1  # the model request was closed, not read to its end


async def test_a_second_question_while_one_streams_is_409_and_makes_no_request(
    chat: Chat,
) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=100)
    assert await chat.ask() == 202
    assert await chat.ask() == 409
    frames = await (await chat.browser()).read_to_end()
    assert "".join(texts(frames)) == "".join(WORDS)
    assert len(chat.fake.requests) == 1
    chat.fake.add_stream(testing.text_reply("next"))
    assert await chat.ask() == 202  # the reply ended: the conversation takes the next one
    assert "".join(texts(await (await chat.browser()).read_to_end())) == "next"


async def test_hostile_text_cannot_add_or_split_frames_through_the_broadcaster(
    chat: Chat,
) -> None:
    chat.fake.add_stream(testing.text_reply(*HOSTILE))
    await chat.ask()
    frames = await (await chat.browser()).read_to_end()  # parse_sse is strict: LF, one field
    assert texts(frames) == HOSTILE
    assert all(f.event in (None, "done") for f in data_frames(frames))


async def test_an_overloaded_error_reaches_every_tab_as_one_error_frame(chat: Chat) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS[:4]).error("overloaded_error", "Overloaded"))
    await chat.ask()
    frames = await (await chat.browser()).read_to_end()
    end = terminal(frames)
    assert end is not None and end.event == "error"
    assert json.loads(end.data or "") == {"type": "overloaded_error", "message": "Overloaded"}
    replay = await chat.open("/c/c1/stream")
    assert "sk-test-key-0000" not in (await body_of(replay)).decode()


async def test_a_tab_that_leaves_does_not_stop_the_reply_for_the_others(chat: Chat) -> None:
    chat.fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    await chat.ask()
    leaving, staying = await chat.browser(), await chat.browser()
    await leaving.read_until(lambda frames: len(texts(frames)) >= 2)
    await leaving.close()
    assert "".join(texts(await staying.read_to_end())) == "".join(WORDS)
    await eventually(lambda: chat.fake.open_streams == 0, 2.0)
    assert chat.fake.disconnects == 0  # the model request was read to its end
