"""``raise_on_error()``: an in-stream ``error`` event becomes the typed exception."""

from __future__ import annotations

from collections.abc import Callable

import reactivex
from reactivex import abc

from .._error_event import error_of_event
from .._events import ErrorEvent, MessageStreamEvent
from ._partial import PartialTracker

__all__ = ["raise_on_error"]


def raise_on_error() -> Callable[
    [reactivex.Observable[MessageStreamEvent]], reactivex.Observable[MessageStreamEvent]
]:
    """Events → the same events, with an ``ErrorEvent`` turned into ``on_error``.

    The raw source emits ``error`` events as data (a relay forwards them); most pipelines
    want them raised. The exception class follows ``error.type`` (an ``overloaded_error`` is an
    :class:`~anthropic_rx.OverloadedError`) with ``status_code=200``, ``.partial_message`` (the
    message up to the error) and ``.meta`` (the response's). Tracking the partial message costs
    O(1) per event.

    ```
    events:  -start--delta--error|
    output:  -start--delta--X          X = OverloadedError(partial_message=...)
    ```

    Returns:
        An operator. Other events, completion and upstream errors pass through unchanged.
        The error disposes the upstream.

    Raises:
        APIError: (as ``on_error``) the typed subclass for the ``error`` event.

    Example:
        >>> text = events.pipe(ops.raise_on_error(), ops.text_deltas())
    """

    def operator(
        events: reactivex.Observable[MessageStreamEvent],
    ) -> reactivex.Observable[MessageStreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[MessageStreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            tracker = PartialTracker()

            def on_next(event: MessageStreamEvent) -> None:
                if isinstance(event, ErrorEvent):
                    observer.on_error(
                        error_of_event(
                            event,
                            partial_message=event.partial_message or tracker.partial_message(),
                            meta=tracker.meta_for(event),
                        )
                    )
                    return
                tracker.feed(event)
                observer.on_next(event)

            return events.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return reactivex.create(subscribe)

    return operator
