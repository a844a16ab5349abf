"""``thinking_deltas()``: the text of each ``thinking_delta``."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import reactivex
from reactivex import operators as ops

from .._events import ContentBlockDeltaEvent, MessageStreamEvent, ThinkingDelta

__all__ = ["thinking_deltas"]


def _thinking(event: MessageStreamEvent) -> str | None:
    if isinstance(event, ContentBlockDeltaEvent):
        delta = event.delta
        if isinstance(delta, ThinkingDelta):
            return delta.thinking
    return None


def _is_text(text: str | None) -> bool:
    return text is not None


def thinking_deltas() -> Callable[
    [reactivex.Observable[MessageStreamEvent]], reactivex.Observable[str]
]:
    """Events → the ``str`` of each ``thinking_delta`` (extended thinking); others are dropped.

    Returns:
        An operator. Completion, errors and disposal pass through unchanged.

    Example:
        >>> thoughts = events.pipe(ops.raise_on_error(), ops.thinking_deltas())
    """

    def operator(
        events: reactivex.Observable[MessageStreamEvent],
    ) -> reactivex.Observable[str]:
        texts: reactivex.Observable[str | None] = events.pipe(ops.map(_thinking))
        return cast("reactivex.Observable[str]", texts.pipe(ops.filter(_is_text)))

    return operator
