"""``thinking_deltas()``: the text of each ``thinking_delta``."""

from __future__ import annotations

from collections.abc import Callable

import reactivex

from .._events import MessageStreamEvent, ThinkingDelta
from ._delta_text import delta_text

__all__ = ["thinking_deltas"]


def thinking_deltas() -> Callable[
    [reactivex.Observable[MessageStreamEvent]], reactivex.Observable[str]
]:
    """Events → the ``str`` of each ``thinking_delta`` (extended thinking); others are dropped.

    Returns:
        An operator. Completion, errors and disposal pass through unchanged.

    Raises:
        APIError: (as ``on_error``) for an in-stream ``ErrorEvent``, as ``text_deltas()``.

    Example:
        >>> thoughts = events.pipe(ops.raise_on_error(), ops.thinking_deltas())
    """
    return delta_text(ThinkingDelta, "thinking")
