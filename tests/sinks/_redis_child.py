"""One OS process of ``test_redis_processes.py``: a publisher, a subscriber or a stopper.

Started as ``python -m tests.sinks._redis_child ROLE --redis URL --prefix P ...`` from the
project's root. Every role sets up first (imports, its broadcaster or flags), prints
``{"ready": true}``, then acts on the JSON lines the test writes to its stdin (its orders), so
the test starts the processes ahead and chooses the moment each one acts, whatever their
start-up time. Everything it has to say is one JSON object a line on stdout, flushed at once (a
process killed mid-reply has printed exactly the lines it got to):

- ``publish --channel C --api URL [--ttl S] [--stop NAME]``, on its one order:
  ``hub.start`` of ``client.stream(...)`` from the fake API at ``URL`` (piped through
  ``ops.take_until_cancel(flags.watch(NAME))`` with ``--stop``), ``{"opened": true}`` once the
  channel is open, then ``{"result": "done" | "cancelled" | "none", "text": ...}`` with what
  the publish returned (``"none"``: cancelled before ``message_start``), or ``{"error":
  class, "message": ...}`` when it raised;
- ``subscribe --channel C``, on each order (``{}`` or ``{"last_event_id": ID}``):
  ``hub.subscribe(C, last_event_id=ID)``, ``{"id", "type", "text", "end"}`` per broadcast
  item, then ``{"completed": true}``, or ``{"error": class, "message": ...}`` when the
  subscription failed (``ChannelNotFound``...); it exits when stdin is closed;
- ``stop --name NAME``, on its one order: ``flags.request_stop(NAME)``, then
  ``{"stopped": true}``.

A process ends by itself: stdin closed before a one-order role's order (the test went away)
exits with status 2, and everything runs within ``--deadline`` seconds (status 3 past it), so
no child outlives a test that could not kill it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import reactivex

import anthropic_rx as arx
from anthropic_rx import cancel, sinks
from anthropic_rx import operators as ops

MODEL = "claude-sonnet-4-5"


def emit(**fields: Any) -> None:
    """One line of the protocol, flushed: the test reads it as soon as it is printed."""
    print(json.dumps(fields), flush=True)


class Orders:
    """The test's lines on stdin, one JSON object each: when to act, and with what."""

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self._reader = reader
        self._transport = transport

    @classmethod
    async def ready(cls) -> Orders:
        """Listen to stdin, then print ``ready``: from here on the test may give orders."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        emit(ready=True)
        return cls(reader, transport)

    async def next(self) -> dict[str, Any] | None:
        """The next order; ``None`` once stdin is closed (the test has no more)."""
        line = await self._reader.readline()
        if not line:
            return None
        order: dict[str, Any] = json.loads(line)
        return order

    async def once(self) -> dict[str, Any]:
        """The one order of a role that acts once; stdin is not read after it.

        Raises:
            SystemExit: (status 2) stdin closed first: the test is gone, nothing is done.
        """
        try:
            order = await self.next()
        finally:
            self.close()
        if order is None:
            raise SystemExit(2)
        return order

    def close(self) -> None:
        self._transport.close()


def text_of(message: arx.Message | None) -> str:
    if message is None:
        return ""
    return "".join(block.text for block in message.content if isinstance(block, arx.TextBlock))


async def publish(args: argparse.Namespace) -> None:
    hub = sinks.RedisBroadcaster(args.redis, prefix=args.prefix, ttl=args.ttl)
    flags = None if args.stop is None else cancel.RedisCancelFlags(args.redis, prefix=args.prefix)
    client = arx.Client(api_key="test-key", base_url=args.api, max_retries=0)
    try:
        await (await Orders.ready()).once()
        events: reactivex.Observable[arx.MessageStreamEvent] = client.stream(
            model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": "Tell me"}]
        )
        if flags is not None:
            events = events.pipe(ops.take_until_cancel(flags.watch(args.stop)))
        task = await hub.start(args.channel, events)
        emit(opened=True)
        try:
            message = await task
        except Exception as exc:
            emit(error=type(exc).__name__, message=str(exc))
            return
        if message is None:
            emit(result="none", text="")
            return
        emit(result="cancelled" if message.cancelled else "done", text=text_of(message))
    finally:
        await client.aclose()
        if flags is not None:
            await flags.aclose()
        await hub.aclose()


async def subscribe(args: argparse.Namespace) -> None:
    hub = sinks.RedisBroadcaster(args.redis, prefix=args.prefix)
    orders = await Orders.ready()
    try:
        while (order := await orders.next()) is not None:
            await follow(hub.subscribe(args.channel, last_event_id=order.get("last_event_id")))
    finally:
        orders.close()
        await hub.aclose()


async def follow(subscription: sinks.BroadcastSubscription) -> None:
    """Print every item of one subscription, then how it ended."""
    try:
        async for item in arx.to_async_iterator(subscription):
            event = item.event
            text = None
            if isinstance(event, arx.ContentBlockDeltaEvent) and isinstance(
                event.delta, arx.TextDelta
            ):
                text = event.delta.text
            emit(id=item.id, type=None if event is None else event.type, text=text, end=item.end)
    except Exception as exc:
        emit(error=type(exc).__name__, message=str(exc))
        return
    emit(completed=True)


async def stop(args: argparse.Namespace) -> None:
    flags = cancel.RedisCancelFlags(args.redis, prefix=args.prefix)
    try:
        await (await Orders.ready()).once()
        await flags.request_stop(args.name)
        emit(stopped=True)
    finally:
        await flags.aclose()


ROLES = {"publish": publish, "subscribe": subscribe, "stop": stop}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="_redis_child")
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--channel", default="conversation.1")
    parser.add_argument("--api", default="")
    parser.add_argument("--ttl", type=float, default=3600.0)
    parser.add_argument("--stop", default=None)
    parser.add_argument("--name", default="")
    parser.add_argument("--deadline", type=float, default=30.0)
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        async with asyncio.timeout(args.deadline):
            await ROLES[args.role](args)
    except TimeoutError:
        print(f"{args.role}: not done within {args.deadline:g} s", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
