"""``text_deltas()``: the text of each ``text_delta``."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import reactivex
from reactivex import operators as ops

from .._events import ContentBlockDeltaEvent, MessageStreamEvent, TextDelta

__all__ = ["text_deltas"]


def _text(event: MessageStreamEvent) -> str | None:
    if isinstance(event, ContentBlockDeltaEvent):
        delta = event.delta
        if isinstance(delta, TextDelta):
            return delta.text
    return None


def _is_text(text: str | None) -> bool:
    return text is not None


def text_deltas() -> Callable[
    [reactivex.Observable[MessageStreamEvent]], reactivex.Observable[str]
]:
    """Events → the ``str`` of each ``text_delta``; every other event is dropped.

    Returns:
        An operator. Completion, errors and disposal pass through unchanged; an ``ErrorEvent``
        is dropped like any other event (put ``raise_on_error()`` before it to fail instead).

    Example:
        >>> text = events.pipe(ops.raise_on_error(), ops.text_deltas())
    """

    def operator(
        events: reactivex.Observable[MessageStreamEvent],
    ) -> reactivex.Observable[str]:
        # Map to the text or None, then drop the Nones: each event is looked at once.
        texts: reactivex.Observable[str | None] = events.pipe(ops.map(_text))
        return cast("reactivex.Observable[str]", texts.pipe(ops.filter(_is_text)))

    return operator
