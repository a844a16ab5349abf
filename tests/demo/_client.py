"""A browser-like client of a served demo app: the API calls the demo tests share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from ..sinks._server import Frame, parse_sse


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

    async def read_stream(self, cid: str) -> tuple[int, list[Frame]]:
        """GET the stream and read it to its end: its status and frames."""
        body = b""
        async with asyncio.timeout(self.wait):
            async with self.http.stream("GET", f"/api/conversations/{cid}/stream") as response:
                async for chunk in response.aiter_bytes():
                    body += chunk
                status = response.status_code
        return status, parse_sse(body, complete=False)
