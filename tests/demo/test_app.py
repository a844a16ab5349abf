"""The demo app over its HTTP API (design §4.6): served by uvicorn on 127.0.0.1 where a reply
streams, in memory (``httpx.ASGITransport``) where none does. Every reply comes from a
:class:`~anthropic_rx.testing.FakeAnthropic` the test queues replies on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from anthropic_rx import testing
from anthropic_rx.demo import DemoSettings, create_app

from .._services import redis_url, unique_prefix
from ..sinks._server import serve
from ._client import DemoClient, terminal, text_of

WAIT = 5.0


def words(count: int) -> list[str]:
    return [f"w{i} " for i in range(count)]


@dataclass
class Demo(DemoClient):
    """The demo served on loopback, and a browser-like client holding its cookie."""

    url: str = ""
    fake: testing.FakeAnthropic = field(default_factory=testing.FakeAnthropic)


def settings(tmp_path: Path, fake: testing.FakeAnthropic, **options: Any) -> DemoSettings:
    return DemoSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db",
        fake=fake,
        tokens_per_second=500,
        **options,
    )


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, fake: testing.FakeAnthropic, **options: Any
) -> AsyncIterator[Demo]:
    app = create_app(settings(tmp_path, fake, **options))
    async with serve(app, lifespan="on") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            yield Demo(http, WAIT, server.url, fake)


# --- routes without streaming ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def in_memory(
    tmp_path: Path, fake: testing.FakeAnthropic
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app (its lifespan run) and a client of it in memory, for routes that do not stream."""
    app = create_app(settings(tmp_path, fake))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
            yield app, http


async def test_page_health_and_static_files(tmp_path: Path) -> None:
    async with in_memory(tmp_path, testing.FakeAnthropic()) as (_app, http):
        page = await http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for needle in (
            'id="new-conversation"',
            'id="conversations"',
            'id="composer"',
            'id="prompt"',
            'id="send"',
            'id="stop"',
            'id="messages"',
            'id="notice"',
        ):
            assert needle in page.text
        assert (await http.get("/healthz")).json() == {"ok": True}
        script = await http.get("/static/app.js")
        assert script.status_code == 200 and "EventSource" in script.text
        assert "innerHTML" not in script.text
        assert (await http.get("/static/style.css")).status_code == 200


async def test_the_owner_cookie_is_set_once_and_http_only(tmp_path: Path) -> None:
    async with in_memory(tmp_path, testing.FakeAnthropic()) as (_app, http):
        first = await http.get("/healthz")
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("arx_owner=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        again = await http.get("/healthz")
        assert "set-cookie" not in again.headers


async def test_conversations_are_created_listed_and_private(tmp_path: Path) -> None:
    async with in_memory(tmp_path, testing.FakeAnthropic()) as (app, http):
        created = await http.post("/api/conversations")
        assert created.status_code == 201
        cid = created.json()["id"]
        assert len(cid) >= 20
        other = (await http.post("/api/conversations")).json()["id"]
        assert other != cid
        listed = (await http.get("/api/conversations")).json()
        assert {row["id"] for row in listed} == {cid, other}
        assert set(listed[0]) == {"id", "title", "updated_at"}
        assert (await http.get(f"/api/conversations/{cid}/messages")).json() == []

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://demo"
        ) as stranger:
            assert (await stranger.get("/api/conversations")).json() == []
            for method, path, body in (
                ("GET", f"/api/conversations/{cid}/messages", None),
                ("POST", f"/api/conversations/{cid}/messages", {"content": "hi"}),
                ("GET", f"/api/conversations/{cid}/stream", None),
                ("POST", f"/api/conversations/{cid}/stop", None),
                ("GET", "/api/conversations/no-such-id/messages", None),
            ):
                response = await stranger.request(method, path, json=body)
                assert response.status_code == 404, (method, path)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"content": 42}',
        b'{"content": null}',
        b'{"content": ""}',
        b'{"content": "   \\n "}',
        json.dumps({"content": "x" * 20_001}).encode(),
    ],
)
async def test_bad_input_is_422_and_nothing_is_asked(tmp_path: Path, body: bytes) -> None:
    fake = testing.FakeAnthropic()
    async with in_memory(tmp_path, fake) as (_app, http):
        cid = (await http.post("/api/conversations")).json()["id"]
        response = await http.post(
            f"/api/conversations/{cid}/messages",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422
        assert isinstance(response.json()["error"], str)
        assert (await http.get(f"/api/conversations/{cid}/messages")).json() == []
    assert fake.requests == []


async def test_nothing_streaming_is_204(tmp_path: Path) -> None:
    async with in_memory(tmp_path, testing.FakeAnthropic()) as (_app, http):
        cid = (await http.post("/api/conversations")).json()["id"]
        assert (await http.get(f"/api/conversations/{cid}/stream")).status_code == 204
        stop = await http.post(f"/api/conversations/{cid}/stop")
        assert stop.status_code == 202


# --- replies ---------------------------------------------------------------------------------


async def test_a_reply_streams_and_is_stored(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    parts = words(30)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=50)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        mid = await demo.ask(cid, "What is streaming?")
        frames = await demo.read_reply(cid, "".join(parts))
        assert json.loads(terminal(frames).data or "")["stop_reason"] == "end_turn"
        ids = [int(f.id) for f in frames if f.id is not None]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)

        rows = await demo.settled(cid)
        assert [(r["role"], r["status"]) for r in rows] == [
            ("user", "finished"),
            ("assistant", "finished"),
        ]
        user, reply = rows
        assert user["content"] == "What is streaming?"
        assert reply["id"] == mid and reply["content"] == "".join(parts)
        assert reply["stop_reason"] == "end_turn"
        assert reply["usage"] == {"input_tokens": 10, "output_tokens": 30}
        assert set(reply) >= {"id", "role", "content", "status", "stop_reason", "usage"}
        listed = (await demo.http.get("/api/conversations")).json()
        assert listed[0]["id"] == cid and listed[0]["title"] == "What is streaming?"
        # A finished reply is read from /messages: the stream has nothing more.
        assert (await demo.http.get(f"/api/conversations/{cid}/stream")).status_code == 204
    assert fake.requests[0].json["messages"] == [{"role": "user", "content": "What is streaming?"}]


