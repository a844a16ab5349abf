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
        An operator. Completion, errors and disposal pass through unchanged; an ``ErrorEvent``
        is dropped like any other event (put ``raise_on_error()`` before it to fail instead).

    Example:
        >>> text = events.pipe(ops.raise_on_error(), ops.text_deltas())
    """
    return delta_text(TextDelta, "text")
