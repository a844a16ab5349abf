"""Every exported class and function names the public package it is exported from.

``anthropic_rx.Message``, not ``anthropic_rx._events.Message``: in reprs, tracebacks, pickles
and docs. Re-homing must not break what resolves names through ``__module__``: pydantic's
(re)builds and JSON schemas, ``typing.get_type_hints``, pickle and deepcopy.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import typing
from types import GenericAlias, ModuleType
from typing import Any

import pydantic
import pytest

import anthropic_rx as arx
from anthropic_rx import cancel, operators, sinks, testing

PACKAGES: list[ModuleType] = [arx, cancel, operators, sinks, testing]

# Exported names that are not classes or functions (type aliases, typing constructs, values):
# their ``__module__`` is not theirs to set, or they have none.
NOT_CLASSES_OR_FUNCTIONS = {
    "anthropic_rx": {"ContentBlock", "Delta", "JSONValue", "MessageStreamEvent", "__version__"},
    "anthropic_rx.cancel": set(),
    "anthropic_rx.operators": set(),
    "anthropic_rx.sinks": {"AI_SDK_HEADERS", "End", "OnDisconnect", "SSEFormat", "SlowPolicy"},
    "anthropic_rx.testing": {"DEFAULT_MODEL", "Default", "echo"},
}


def _is_class_or_function(member: object) -> bool:
    return inspect.isfunction(member) or (
        inspect.isclass(member) and not isinstance(member, GenericAlias)
    )


def _exported() -> list[tuple[ModuleType, str, Any]]:
    return [
        (package, name, getattr(package, name))
        for package in PACKAGES
        for name in package.__all__
        if _is_class_or_function(getattr(package, name))
    ]


EXPORTED = _exported()
CLASSES = sorted(
    {member for _, _, member in EXPORTED if inspect.isclass(member)}, key=lambda c: c.__name__
)
EXCEPTIONS = [cls for cls in CLASSES if issubclass(cls, BaseException)]
MODELS = [cls for cls in CLASSES if issubclass(cls, pydantic.BaseModel)]


def test_the_known_exceptions_are_exactly_the_non_classes() -> None:
    for package in PACKAGES:
        others = {
            name for name in package.__all__ if not _is_class_or_function(getattr(package, name))
        }
        assert others == NOT_CLASSES_OR_FUNCTIONS[package.__name__], package.__name__


@pytest.mark.parametrize(
    ("package", "name", "member"), EXPORTED, ids=[f"{p.__name__}.{n}" for p, n, _ in EXPORTED]
)
def test_module_is_a_public_package_that_exports_it(
    package: ModuleType, name: str, member: Any
) -> None:
    module = member.__module__
    assert not any(part.startswith("_") for part in module.split(".")), module
    # Exported from several packages (``CancelToken``: the top level and ``cancel``): the
    # first to export it, the top level, is its home.
    home = importlib.import_module(module)
    assert name in home.__all__
    assert getattr(home, member.__qualname__) is member
    if package is not arx and not hasattr(arx, name):
        assert module == package.__name__


def test_the_top_level_names_are_shown_as_the_top_level() -> None:
    assert arx.Message.__module__ == "anthropic_rx"
    assert repr(arx.Message) == "<class 'anthropic_rx.Message'>"
    assert arx.final_message.__module__ == "anthropic_rx"
    assert arx.CancelToken.__module__ == "anthropic_rx"
    assert cancel.RedisCancelFlags.__module__ == "anthropic_rx.cancel"
    assert operators.text_deltas.__module__ == "anthropic_rx.operators"
    assert testing.FakeAnthropic.__module__ == "anthropic_rx.testing"
    assert sinks.MemoryBroadcaster.__module__ == "anthropic_rx.sinks"
    # Loaded on first use, shown as the package's own all the same.
    assert sinks.SSEResponse.__module__ == "anthropic_rx.sinks"
    assert sinks.DatabaseWriter.__module__ == "anthropic_rx.sinks"


def test_an_exception_traceback_names_the_public_class() -> None:
    import traceback

    try:
        raise arx.OverloadedError("Overloaded", error_type="overloaded_error", status_code=529)
    except arx.OverloadedError as exc:
        shown = "".join(traceback.format_exception(exc))
    assert "anthropic_rx.OverloadedError: Overloaded" in shown
    assert "_exceptions" not in shown.splitlines()[-1]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_type_hints_still_resolve(cls: type) -> None:
    hints = typing.get_type_hints(cls)
    assert set(hints) >= set(inspect.get_annotations(cls))


@pytest.mark.parametrize("model", MODELS, ids=lambda c: c.__name__)
def test_pydantic_models_rebuild_and_give_their_schema(model: type[pydantic.BaseModel]) -> None:
    assert model.__pydantic_complete__
    before = model.model_json_schema()
    model.model_rebuild(force=True)
    assert model.__pydantic_complete__
    assert model.model_json_schema() == before


def _message() -> arx.Message:
    reply = (
        testing.Reply(model="claude-sonnet-4-5", input_tokens=3)
        .thinking("hm", signature="sig")
        .text("Hello", " world")
        .tool_use("get_weather", {"city": "Paris"})
        .stop("tool_use", output_tokens=9)
    )
    return reply.message()


def test_a_message_pickles_copies_and_validates() -> None:
    message = _message()
    assert pickle.loads(pickle.dumps(message)) == message
    assert copy.deepcopy(message) == message
    assert copy.copy(message) == message
    again = arx.Message.model_validate_json(message.model_dump_json())
    assert again.model_dump() == message.model_dump()
    assert type(again.content[1]) is arx.TextBlock


def test_events_and_metas_pickle() -> None:
    meta = arx.ResponseMeta.from_headers(
        200, {"request-id": "req_1", "anthropic-ratelimit-requests-limit": "50"}
    )
    event = arx.ErrorEvent(
        error=arx.ErrorDetail(type="overloaded_error", message="Overloaded"),
        response_meta=meta,
        partial_message=_message(),
    )
    for value in (meta, event, arx.PingEvent()):
        assert pickle.loads(pickle.dumps(value)) == value
        assert copy.deepcopy(value) == value


def _keywords(cls: type[BaseException]) -> dict[str, Any]:
    parameters = inspect.signature(cls).parameters
    wanted: dict[str, Any] = {
        "partial_message": _message(),
        "meta": arx.ResponseMeta.from_headers(529, {"request-id": "req_2"}),
        "error_type": "overloaded_error",
        "status_code": 529,
        "body": {"type": "error"},
        "kind": "idle",
        "last_event_id": "1-0",
        "message_id": "msg_1",
    }
    return {name: value for name, value in wanted.items() if name in parameters}


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
def test_exceptions_pickle_and_copy(cls: type[BaseException]) -> None:
    error = cls("boom", **_keywords(cls))
    for again in (pickle.loads(pickle.dumps(error)), copy.deepcopy(error)):
        assert type(again) is cls
        assert str(again) == str(error)
        assert again.args == error.args
        assert vars(again) == vars(error)


def test_functions_and_classes_still_pickle_by_reference() -> None:
    for _, _, member in EXPORTED:
        assert pickle.loads(pickle.dumps(member)) is member