async def test_the_next_question_carries_the_history(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("First ", "answer."), tokens_per_second=500)
    fake.add_stream(testing.text_reply("Second."), tokens_per_second=500)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "One")
        await demo.settled(cid)
        await demo.ask(cid, "Two")
        rows = await demo.settled(cid)
        assert [r["content"] for r in rows] == ["One", "First answer.", "Two", "Second."]
    assert fake.requests[1].json["messages"] == [
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Two"},
    ]


async def test_a_second_question_while_one_streams_is_409(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*words(40)), tokens_per_second=100)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "First")
        await demo.refused(cid, "Second")
        rows = await demo.settled(cid)
        assert [r["content"] for r in rows if r["role"] == "user"] == ["First"]
        # Another conversation is not busy.
        other = await demo.conversation()
        await demo.ask(other, "Elsewhere")
        await demo.settled(other)
    assert len(fake.requests) == 2


async def test_stop_ends_the_reply_cancelled(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    parts = words(200)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=50)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        mid = await demo.ask(cid, "Talk")

        async def stop_soon() -> None:
            await asyncio.sleep(0.3)
            response = await demo.http.post(f"/api/conversations/{cid}/stop")
            assert response.status_code == 202

        stopper = asyncio.create_task(stop_soon())
        status, frames = await demo.read_stream(cid)
        await stopper
        assert status == 200
        assert terminal(frames).event == "cancelled"
        shown = text_of(frames)
        assert shown and "".join(parts).startswith(shown) and len(shown) < len("".join(parts))
        rows = await demo.settled(cid)
        assert rows[-1]["id"] == mid and rows[-1]["status"] == "cancelled"
        assert rows[-1]["content"] == shown
        await fake.wait_closed()
    assert fake.disconnects == 1


async def test_a_reload_replays_and_last_event_id_resumes_without_duplicates(
    tmp_path: Path,
) -> None:
    fake = testing.FakeAnthropic()
    parts = words(60)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=100)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Keep talking")
        _, first = await demo.read_stream(cid, stop_after=10)
        seen = [f for f in first if f.data and f.event is None][:10]
        last_id = seen[-1].id
        assert last_id is not None

        _, resumed = await demo.read_stream(cid, last_event_id=last_id)
        assert text_of(seen) + text_of(resumed) == "".join(parts)
        assert terminal(resumed).event == "done"

    # A reload while it streams replays the whole reply so far (no Last-Event-ID).
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=100)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Again")
        await asyncio.sleep(0.2)
        _, replayed = await demo.read_stream(cid)
        assert text_of(replayed) == "".join(parts)
        # A reconnect after the reply's end has nothing to resume.
        end_id = terminal(replayed).id
        assert (
            await demo.http.get(
                f"/api/conversations/{cid}/stream", headers={"last-event-id": end_id or ""}
            )
        ).status_code == 204


