"""``python -m anthropic_rx.demo`` (what ``make demo`` and ``anthropic-rx demo`` run) serves the
page and streams a reply with the embedded default: no API key, no Redis, SQLite in the
working directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

from ..sinks._server import parse_sse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(30):
        while True:
            assert process.returncode is None, "the demo exited before it served"
            try:
                response = await http.get("/healthz")
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            assert response.json() == {"ok": True}
            return


async def test_the_module_serves_the_page_and_streams_a_reply(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC")}
    env |= {"ANTHROPIC_RX_DEMO_PORT": str(port), "ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND": "2000"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anthropic_rx.demo",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await wait_healthy(http, process)
            page = await http.get("/")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
            assert 'id="composer"' in page.text
            cid = (await http.post("/api/conversations")).json()["id"]
            asked = await http.post(
                f"/api/conversations/{cid}/messages", json={"content": "hello demo"}
            )
            assert asked.status_code == 202
            async with asyncio.timeout(30):
                stream = await http.get(f"/api/conversations/{cid}/stream")
            frames = parse_sse(stream.content)
            assert frames[-1].event == "done"
            text = "".join(json.loads(f.data)["text"] for f in frames if f.event is None and f.data)
            assert "hello demo" in text  # the embedded fake answers the question
            assert len(text.split()) > 100  # the paced reply of about 200 words
        assert (tmp_path / "anthropic-rx-demo.db").exists()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(15):
                _, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            raise
    assert process.returncode == 0
    assert b"Traceback" not in stderr
