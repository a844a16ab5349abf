"""``of_type(*classes)``: only the events of the given classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

import reactivex
from reactivex import operators as ops

__all__ = ["of_type"]

_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")


@overload
def of_type(
    cls: type[_A], /
) -> Callable[[reactivex.Observable[object]], reactivex.Observable[_A]]: ...
@overload
def of_type(
    cls1: type[_A], cls2: type[_B], /
) -> Callable[[reactivex.Observable[object]], reactivex.Observable[_A | _B]]: ...
@overload
def of_type(
    cls1: type[_A], cls2: type[_B], cls3: type[_C], /
) -> Callable[[reactivex.Observable[object]], reactivex.Observable[_A | _B | _C]]: ...
@overload
def of_type(
    *classes: type[Any],
) -> Callable[[reactivex.Observable[object]], reactivex.Observable[Any]]: ...
def of_type(
    *classes: type[Any],
) -> Callable[[reactivex.Observable[object]], reactivex.Observable[Any]]:
    """Only the items that are instances of one of ``classes`` (subclasses included).

    The element type narrows to the classes given (up to three are spelled out for the type
    checker; more give ``Any``).

    Args:
        classes: event classes (or any classes), e.g. ``arx.ContentBlockStartEvent``.

    Returns:
        An operator. Completion, errors and disposal pass through unchanged.

    Raises:
        TypeError: no class is given, or one is not a class (at call time).

    Example:
        >>> starts = events.pipe(ops.of_type(arx.ContentBlockStartEvent))
    """
    if not classes:
        raise TypeError("of_type needs at least one class")
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"of_type takes classes, not {type(cls).__name__}")
    wanted = classes[0] if len(classes) == 1 else classes

    def matches(item: object) -> bool:
        return isinstance(item, wanted)

    def operator(source: reactivex.Observable[object]) -> reactivex.Observable[Any]:
        return cast("reactivex.Observable[Any]", source.pipe(ops.filter(matches)))

    return operator
