"""The demo's Starlette app: the chat page and the HTTP API of design §4.6.

- ``GET /``: the chat page (``static/index.html``; ``/static/*`` its script and style).
- ``GET /healthz``: ``{"ok": true}``.
- ``POST /api/conversations``: ``201 {"id"}``.
- ``GET /api/conversations``: ``[{"id", "title", "updated_at"}]``, the owner's, newest first.
- ``POST /api/conversations/{id}/messages`` ``{"content"}``: ``202 {"message_id"}``; ``409``
  ``{"error": "...still answering..."}`` while a reply streams; ``422`` on bad input.
- ``GET /api/conversations/{id}/stream``: SSE ``format="text"`` from the broadcaster,
  ``Last-Event-ID`` resumes; ``204`` when nothing streams or can be resumed. With arq jobs a
  reply the worker has not opened yet is waited for (at most ``2 * worker_timeout`` seconds,
  5 s by default); one no worker starts is answered with one ``event: error`` frame
  (``worker_unavailable``) in a 200 ``text/event-stream``, and its row ends ``failed``.
- ``POST /api/conversations/{id}/stop``: ``202``; the streaming reply ends ``cancelled``.
- ``GET /api/conversations/{id}/messages``: ``[{"id", "role", "content", "status",
  "stop_reason", "usage", "blocks", "error"}]`` (``content`` the text; ``blocks`` the content
  blocks as the API's JSON; ``error`` ``{"type", "message"}`` of a failed reply, else null).

Every browser gets a random ``arx_owner`` cookie (HttpOnly, SameSite=Lax) on its first
request; a conversation is found only with its owner's cookie: another browser gets ``404``,
as for an id that does not exist.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import sinks
from ._jobs import Busy, Jobs
from ._origin import OriginCheck
from ._settings import DemoSettings

__all__ = ["MAX_CONTENT", "OWNER_COOKIE", "create_app"]

OWNER_COOKIE = "arx_owner"
MAX_CONTENT = 20_000
STATIC = Path(__file__).parent / "static"
_BUSY = "The assistant is still answering in this conversation: wait for it, or press Stop."


class OwnerCookie:
    """ASGI middleware: ``scope["state"]["owner"]`` from the ``arx_owner`` cookie, or a new
    random one set on the response (streamed responses included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        owner = _cookie_owner(scope)
        fresh = owner is None
        if owner is None:
            owner = secrets.token_urlsafe(24)
        scope.setdefault("state", {})["owner"] = owner

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                cookie = f"{OWNER_COOKIE}={owner}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000"
                headers = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _cookie_owner(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            with contextlib.suppress(Exception):
                jar.load(value.decode("latin-1"))
            morsel = jar.get(OWNER_COOKIE)
            if morsel is not None and 8 <= len(morsel.value) <= 64:
                return morsel.value
    return None


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


def _owner(request: Request) -> str:
    owner: str = request.state.owner
    return owner


def _not_found() -> JSONResponse:
    return JSONResponse({"error": "no such conversation"}, status_code=404)


async def _owned(request: Request) -> str | None:
    """The path's conversation id when the requester owns it, else ``None`` (answer 404)."""
    cid = request.path_params["cid"]
    if not isinstance(cid, str) or not await _jobs(request).owns(_owner(request), cid):
        return None
    return cid


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def create_conversation(request: Request) -> Response:
    cid = await _jobs(request).create_conversation(_owner(request))
    return JSONResponse({"id": cid}, status_code=201)


async def list_conversations(request: Request) -> Response:
    rows = await _jobs(request).list_conversations(_owner(request))
    return JSONResponse(
        [{"id": r.id, "title": r.title, "updated_at": r.updated_at.isoformat()} for r in rows]
    )


async def _content(request: Request) -> str | Response:
    """The question of a POST body, or the 422 that refuses it."""
    try:
        body: Any = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return _invalid('the body must be JSON: {"content": "..."}')
    if not isinstance(body, dict) or "content" not in body:
        return _invalid("content is missing")
    content = body["content"]
    if not isinstance(content, str):
        return _invalid("content must be a string")
    if not content.strip():
        return _invalid("content is empty")
    if len(content) > MAX_CONTENT:
        return _invalid(f"content is longer than {MAX_CONTENT} characters")
    try:
        content.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON): no API can take it
        return _invalid("content must be valid Unicode text (it holds a lone surrogate)")
    return content


def _invalid(reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=422)


async def post_message(request: Request) -> Response:
    cid = await _owned(request)
    if cid is None:
        return _not_found()
    content = await _content(request)
    if isinstance(content, Response):
        return content
    try:
        message_id = await _jobs(request).ask(cid, content)
    except Busy:
        return JSONResponse({"error": _BUSY}, status_code=409)
    return JSONResponse({"message_id": message_id}, status_code=202)


async def stream(request: Request) -> Response:
    cid = await _owned(request)
    if cid is None:
        return _not_found()
    jobs = _jobs(request)
    last_event_id = request.headers.get("last-event-id") or None
    # Without Last-Event-ID (a page load) only a reply in progress is replayed: a finished
    # one is read from /messages. With it (an EventSource reconnecting) the broadcaster
    # resumes, or answers 204 when the reply had ended.
    if last_event_id is None:
        reply = await jobs.streaming_reply(cid)
        if reply is None:
            return Response(status_code=204, headers={"Cache-Control": "no-cache"})
        if jobs.queued:
            # The page asks right after the 202, before a worker has opened the channel:
            # until then the channel holds the reply before this one.
            problem = await jobs.wait_started(reply)
            if problem is not None:
                return _error_stream(*problem)
    replay = jobs.hub.subscribe(jobs.channel(cid), last_event_id=last_event_id)
    return sinks.sse_response(replay, format="text")


def _error_stream(kind: str, message: str) -> Response:
    """The SSE answer of a reply that cannot be followed: one ``event: error`` frame, in a 200
    (an EventSource reads no other status), as ``sinks.sse_response`` frames a stream's
    error."""
    data = json.dumps({"type": kind, "message": message}, ensure_ascii=False)
    body = f"retry: 1000\n\nevent: error\ndata: {data}\n\n".encode()
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(body, media_type="text/event-stream", headers=headers)


async def stop(request: Request) -> Response:
    cid = await _owned(request)
    if cid is None:
        return _not_found()
    await _jobs(request).stop(cid)
    return JSONResponse({"stopping": True}, status_code=202)


async def get_messages(request: Request) -> Response:
    cid = await _owned(request)
    if cid is None:
        return _not_found()
    rows = await _jobs(request).message_rows(cid)
    return JSONResponse([row.to_json() for row in rows])


def create_app(settings: DemoSettings | None = None) -> Starlette:
    """The demo app. ``settings`` default :meth:`DemoSettings.from_env`.

    Its lifespan opens the jobs (tables created, rows left ``streaming`` by a stopped process
    ended ``incomplete``) and, at shutdown, cancels the replies still running and closes the
    client, broadcaster, flags and database.
    """
    settings = settings if settings is not None else DemoSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        jobs = Jobs(settings)
        await jobs.open()
        app.state.jobs = jobs
        try:
            yield
        finally:
            await jobs.aclose()

    routes = [
        Route("/", page),
        Route("/healthz", healthz),
        Route("/api/conversations", create_conversation, methods=["POST"]),
        Route("/api/conversations", list_conversations, methods=["GET"]),
        Route("/api/conversations/{cid}/messages", post_message, methods=["POST"]),
        Route("/api/conversations/{cid}/messages", get_messages, methods=["GET"]),
        Route("/api/conversations/{cid}/stream", stream, methods=["GET"]),
        Route("/api/conversations/{cid}/stop", stop, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(OwnerCookie)
    # Outermost: a cross-origin POST is refused before anything (the cookie included) runs.
    app.add_middleware(OriginCheck, allowed_origins=settings.allowed_origins)
    return app
