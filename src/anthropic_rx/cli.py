"""The ``anthropic-rx`` command line: chat, demo, worker, replay and record.

``main(argv)`` returns the exit status: 0 on success, 1 on a runtime error (an API error, a
broken or truncated stream; one line ``anthropic-rx: error: <type>: <message>`` on stderr, never
a traceback and never the API key), 2 on a usage error, 130 on Ctrl-C (the stream is disposed,
so the HTTP response is closed, before returning). ``run()`` is the console-script entry point
and exits with that status.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import reactivex

from . import operators as ops
from . import testing
from ._async_bridge import to_async_iterator
from ._client import Client
from ._events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ErrorEvent,
    MessageStreamEvent,
    TextDelta,
)
from ._exceptions import AnthropicRxError, APIError
from ._source import from_sse_bytes
from ._version import __version__

PROG = "anthropic-rx"
REAL_MODEL = "claude-sonnet-4-5"
PACE_ENV = "ANTHROPIC_RX_FAKE_TOKENS_PER_SECOND"
OFFLINE_NOTE = "(offline: the fake Anthropic answers; set ANTHROPIC_API_KEY for the real API)"
REPLAY_DELAY = 0.05
"""Seconds between replayed events at ``--speed 1`` (recordings carry no timing)."""

EPILOG = f"""\
environment:
  ANTHROPIC_API_KEY   use the real API (otherwise an in-memory fake answers, echoing the prompt)
  {PACE_ENV}
                      pace the offline fake's reply (tokens per second), e.g. to try Ctrl-C
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own errors exit 2 with one line
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def _request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help=f"model name (default {REAL_MODEL}; offline the fake's)")
    parser.add_argument("--max-tokens", type=_positive_int, default=1024, metavar="N")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--api-key", help="API key (default $ANTHROPIC_API_KEY)")
    parser.add_argument("--fake", action="store_true", help="use the offline fake even with a key")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``anthropic-rx`` (every command has ``--help``)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="Stream Anthropic Messages replies from the command line.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    chat = sub.add_parser(
        "chat", help="stream a reply to stdout", epilog=EPILOG, formatter_class=formatter
    )
    chat.add_argument("prompt", help="the user message; '-' reads it from stdin")
    _request_options(chat)
    chat.add_argument("--json", action="store_true", help="print every event as one JSON line")

    demo = sub.add_parser(
        "demo",
        help="run the chat demo web app",
        description=(
            "Serve the chat demo on 127.0.0.1. With ANTHROPIC_RX_REDIS_URL its replies run "
            "in an arq worker, started as a child process unless --no-worker (or "
            "ANTHROPIC_RX_DEMO_WORKER=external) says you run 'anthropic-rx worker' yourself."
        ),
    )
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument(
        "--no-worker",
        action="store_true",
        help="do not start the arq worker (run 'anthropic-rx worker' apart)",
    )

    sub.add_parser(
        "worker",
        help="run the chat demo's arq worker",
        description=(
            "Run the arq worker that streams the chat demo's replies, until Ctrl-C or SIGTERM. "
            "Reads the demo's environment (ANTHROPIC_RX_REDIS_URL is required; "
            "ANTHROPIC_RX_DATABASE_URL, ANTHROPIC_API_KEY, ANTHROPIC_RX_DEMO_REDIS_PREFIX, ...)."
        ),
    )

    replay = sub.add_parser(
        "replay",
        help="print the events of a .sse recording",
        description=(
            "Print one line per event. --speed X waits REPLAY_DELAY/X seconds "
            f"({REPLAY_DELAY} s at 1) between events, since recordings carry no timing; "
            "0 (the default) replays as fast as possible."
        ),
    )
    replay.add_argument("file", type=Path)
    replay.add_argument("--speed", type=_non_negative_float, default=0.0)
    mode = replay.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="one JSON line per event")
    mode.add_argument("--text", action="store_true", help="only the reply text")

    record = sub.add_parser(
        "record", help="save a stream to a .sse file", epilog=EPILOG, formatter_class=formatter
    )
    record.add_argument("out", type=Path)
    record.add_argument("prompt", help="the user message; '-' reads it from stdin")
    _request_options(record)
    return parser


def _fake_transport() -> httpx.AsyncBaseTransport:
    pace = os.environ.get(PACE_ENV)
    tokens_per_second: float | None = None
    if pace:
        try:
            tokens_per_second = float(pace)
        except ValueError:
            raise _UsageError(f"{PACE_ENV} is not a number: {pace!r}") from None
    return testing.FakeAnthropic(
        default=testing.Echo(tokens_per_second=tokens_per_second)
    ).transport


