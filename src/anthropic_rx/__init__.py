"""anthropic-rx: a streamed Anthropic Messages API reply as a reactive pipeline.

```python
import anthropic_rx as arx
from anthropic_rx import operators as ops

events = arx.from_sse_bytes(recorded_bytes)          # or arx.Client().stream(...)
message = await arx.final_message(events)
async for text in arx.to_async_iterator(events.pipe(ops.text_deltas())): ...
```
"""

import collections.abc as _abc
import dataclasses as _dataclasses
import inspect as _inspect
import types as _types
import typing as _typing

from ._bridges import (
    AsyncObservableIterator,
    ObservableAsyncIterable,
    ObservableIterator,
    final_message,
    from_async_iterable,
    to_async_iterator,
    to_iterator,
    to_stream,
)
from ._cancel import CancelToken
from ._client import Client
from ._events import (
    Citation,
    CitationsDelta,
    CompactionBlock,
    CompactionDelta,
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    Delta,
    ErrorDetail,
    ErrorEvent,
    InputJSONDelta,
    JSONObject,
    JSONValue,
    MCPToolUseBlock,
    Message,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    MessageStreamEvent,
    PingEvent,
    RedactedThinkingBlock,
    ServerToolUseBlock,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
    UnknownBlock,
    UnknownDelta,
    UnknownEvent,
    Usage,
    WebSearchToolResultBlock,
    parse_event,
)
from ._exceptions import (
    AnthropicRxError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    GatewayTimeoutError,
    IncompleteStreamError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTooLargeError,
    StreamError,
)
from ._meta import RateLimit, ResponseMeta
from ._snapshot import MessageBuilder, apply_event, parse_tool_input
from ._source import from_sse_bytes
from ._sse import ServerSentEvent, SSEDecoder
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AnthropicRxError",
    "AsyncObservableIterator",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "CancelToken",
    "Citation",
    "CitationsDelta",
    "Client",
    "CompactionBlock",
    "CompactionDelta",
    "ContentBlock",
    "ContentBlockDeltaEvent",
    "ContentBlockStartEvent",
    "ContentBlockStopEvent",
    "Delta",
    "ErrorDetail",
    "ErrorEvent",
    "GatewayTimeoutError",
    "IncompleteStreamError",
    "InputJSONDelta",
    "InternalServerError",
    "JSONObject",
    "JSONValue",
    "MCPToolUseBlock",
    "Message",
    "MessageBuilder",
    "MessageDelta",
    "MessageDeltaEvent",
    "MessageDeltaUsage",
    "MessageStartEvent",
    "MessageStopEvent",
    "MessageStreamEvent",
    "NotFoundError",
    "ObservableAsyncIterable",
    "ObservableIterator",
    "OverloadedError",
    "PermissionDeniedError",
    "PingEvent",
    "ProtocolError",
    "RateLimit",
    "RateLimitError",
    "RedactedThinkingBlock",
    "RequestTooLargeError",
    "ResponseMeta",
    "SSEDecoder",
    "ServerSentEvent",
    "ServerToolUseBlock",
    "SignatureDelta",
    "StreamError",
    "TextBlock",
    "TextDelta",
    "ThinkingBlock",
    "ThinkingDelta",
    "ToolUseBlock",
    "UnknownBlock",
    "UnknownDelta",
    "UnknownEvent",
    "Usage",
    "WebSearchToolResultBlock",
    "__version__",
    "apply_event",
    "final_message",
    "from_async_iterable",
    "from_sse_bytes",
    "parse_event",
    "parse_tool_input",
    "to_async_iterator",
    "to_iterator",
    "to_stream",
]


def _publish(package: str, members: _abc.Iterable[object]) -> None:
    """Show the classes and functions ``package`` exports as its own.

    A class or function defined in a private module (``anthropic_rx._events``) gets
    ``__module__ = package``, so reprs, tracebacks, pickles and docs name the public path
    (``anthropic_rx.Message``). The string annotations of such a class (``from __future__
    import annotations``) would then be looked up in ``package``, which lacks the private
    module's imports: they are resolved first, in the module that wrote them (a class whose
    annotations cannot be resolved there, names imported for type checkers only, keeps its
    strings). Called once a module's classes are complete: pydantic models resolve their
    annotations through ``__module__`` when (re)built.
    """
    chosen = [member for member in members if _defined_privately(member)]
    for member in chosen:
        if isinstance(member, type):
            _resolve_annotations(member)
    for member in chosen:
        member.__module__ = package


def _defined_privately(member: object) -> bool:
    if not (_inspect.isfunction(member) or _inspect.isclass(member)):
        return False
    if isinstance(member, _types.GenericAlias):
        return False
    module = getattr(member, "__module__", "")
    if not isinstance(module, str) or module.split(".")[0] != __name__:
        return False
    return any(part.startswith("_") for part in module.split("."))


def _resolve_annotations(cls: type) -> None:
    own = _inspect.get_annotations(cls)
    if not any(isinstance(value, str) for value in own.values()):
        return
    try:
        hints = _typing.get_type_hints(cls, include_extras=True)
    except Exception:
        # A name imported for type checkers only: the strings stay.
        return
    cls.__annotations__ = {name: hints.get(name, value) for name, value in own.items()}
    if _dataclasses.is_dataclass(cls):
        for field in _dataclasses.fields(cls):
            if isinstance(field.type, str) and field.name in hints:
                field.type = hints[field.name]


_publish(__name__, [globals()[name] for name in __all__])
