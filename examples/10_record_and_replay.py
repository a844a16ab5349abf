"""Record a stream to a ``.sse`` file once, then replay it offline, as often as needed.

``testing.RecordingTransport`` passes requests on and saves every event-stream body as
``0001.sse``, ``0002.sse``... ``arx.from_sse_bytes`` turns saved bytes back into the same
events, and ``fake.add_stream(path)`` serves them to a client as the API did.

By default the recording is made from the fake API; with ``--real`` (or ``ANTHROPIC_RX_REAL=1``)
from the real one (needs ``ANTHROPIC_API_KEY``). ``--out DIR`` keeps the files.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx

import anthropic_rx as arx
from _cli import arguments
from anthropic_rx import testing

PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Name three prime numbers."}],
}


def text_of(message: arx.Message) -> str:
    return "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))


async def record(directory: Path, real: bool) -> tuple[Path, arx.Message]:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("2, ", "3 ", "and 5."))
    upstream: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport() if real else fake.transport
    recorder = testing.RecordingTransport(directory, transport=upstream)
    base_url = None if real else "http://fake.invalid"
    async with arx.Client(transport=recorder, base_url=base_url) as client:  # closes recorder
        message = await arx.final_message(client.stream(**PARAMS))
    return recorder.paths[0], message


async def main(real: bool, out: Path) -> None:
    path, recorded = await record(out, real)
    print(f"recorded {path.name}: {path.stat().st_size} bytes, {text_of(recorded)!r}")

    # Replay 1: the bytes themselves, no HTTP at all.
    replayed = await arx.final_message(arx.from_sse_bytes(path.read_bytes()))
    print(f"replayed from bytes, same message: {replayed == recorded}")

    # Replay 2: served by the fake over real loopback HTTP, as the API served it.
    fake = testing.FakeAnthropic(default=None)  # answer only what is planned
    fake.add_stream(path, chunk_size=64)
    async with fake.serve() as base_url, arx.Client(base_url=base_url) as client:
        served = await arx.final_message(client.stream(**PARAMS))
    print(f"replayed by the fake over HTTP, same message: {served == recorded}")


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--out", type=Path, help="where to keep the .sse files")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    if args.out is not None:
        asyncio.run(main(args.real, args.out))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(args.real, Path(tmp)))
