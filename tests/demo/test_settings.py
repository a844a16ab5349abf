"""The demo's settings, its entry point, and the choice of API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import anthropic_rx.demo
from anthropic_rx import sinks, testing
from anthropic_rx.demo import DemoSettings, create_app
from anthropic_rx.demo._fake_reply import PacedAnswer, answer_text


def test_from_env_reads_every_variable() -> None:
    settings = DemoSettings.from_env(
        {
            "ANTHROPIC_RX_DATABASE_URL": "sqlite+aiosqlite:///x.db",
            "ANTHROPIC_RX_REDIS_URL": "redis://127.0.0.1:6379/1",
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND": "12.5",
            "ANTHROPIC_RX_DEMO_PORT": "8123",
            "ANTHROPIC_RX_DEMO_MODEL": "claude-haiku-4-5",
        }
    )
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert settings.redis_url == "redis://127.0.0.1:6379/1"
    assert settings.api_key == "sk-ant-test"
    assert settings.tokens_per_second == 12.5
    assert settings.port == 8123 and settings.host == "127.0.0.1"
    assert settings.model == "claude-haiku-4-5"
    assert settings.fake is None


def test_from_env_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = DemoSettings.from_env({"ANTHROPIC_RX_REDIS_URL": "  "})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'anthropic-rx-demo.db'}"
    assert settings.redis_url is None and settings.api_key is None
    assert settings.tokens_per_second == 30 and settings.port == 8000


@pytest.mark.parametrize("options", [{"tokens_per_second": 0}, {"port": 70000}])
def test_out_of_range_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        DemoSettings(**options)


def test_run_serves_with_uvicorn_on_the_settings_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    anthropic_rx.demo.run(DemoSettings(port=8765, database_url="sqlite+aiosqlite:///:memory:"))
    assert calls and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8765


async def test_an_api_key_switches_to_the_real_api(tmp_path: Path) -> None:
    app = create_app(
        DemoSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/d.db", api_key="sk-ant-test")
    )
    async with app.router.lifespan_context(app):
        jobs = app.state.jobs
        assert jobs.fake is None
        assert isinstance(jobs.hub, sinks.MemoryBroadcaster)


async def test_a_given_fake_keeps_its_own_default(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic(default=testing.text_reply("Mine."))
    app = create_app(DemoSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/d.db", fake=fake))
    async with app.router.lifespan_context(app):
        assert app.state.jobs.fake is fake
    assert isinstance(fake.default, testing.Reply)


def test_the_fake_answer_names_the_question_and_is_about_200_words() -> None:
    text = answer_text("What   is\nSSE?")
    assert text.startswith('You asked: "What is SSE?". ')
    assert 150 <= len(text.split()) <= 260
    assert len(answer_text("x" * 500).split('"')[1]) <= 80
    assert not answer_text("").startswith("You asked")


def test_the_paced_answer_reads_the_last_user_turn_in_any_form() -> None:
    def request(messages: object) -> testing.RecordedRequest:
        body = {"model": "claude-x", "messages": messages}
        return testing.RecordedRequest(
            method="POST", path="/v1/messages", query="", headers={}, json=body, content=b""
        )

    answer = PacedAnswer(tokens_per_second=100)
    blocks = [{"role": "user", "content": [{"type": "text", "text": "Blocks?"}]}]
    for messages, asked in (
        (blocks, "Blocks?"),
        ([{"role": "user", "content": "Plain?"}, {"role": "assistant", "content": "A"}], "Plain?"),
        ("not a list", ""),
    ):
        response = answer(request(messages))
        assert response.status == 200 and response.tokens_per_second == 100
        # One text delta per word: the opening names the question when there is one.
        assert (b'"text":"You ' in response.body) == bool(asked)
        assert asked.encode() in response.body
        assert b'"model":"claude-x"' in response.body
