"""``accumulate()``: running immutable ``Message`` snapshots, one per event that changes it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import reactivex
from reactivex import abc

from .._error_event import error_of_event
from .._events import (
    ErrorEvent,
    Message,
    MessageDeltaEvent,
    MessageStopEvent,
    MessageStreamEvent,
    TextBlock,
    ThinkingBlock,
    Usage,
)
from .._snapshot import apply_event

__all__ = ["accumulate"]

# Roughly four characters of English per token: only for replies stopped before the API
# reported their usage.
_CHARS_PER_TOKEN = 4


def accumulate() -> Callable[
    [reactivex.Observable[MessageStreamEvent]], reactivex.Observable[Message]
]:
    """Events → the message so far, as a new frozen :class:`~anthropic_rx.Message` per change.

    A ``scan`` over the pure reducer :func:`anthropic_rx.apply_event`: events before
    ``message_start`` and events that change nothing (``ping``, ``content_block_stop``,
    ``message_stop``...) emit nothing. Snapshots are values, so subscribers of a shared stream
    cannot corrupt each other. Each snapshot copies the block it changes; for the final
    message alone, ``arx.final_message`` is cheaper.

    ```
    events:  -start--delta--ping--delta--|             (completed without message_stop)
    output:  -m0-----m1-----------m2-----m2'|          m2' = m2 with cancelled=True
    ```

    Returns:
        An operator. It completes when the events complete. When they complete without
        ``message_stop`` after ``message_start`` (a stream stopped on purpose, e.g. by
        ``take_until_cancel`` placed before it; truncation is an error, not a completion),
        one last snapshot has ``cancelled=True`` and, when no ``message_delta`` had arrived,
        usage marked ``estimated`` with ``output_tokens`` estimated from the text.
        Errors pass through unchanged; disposal disposes the events.

    Raises:
        APIError: (as ``on_error``) for an in-stream ``ErrorEvent``, the typed subclass (as
            ``raise_on_error()``), with ``.partial_message`` the last snapshot.
        ProtocolError: (as ``on_error``) an event cannot follow the ones before it.

    Example:
        >>> message = events.pipe(ops.take_until_cancel(token), ops.accumulate(), rx_ops.last())
    """

    def operator(events: reactivex.Observable[MessageStreamEvent]) -> reactivex.Observable[Message]:
        def subscribe(
            observer: abc.ObserverBase[Message], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            snapshot: Message | None = None
            ended = False  # message_stop or an error event arrived
            usage_reported = False  # a message_delta arrived

            def on_next(event: MessageStreamEvent) -> None:
                nonlocal snapshot, ended, usage_reported
                if type(event) is ErrorEvent:
                    # The message is cut short by the API: an error, not a last snapshot.
                    ended = True
                    observer.on_error(
                        error_of_event(event, partial_message=snapshot or event.partial_message)
                    )
                    return
                try:
                    after = apply_event(snapshot, event)
                except Exception as exc:
                    observer.on_error(exc)
                    return
                if isinstance(event, MessageStopEvent):
                    ended = True
                elif isinstance(event, MessageDeltaEvent):
                    usage_reported = True
                if after is not snapshot and after is not None:
                    snapshot = after
                    observer.on_next(after)

            def on_completed() -> None:
                if snapshot is not None and not ended:
                    observer.on_next(cancelled_snapshot(snapshot, estimate=not usage_reported))
                observer.on_completed()

            return events.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return operator


def cancelled_snapshot(snapshot: Message, *, estimate: bool) -> Message:
    """The last snapshot of a reply stopped on purpose: ``cancelled`` set and, when ``estimate``
    (no ``message_delta`` reported usage), ``output_tokens`` estimated from the generated text
    and ``usage.estimated`` set. Shared by every sink that reports a cancelled reply."""
    if not estimate:
        return snapshot.model_copy(update={"cancelled": True})
    usage = snapshot.usage or Usage()
    estimated = max(usage.output_tokens, math.ceil(_generated_chars(snapshot) / _CHARS_PER_TOKEN))
    return snapshot.model_copy(
        update={
            "cancelled": True,
            "usage": usage.model_copy(update={"output_tokens": estimated, "estimated": True}),
        }
    )


def _generated_chars(message: Message) -> int:
    chars = 0
    for block in message.content:
        if isinstance(block, TextBlock):
            chars += len(block.text)
        elif isinstance(block, ThinkingBlock):
            chars += len(block.thinking)
        else:
            raw = getattr(block, "input_json", None)
            value = getattr(block, "input", None)
            if raw is None and value:
                # A tool block that arrived whole: its input was generated all the same.
                raw = json.dumps(value, separators=(",", ":"), default=str)
            chars += len(raw) if isinstance(raw, str) else 0
    return chars
