"""What a browser, or a subscriber in another process, may learn of an error.

One rule for every sink: the API's own error type and message where the API named one, the
library's class name and message for the library's errors, and nothing but
``internal_error`` for anything else, whose text may hold anything (a path, a query, a secret)
and belongs in the server's log only. Anything shaped like an Anthropic API key is blanked.
"""

from __future__ import annotations

import re
from typing import Final

from .._exceptions import AnthropicRxError, APIError

__all__ = ["INTERNAL_ERROR", "is_library_error", "public_error", "public_text"]

INTERNAL_ERROR: Final = ("internal_error", "internal server error")
"""``(type, message)`` shown for an exception that is not one of the library's."""

_API_KEY = re.compile(r"sk-ant-[A-Za-z0-9_\-]+")
_REDACTED = "[redacted]"
_MAX_MESSAGE = 1000


def public_error(error: BaseException) -> tuple[str, str]:
    """What a browser may learn of an error: ``(type, message)``.

    - an :class:`~anthropic_rx.APIError` with an ``error_type``: that type and its ``.message``
      (``("overloaded_error", "Overloaded")``);
    - any other anthropic-rx error: its class name and ``str(error)``
      (``("IncompleteStreamError", "...")``; a ``ResumeError`` is ``"resume_error"``);
    - anything else: :data:`INTERNAL_ERROR`.

    Messages pass through :func:`public_text`.
    """
    from ._broadcast import ResumeError  # the broadcaster's types import nothing from here

    if isinstance(error, ResumeError):
        return "resume_error", public_text(str(error))
    if isinstance(error, APIError) and error.error_type:
        return error.error_type, public_text(error.message)
    if isinstance(error, AnthropicRxError):
        return type(error).__name__, public_text(str(error))
    return INTERNAL_ERROR


def is_library_error(class_name: str) -> bool:
    """Whether ``class_name`` names anthropic-rx's own error classes (a terminal entry names
    its class; one from an unknown class is shown as :data:`INTERNAL_ERROR`)."""
    pending: list[type[BaseException]] = [AnthropicRxError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == class_name:
            return True
        pending.extend(cls.__subclasses__())
    return False


def public_text(text: str) -> str:
    """``text`` with anything shaped like an API key (``sk-ant-...``) replaced by
    ``[redacted]``, cut to 1,000 characters."""
    text = _API_KEY.sub(_REDACTED, text)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."
