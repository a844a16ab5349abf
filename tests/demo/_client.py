"""A browser-like client of a served demo app: the API calls the demo tests share, and what
they read in the frames of a reply's stream."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from ..sinks._server import Frame, data_frames, parse_sse


def text_of(frames: list[Frame]) -> str:
    """The text of a reply's frames (its deltas', in order)."""
    return "".join(
        json.loads(f.data)["text"] for f in data_frames(frames) if f.event is None and f.data
    )


def terminal(frames: list[Frame]) -> Frame:
    """The one terminal frame (``done``, ``cancelled`` or ``error``); fails unless exactly one."""
    ends = [f for f in frames if f.event in ("done", "cancelled", "error")]
    assert len(ends) == 1, frames
    return ends[0]


@dataclass
class DemoClient:
    """The demo's HTTP API through ``http``, which holds the browser's owner cookie.

    ``wait``: seconds :meth:`settled` and :meth:`read_stream` may take before they fail.
    """

    http: httpx.AsyncClient
    wait: float = 5.0

    async def conversation(self) -> str:
        response = await self.http.post("/api/conversations")
        assert response.status_code == 201
        cid: str = response.json()["id"]
        return cid

    async def ask(self, cid: str, content: str) -> str:
        response = await self.http.post(
            f"/api/conversations/{cid}/messages", json={"content": content}
        )
        assert response.status_code == 202, response.text
        message_id: str = response.json()["message_id"]
        return message_id

    async def refused(self, cid: str, content: str) -> None:
        """Post ``content`` as a question the demo must refuse: 409, as one is still answered."""
        response = await self.http.post(
            f"/api/conversations/{cid}/messages", json={"content": content}
        )
        assert response.status_code == 409
        assert "still answering" in response.json()["error"]

    async def messages(self, cid: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/api/conversations/{cid}/messages")
        assert response.status_code == 200
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def settled(self, cid: str) -> list[dict[str, Any]]:
        """The messages once the last one no longer streams."""
        async with asyncio.timeout(self.wait):
            while True:
                rows = await self.messages(cid)
                if rows and rows[-1]["status"] != "streaming":
                    return rows
                await asyncio.sleep(0.02)

    async def read_stream(
        self, cid: str, *, last_event_id: str | None = None, stop_after: int | None = None
    ) -> tuple[int, list[Frame]]:
        """GET the stream (from ``last_event_id``, sent as ``Last-Event-ID``): its status and
        frames, read to its end, or until ``stop_after`` text frames came (the rest unread: the
        response is closed)."""
        headers = {"last-event-id": last_event_id} if last_event_id else {}
        body = b""
        async with asyncio.timeout(self.wait):
            async with self.http.stream(
                "GET", f"/api/conversations/{cid}/stream", headers=headers
            ) as response:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if stop_after is not None and _texts(body) >= stop_after:
                        break
                status = response.status_code
        return status, parse_sse(body, complete=False)

    async def read_reply(self, cid: str, text: str) -> list[Frame]:
        """:meth:`read_stream` to the end: its frames. Fails unless the stream is 200, its text is
        ``text`` and it ends ``done``."""
        status, frames = await self.read_stream(cid)
        assert status == 200
        assert text_of(frames) == text
        assert terminal(frames).event == "done"
        return frames


def _texts(body: bytes) -> int:
    """How many text frames the stream's ``body`` so far holds."""
    return len([f for f in parse_sse(body, complete=False) if f.data and f.event is None])
