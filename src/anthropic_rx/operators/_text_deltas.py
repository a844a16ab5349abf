"""``text_deltas()``: the text of each ``text_delta``."""

from __future__ import annotations

from collections.abc import Callable

import reactivex

from .._events import MessageStreamEvent, TextDelta
from ._delta_text import delta_text

__all__ = ["text_deltas"]


def text_deltas() -> Callable[
    [reactivex.Observable[MessageStreamEvent]], reactivex.Observable[str]
]:
    """Events → the ``str`` of each ``text_delta``; every other event is dropped.

    Returns:
        An operator. Completion, errors and disposal pass through unchanged.

    Raises:
        APIError: (as ``on_error``) for an in-stream ``ErrorEvent``, its typed subclass with
            the ``.partial_message`` and ``.meta`` the source attached to it: the text never
            just stops short.

    Example:
        >>> text = events.pipe(ops.raise_on_error(), ops.text_deltas())
    """
    return delta_text(TextDelta, "text")