async def test_an_overloaded_error_fails_the_reply_readably(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    fake.add_error(529, "overloaded_error", "busy")
    async with running(tmp_path, fake, max_retries=0) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Are you there?")
        rows = await demo.settled(cid)
        assert [(r["role"], r["status"]) for r in rows] == [
            ("user", "finished"),
            ("assistant", "failed"),
        ]
        assert rows[-1]["error"] == {"type": "overloaded_error", "message": "busy"}
        # A stream that resumes before the end gets the error frame, readable.
        status, frames = await demo.read_stream(cid, last_event_id="0")
        assert status == 200
        end = terminal(frames)
        assert end.event == "error"
        assert json.loads(end.data or "") == {"type": "overloaded_error", "message": "busy"}
        # The question can be asked again (the failed exchange is not sent as history).
        fake.add_stream(testing.text_reply("Back."), tokens_per_second=500)
        await demo.ask(cid, "Are you there?")
        rows = await demo.settled(cid)
        assert rows[-1]["status"] == "finished" and rows[-1]["content"] == "Back."
    assert fake.requests[-1].json["messages"] == [{"role": "user", "content": "Are you there?"}]


async def test_an_error_mid_stream_is_an_error_frame(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(
        testing.text_reply(*words(20)),
        tokens_per_second=100,
        error_after=(8, "overloaded_error", "Overloaded"),
    )
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Hello")
        status, frames = await demo.read_stream(cid, last_event_id="0")
        assert status == 200
        end = terminal(frames)
        assert end.event == "error"
        assert json.loads(end.data or "") == {"type": "overloaded_error", "message": "Overloaded"}
        rows = await demo.settled(cid)
        assert rows[-1]["status"] == "failed" and rows[-1]["content"] == text_of(frames)


async def test_model_text_is_stored_and_sent_as_text(tmp_path: Path) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(hostile[:10], hostile[10:]), tokens_per_second=10)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, hostile)
        # From the start ("0" is before the memory broadcaster's first id), however fast
        # the reply was.
        status, frames = await demo.read_stream(cid, last_event_id="0")
        assert status == 200 and text_of(frames) == hostile
        rows = await demo.settled(cid)
        assert [r["content"] for r in rows] == [hostile, hostile]
        response = await demo.http.get(f"/api/conversations/{cid}/messages")
        assert response.headers["content-type"].startswith("application/json")


async def test_conversations_survive_a_restart(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("Saved ", "answer."), tokens_per_second=500)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Remember this")
        before = await demo.settled(cid)
        cookies = dict(demo.http.cookies)
    async with running(tmp_path, fake) as demo:
        demo.http.cookies.update(cookies)
        assert await demo.messages(cid) == before
        assert [row["id"] for row in (await demo.http.get("/api/conversations")).json()] == [cid]
    async with running(tmp_path, fake) as demo:  # another browser
        assert (await demo.http.get(f"/api/conversations/{cid}/messages")).status_code == 404


async def test_a_reply_cut_by_shutdown_is_incomplete_after_restart(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*words(200)), tokens_per_second=50)
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Long")
        await asyncio.sleep(0.3)
        cookies = dict(demo.http.cookies)
    async with running(tmp_path, fake) as demo:
        demo.http.cookies.update(cookies)
        rows = await demo.messages(cid)
        assert rows[-1]["status"] == "incomplete"
        assert (await demo.http.get(f"/api/conversations/{cid}/stream")).status_code == 204


async def test_no_lock_is_kept_for_a_conversation_once_its_question_is_asked(
    tmp_path: Path,
) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("One."), tokens_per_second=500)
    fake.add_stream(testing.text_reply("Two."), tokens_per_second=500)
    async with in_memory(tmp_path, fake) as (app, http):
        jobs = app.state.jobs
        for content in ("One", "Two"):
            cid = (await http.post("/api/conversations")).json()["id"]
            response = await http.post(
                f"/api/conversations/{cid}/messages", json={"content": content}
            )
            assert response.status_code == 202
            assert len(jobs._locks) == 0
        # Concurrent questions in one conversation share its lock while they wait for it.
        held = jobs._locks.held("c")
        async with held:
            waiting = asyncio.create_task(_hold(jobs._locks, "c"))
            await asyncio.sleep(0)
            assert len(jobs._locks) == 1 and not waiting.done()
        await waiting
        assert len(jobs._locks) == 0


async def _hold(locks: Any, key: str) -> None:
    async with locks.held(key):
        pass


async def test_the_embedded_fake_answers_about_200_words(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()  # its default (echo) is replaced by the paced answer
    async with running(tmp_path, fake) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Why is the sky blue?")
        rows = await demo.settled(cid)
    reply = rows[-1]["content"]
    assert rows[-1]["status"] == "finished"
    assert "Why is the sky blue?" in reply
    assert 150 <= len(reply.split()) <= 260


@pytest.mark.services
async def test_redis_with_tasks_streams_and_stops(tmp_path: Path) -> None:
    # The Redis broadcaster and flags with replies as tasks of this process (jobs="tasks"),
    # which a fake of this process answers; arq jobs are tests/demo/test_redis_mode.py's.
    fake = testing.FakeAnthropic()
    parts = words(200)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=50)
    fake.add_stream(testing.text_reply("Short."), tokens_per_second=500)
    options: dict[str, Any] = {"redis_url": redis_url(), "jobs": "tasks"}
    async with running(tmp_path, fake, redis_prefix=unique_prefix(), **options) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "Talk")
        _, frames = await demo.read_stream(cid, stop_after=5)
        first = [f for f in frames if f.data and f.event is None][:5]
        assert text_of(first) == "".join(parts[:5])
        assert "-" in (first[-1].id or "")  # Redis stream ids
        assert (await demo.http.post(f"/api/conversations/{cid}/stop")).status_code == 202
        _, rest = await demo.read_stream(cid, last_event_id=first[-1].id)
        assert terminal(rest).event == "cancelled"
        rows = await demo.settled(cid)
        assert rows[-1]["status"] == "cancelled"
        assert rows[-1]["content"] == text_of(first) + text_of(rest)
        await demo.ask(cid, "Again")
        rows = await demo.settled(cid)
        assert rows[-1]["content"] == "Short."
