"""One pass from events to the text of one kind of delta (the hot path of every UI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import abc

from .._error_event import error_of_event
from .._events import ContentBlockDeltaEvent, ErrorEvent, MessageStreamEvent

__all__ = ["delta_text"]


def delta_text(
    delta_type: type[Any], attribute: str
) -> Callable[[reactivex.Observable[MessageStreamEvent]], reactivex.Observable[str]]:
    """An operator emitting ``delta.<attribute>`` of each delta of exactly ``delta_type``.

    Written as one observer rather than ``map`` + ``filter``: it runs for every event of every
    stream, and each reactivex layer costs a wrapped observer call per event.
    An ``ErrorEvent`` becomes ``on_error`` with its typed exception (as ``raise_on_error()``);
    completion, errors and disposal pass through unchanged.
    """

    def operator(events: reactivex.Observable[MessageStreamEvent]) -> reactivex.Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            emit = observer.on_next

            def on_next(event: MessageStreamEvent) -> None:
                if type(event) is ContentBlockDeltaEvent:
                    delta = event.delta
                    if type(delta) is delta_type:
                        emit(getattr(delta, attribute))
                elif type(event) is ErrorEvent:
                    # Dropping it would end the text as if the reply were whole.
                    observer.on_error(error_of_event(event))

            return events.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return reactivex.create(subscribe)

    return operator
