"""The demo run as a process of its own (``python -m anthropic_rx.demo``, ``python -m
anthropic_rx demo``), as ``make demo`` and a user run it: started, waited for, asked, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..sinks._server import parse_sse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Anthropic variable (no key ever reaches a test's child)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC")}
    env.update(extra)
    return env


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


@dataclass
class DemoProcess:
    """A demo process and a client of it.

    ``children``: the pids of its children the test found (killed with it if it does not stop);
    ``stderr``: what it wrote there, once it has exited.
    """

    process: asyncio.subprocess.Process
    http: httpx.AsyncClient
    children: list[int] = field(default_factory=list)
    stderr: bytes = b""


@contextlib.asynccontextmanager
async def demo_process(
    *module: str,
    port: int,
    cwd: Path,
    env: dict[str, str],
    stop: signal.Signals,
    wait: float,
) -> AsyncIterator[DemoProcess]:
    """Run ``python -m <module...>`` in ``cwd`` with ``env`` (which sets its ``port``; its stdout
    is dropped, its stderr kept) and yield it once ``/healthz`` answers (within 30 s, else
    TimeoutError), with a client of it (``wait``: seconds a request of it may take).

    At exit, after the client is closed, a process still running is sent ``stop`` and must exit
    within 15 s: else it and its ``children`` are killed and TimeoutError is raised. Its exit
    status is the caller's to check (``process.returncode``, ``stderr``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *module,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = DemoProcess(
        process, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=wait)
    )
    try:
        async with running.http:
            await wait_healthy(running.http, process)
            yield running
    finally:
        if process.returncode is None:
            process.send_signal(stop)
        try:
            async with asyncio.timeout(15):
                _, running.stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            for pid in running.children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise


async def answer(http: httpx.AsyncClient, question: str, *, wait: float) -> str:
    """Ask ``question`` in a new conversation and GET its stream whole (within ``wait`` seconds,
    else TimeoutError): the reply's text. Fails unless the question is taken (202) and the
    stream ends ``done``."""
    cid = (await http.post("/api/conversations")).json()["id"]
    asked = await http.post(f"/api/conversations/{cid}/messages", json={"content": question})
    assert asked.status_code == 202
    async with asyncio.timeout(wait):
        stream = await http.get(f"/api/conversations/{cid}/stream")
    frames = parse_sse(stream.content)
    assert frames[-1].event == "done"
    return "".join(json.loads(f.data)["text"] for f in frames if f.event is None and f.data)
