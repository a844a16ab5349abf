"""The checks the Messages API makes of a request body, as the fake makes them.

:func:`request_problem` returns the message of the API's 400 ``invalid_request_error`` for the
first problem found (``"max_tokens: Input should be a valid integer"``: the field's path, then
what is wrong, as the API words it), or ``None`` for a body the API would take. It checks what
every request needs — ``model``, ``max_tokens``, ``messages``, each message's ``role`` and
``content`` — and nothing the API might accept: unknown fields, tools, system prompts and block
contents pass. Pure; never raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["request_problem"]

_ROLES = ("user", "assistant")


def request_problem(body: Mapping[str, Any]) -> str | None:
    """The API's error message for the first problem of ``body``, or ``None``."""
    if "model" not in body:
        return "model: Field required"
    if not isinstance(body["model"], str):
        return "model: Input should be a valid string"
    if "max_tokens" not in body:
        return "max_tokens: Field required"
    problem = _max_tokens_problem(body["max_tokens"])
    if problem is not None:
        return f"max_tokens: {problem}"
    if "messages" not in body:
        return "messages: Field required"
    messages = body["messages"]
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    last = len(messages) - 1
    for index, message in enumerate(messages):
        problem = _message_problem(message, f"messages.{index}", final=index == last)
        if problem is not None:
            return problem
    return None


def _max_tokens_problem(value: object) -> str | None:
    # JSON ``true`` is not a count, though Python's bool is an int.
    if isinstance(value, bool):
        return "Input should be a valid integer"
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return "Input should be a valid integer, got a number with a fractional part"
        value = int(value)
    if not isinstance(value, int):
        return "Input should be a valid integer"
    if value < 1:
        return "Input should be greater than or equal to 1"
    return None


def _message_problem(message: object, where: str, *, final: bool) -> str | None:
    if not isinstance(message, dict):
        return f"{where}: Input should be a valid dictionary"
    if "role" not in message:
        return f"{where}.role: Field required"
    role = message["role"]
    if role not in _ROLES:
        return f"{where}.role: Input should be 'user' or 'assistant'"
    if "content" not in message:
        return f"{where}.content: Field required"
    content = message["content"]
    if isinstance(content, str):
        empty = not content
    elif isinstance(content, list):
        for index, block in enumerate(content):
            if not isinstance(block, dict):
                return f"{where}.content.{index}: Input should be a valid dictionary"
            if "type" not in block:
                return f"{where}.content.{index}.type: Field required"
            if not isinstance(block["type"], str):
                return f"{where}.content.{index}.type: Input should be a valid string"
        empty = not content
    else:
        return f"{where}.content: Input should be a valid list"
    # A final assistant turn may be empty (the reply continues it); no other turn may.
    if empty and not (final and role == "assistant"):
        return (
            f"{where}: all messages must have non-empty content except for the optional "
            "final assistant message"
        )
    return None
