"""Builder sharing: a consumer subscribed straight to an ``EventStream`` reads the reader's own
``MessageBuilder`` instead of feeding a second one with the same events.

Why a ``ContextVar`` and not an argument: ``reactivex.Observable.subscribe`` has no way to pass
anything but the observer and a scheduler, and the offer must reach only the one
``EventStream`` subscribed inside :func:`sharing_builder` (not one an operator subscribes later,
elsewhere). The variable is read once per subscription, in ``EventReader``'s constructor, never
per event, so it costs nothing on the hot path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from ._snapshot import MessageBuilder

__all__ = ["BUILDER_SLOT", "sharing_builder"]

BUILDER_SLOT: ContextVar[tuple[list[MessageBuilder], bool] | None] = ContextVar(
    "anthropic_rx_builder_slot", default=None
)


@contextlib.contextmanager
def sharing_builder(
    slot: list[MessageBuilder], *, deltas: bool = True
) -> Iterator[list[MessageBuilder]]:
    """While subscribing an ``EventStream``, receive its reader's builder in ``slot``.

    ``deltas=False``: the subscriber reads the builder alone, so the reader does not hand it the
    ``content_block_delta`` events (nearly all of them); every other event still reaches it.
    Leaving the block (normally or by an exception) withdraws the offer.
    """
    token = BUILDER_SLOT.set((slot, deltas))
    try:
        yield slot
    finally:
        BUILDER_SLOT.reset(token)
