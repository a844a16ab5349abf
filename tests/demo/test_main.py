"""``python -m anthropic_rx.demo`` (what ``make demo`` and ``anthropic-rx demo`` run) serves the
page and streams a reply with the embedded default: no API key, no Redis, SQLite in the
working directory."""

from __future__ import annotations

import signal
from pathlib import Path

from ._process import answer, clean_env, demo_process, free_port


async def test_the_module_serves_the_page_and_streams_a_reply(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(ANTHROPIC_RX_DEMO_PORT=str(port), ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND="2000")
    async with demo_process(
        "anthropic_rx.demo", port=port, cwd=tmp_path, env=env, stop=signal.SIGINT, wait=10
    ) as demo:
        page = await demo.http.get("/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert 'id="composer"' in page.text
        text = await answer(demo.http, "hello demo", wait=30)
        assert "hello demo" in text  # the embedded fake answers the question
        assert len(text.split()) > 100  # the paced reply of about 200 words
        assert (tmp_path / "anthropic-rx-demo.db").exists()
    assert demo.process.returncode == 0
    assert b"Traceback" not in demo.stderr