def _params(args: argparse.Namespace, prompt: str, real: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": args.model or (REAL_MODEL if real else testing.DEFAULT_MODEL),
        "max_tokens": args.max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    if args.system:
        params["system"] = args.system
    return params


def _prompt(text: str) -> str:
    return sys.stdin.read() if text == "-" else text


def _api_key(args: argparse.Namespace) -> str | None:
    key: str | None = args.api_key or os.environ.get("ANTHROPIC_API_KEY") or None
    return None if args.fake else key


def _describe(event: MessageStreamEvent) -> str:
    parts = [event.type]
    index = getattr(event, "index", None)
    if index is not None:
        parts.append(f"[{index}]")
    if isinstance(event, ContentBlockDeltaEvent):
        delta = event.delta
        shown = {k: v for k, v in delta.model_dump(mode="json").items() if k != "type"}
        parts.append(f"{delta.type} {json.dumps(shown, ensure_ascii=False)}")
    elif isinstance(event, ContentBlockStartEvent):
        parts.append(event.content_block.type)
    elif isinstance(event, ErrorEvent):
        parts.append(f"{event.error.type}: {event.error.message}")
    else:
        dumped = event.model_dump(mode="json", exclude_none=True)
        dumped.pop("type", None)
        dumped.pop("index", None)  # already shown
        if dumped:
            parts.append(json.dumps(dumped, ensure_ascii=False))
    return " ".join(parts)


async def _pump(
    events: reactivex.Observable[MessageStreamEvent],
    out: TextIO,
    *,
    as_json: bool = False,
    as_text: bool = True,
    lines: bool = False,
    delay: float = 0.0,
) -> None:
    """Print the events; raise the stream's error. Cancellation closes the iterator, which
    disposes the subscription (and so the HTTP response)."""
    wrote_text = False
    iterator = to_async_iterator(events.pipe(ops.raise_on_error()))
    try:
        first = True
        async for event in iterator:
            if delay and not first:
                await asyncio.sleep(delay)
            first = False
            if as_json:
                out.write(event.model_dump_json(exclude_none=True) + "\n")
            elif lines:
                out.write(_describe(event) + "\n")
            elif (
                as_text
                and isinstance(event, ContentBlockDeltaEvent)
                and isinstance(event.delta, TextDelta)
            ):
                out.write(event.delta.text)
                wrote_text = True
            out.flush()
    finally:
        await iterator.aclose()
        if wrote_text:
            out.write("\n")
            out.flush()


async def _chat(args: argparse.Namespace) -> int:
    prompt = _prompt(args.prompt)
    key = _api_key(args)
    if key is None:
        print(OFFLINE_NOTE, file=sys.stderr, flush=True)
        client = Client(api_key="offline", transport=_fake_transport(), max_retries=0)
    else:
        client = Client(api_key=key)
    async with client:
        events = client.stream(**_params(args, prompt, key is not None))
        await _pump(events, sys.stdout, as_json=args.json)
    return 0


async def _replay(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    delay = REPLAY_DELAY / args.speed if args.speed else 0.0
    await _pump(
        from_sse_bytes(data),
        sys.stdout,
        as_json=args.json,
        as_text=args.text,
        lines=not (args.json or args.text),
        delay=delay,
    )
    return 0


async def _record(args: argparse.Namespace) -> int:
    key = _api_key(args)
    if key is None and not args.fake:
        raise _UsageError("record needs ANTHROPIC_API_KEY or --api-key (or --fake)")
    prompt = _prompt(args.prompt)
    with tempfile.TemporaryDirectory() as directory:
        upstream = _fake_transport() if key is None else httpx.AsyncHTTPTransport()
        recorder = testing.RecordingTransport(directory, transport=upstream)
        base_url = "http://fake.invalid" if key is None else None
        async with Client(api_key=key or "offline", transport=recorder, base_url=base_url) as c:
            await _pump(c.stream(**_params(args, prompt, key is not None)), sys.stdout)
        if not recorder.paths:
            raise _UsageError("the API returned no event stream")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(recorder.paths[0].read_bytes())
    print(f"saved {args.out}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from anthropic_rx.demo import DemoSettings, run  # lazy: needs the web extra

    changes: dict[str, Any] = {
        k: getattr(args, k) for k in ("host", "port") if getattr(args, k) is not None
    }
    if args.no_worker:
        changes["worker"] = "external"
    try:
        settings = dataclasses.replace(DemoSettings.from_env(), **changes)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    run(settings)
    return 0


def _worker() -> int:
    from anthropic_rx.demo import DemoSettings, run_worker  # lazy: needs the queue extra

    try:
        settings = DemoSettings.from_env()
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if settings.redis_url is None:
        raise _UsageError("the worker needs ANTHROPIC_RX_REDIS_URL (the demo's queue)")
    run_worker(settings)
    return 0


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return f"{type(exc).__name__} ({exc.error_type}): {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, 1 runtime error, 2 usage, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "worker":
            return _worker()
        command = {"chat": _chat, "replay": _replay, "record": _record}[args.command]
        return asyncio.run(command(args))
    except KeyboardInterrupt:
        # asyncio.run cancelled the task, so the iterator was closed and the stream disposed.
        print(file=sys.stderr)
        return 130
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (AnthropicRxError, OSError, ImportError) as exc:
        print(f"{PROG}: error: {_error_line(exc)}", file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry point: ``sys.exit(main())``."""
    sys.exit(main())
