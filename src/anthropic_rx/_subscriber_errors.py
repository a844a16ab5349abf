"""Telling the running loop what a subscriber's own ``on_error`` or ``on_completed`` raised.

Raised inside a task that reads a stream, such an exception would end the task and stay unseen
until the task is collected; it goes to the loop's exception handler at once instead, naming the
subscriber. Outside a running loop it propagates to the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import abc

__all__ = ["report_subscriber_error"]


def report_subscriber_error(
    observer: abc.ObserverBase[Any], raised: Exception, where: str, handling: Exception | None
) -> None:
    """Tell the running loop's exception handler what the subscriber's ``where`` raised.

    Raised inside a reading task, the exception would end the task and stay unseen until the
    task is collected ("Task exception was never retrieved"), often at interpreter exit.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise raised from None
    name = _subscriber_name(observer, where)
    if where == "on_error" and raised is handling:
        # reactivex's default on_error raises the error it is given.
        message = (
            f"anthropic-rx: the subscriber {name} did not handle {handling!r} (it has no "
            "on_error of its own, or its on_error raised it again); the stream was stopped "
            "and its response closed"
        )
    else:
        during = "" if handling is None else f" while handling {handling!r}"
        message = (
            f"anthropic-rx: the {where} of the subscriber {name} raised {raised!r}{during}; "
            "the stream was stopped and its response closed"
        )
    loop.call_exception_handler({"message": message, "exception": raised, "observer": observer})


def _subscriber_name(observer: abc.ObserverBase[Any], where: str) -> str:
    """The subscriber's own ``where`` function, else its ``on_next``, when reactivex's observer
    holds them (its defaults are not the subscriber's); else the observer."""
    for kind in (where.removeprefix("on_"), "next"):
        for attribute in (f"_on_{kind}", f"_handler_on_{kind}"):
            handler = getattr(observer, attribute, None)
            module = getattr(handler, "__module__", None) or ""
            name = getattr(handler, "__qualname__", None)
            if isinstance(name, str) and not module.startswith("reactivex."):
                return name
    return repr(observer)
