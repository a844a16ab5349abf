"""The ``anthropic-rx`` command line, run in-process and as ``python -m anthropic_rx``."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

import anthropic_rx as arx
from anthropic_rx import cli

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv(cli.PACE_ENV, raising=False)


def test_chat_offline_echoes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["chat", "hello"]) == 0
    out, err = capsys.readouterr()
    assert out == "You said: hello\n"
    assert err.count(cli.OFFLINE_NOTE) == 1


def test_chat_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(read=lambda: "from stdin"))
    assert cli.main(["chat", "-", "--system", "be brief"]) == 0
    assert "You said: from stdin" in capsys.readouterr().out


def test_chat_json_lines_are_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["chat", "--json", "hello"]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [arx.parse_event(line) for line in lines]
    assert isinstance(events[0], arx.MessageStartEvent)
    assert isinstance(events[-1], arx.MessageStopEvent)


def test_replay_fixture(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", str(FIXTURES / "docs_basic_text.sse")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("message_start")
    assert 'content_block_delta [0] text_delta {"text": "Hello"}' in out
    assert out[-1] == "message_stop"


def test_replay_text_and_speed(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["replay", "--text", "--speed", "100", str(FIXTURES / "docs_basic_text.sse")]) == 0
    )
    assert capsys.readouterr().out == "Hello!\n"


def test_replay_error_event_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "docs_error_overloaded_midstream.sse"
    assert cli.main(["replay", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["anthropic-rx: error: OverloadedError (overloaded_error): Overloaded"]


def test_replay_truncated_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = (FIXTURES / "docs_basic_text.sse").read_bytes()
    cut = tmp_path / "cut.sse"
    cut.write_bytes(data[: data.index(b"event: message_delta")])
    assert cli.main(["replay", str(cut)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("anthropic-rx: error: IncompleteStreamError")


def test_record_fake_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rec.sse"
    assert cli.main(["record", str(out), "hi there", "--fake"]) == 0
    assert capsys.readouterr().out == "You said: hi there\n"
    assert cli.main(["replay", "--text", str(out)]) == 0
    assert capsys.readouterr().out == "You said: hi there\n"


def test_record_without_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["record", str(tmp_path / "x.sse"), "hi"]) == 2
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "x.sse").exists()


@pytest.mark.parametrize(
    "argv",
    [[], ["nope"], ["chat"], ["chat", "hi", "--max-tokens", "0"], ["replay", "f", "--speed", "-1"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "anthropic-rx: error:" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert arx.__version__ in capsys.readouterr().out


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What ``demo`` reads its settings into (``DemoSettings``'s place, its fields alike)."""

    host: str = "127.0.0.1"
    port: int = 8000
    worker: str = "child"
    other: str = "kept"

    @classmethod
    def from_env(cls) -> _Settings:
        return cls()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "9123"], _Settings(port=9123)),
        (["--no-worker"], _Settings(worker="external")),  # the worker is left to you
    ],
    ids=["passes-settings", "no-worker-leaves-the-worker-to-you"],
)
def test_demo_runs_with_its_options_over_the_environments_settings(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: _Settings
) -> None:
    seen: list[Any] = []
    fake = types.ModuleType("anthropic_rx.demo")
    fake.DemoSettings = _Settings  # type: ignore[attr-defined]
    fake.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "anthropic_rx.demo", fake)
    assert cli.main(["demo", *argv]) == 0
    assert seen == [expected]


def test_demo_with_a_bad_variable_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_RX_DEMO_WORKER", "sometimes")
    assert cli.main(["demo"]) == 2
    assert "ANTHROPIC_RX_DEMO_WORKER must be one of" in capsys.readouterr().err


def test_worker_needs_a_redis_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_RX_REDIS_URL", raising=False)
    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "anthropic-rx: error: the worker needs ANTHROPIC_RX_REDIS_URL (the demo's queue)\n"
    )


def test_worker_runs_the_demo_worker_with_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from anthropic_rx.demo import _worker

    seen: list[Any] = []
    monkeypatch.setattr(_worker, "run_worker", seen.append)
    monkeypatch.setenv("ANTHROPIC_RX_REDIS_URL", "redis://127.0.0.1:6379/5")
    monkeypatch.setenv("ANTHROPIC_RX_DEMO_REDIS_PREFIX", "cli-test")
    assert cli.main(["worker"]) == 0
    (settings,) = seen
    assert settings.redis_url == "redis://127.0.0.1:6379/5"
    assert settings.queue_name == "cli-test:queue" and settings.queued


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env.update(extra)
    return env


def _run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anthropic_rx", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(),
        check=False,
    )


def test_module_help_and_chat() -> None:
    done = _run_module("--help")
    assert done.returncode == 0
    assert "chat" in done.stdout and cli.PACE_ENV in done.stdout
    assert "worker" in done.stdout
    done = _run_module("chat", "hello")
    assert done.returncode == 0
    assert done.stdout == "You said: hello\n"


def test_sigint_exits_130_without_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "anthropic_rx", "chat", "one two three four five six seven"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**{cli.PACE_ENV: "2"}),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    first = ""
    while not first and time.monotonic() < deadline:
        first = proc.stdout.read(1)  # the first delta has arrived: the stream is open
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "seven" not in first + out
