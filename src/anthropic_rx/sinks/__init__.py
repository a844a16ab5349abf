"""Where a reply goes: the browser (SSE), other subscribers (broadcasters), and storage.

```python
from anthropic_rx import sinks

return sinks.sse_response(client.stream(...))                 # a route's answer, to a browser
hub = sinks.MemoryBroadcaster()                                # or sinks.RedisBroadcaster(url)
message = await hub.publish("conversation.42", events)         # the job
return sinks.sse_response(hub.subscribe("conversation.42", last_event_id=...))  # every tab
```

:func:`sse_response` needs the ``web`` extra (Starlette, sse-starlette): it is imported on
first use, so the broadcasters work in a worker that has no web framework installed.
"""

from typing import TYPE_CHECKING, Any

from .. import _publish
from ._broadcast import (
    Broadcast,
    BroadcastError,
    BroadcastSubscription,
    ChannelBusyError,
    ChannelNotFound,
    End,
    ResumeError,
    SlowPolicy,
    SlowSubscriberError,
)
from ._hub import Broadcaster
from ._memory import MemoryBroadcaster
from ._redis import RedisBroadcaster
from ._relay import relay, start_relay

if TYPE_CHECKING:
    from ._ai_sdk import AI_SDK_HEADERS, AiSdkEncoder
    from ._database import DatabaseWriteError, DatabaseWriter, StoredMessage, message_table
    from ._frames import SSEFormat
    from ._sse import OnDisconnect, SSEResponse, sse_response

# Imported on first use: the SSE names pull in Starlette and sse-starlette (the ``web``
# extra), the database names SQLAlchemy (the ``database`` extra).
_LAZY = {
    "AI_SDK_HEADERS": "._ai_sdk",
    "AiSdkEncoder": "._ai_sdk",
    "DatabaseWriteError": "._database",
    "DatabaseWriter": "._database",
    "OnDisconnect": "._sse",
    "SSEFormat": "._frames",
    "SSEResponse": "._sse",
    "StoredMessage": "._database",
    "message_table": "._database",
    "sse_response": "._sse",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        member = getattr(importlib.import_module(module, __name__), name)
        # Loaded on first use, so shown as the package's own then (as the others below).
        _publish(__name__, [member])
        return member
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AI_SDK_HEADERS",
    "AiSdkEncoder",
    "Broadcast",
    "BroadcastError",
    "BroadcastSubscription",
    "Broadcaster",
    "ChannelBusyError",
    "ChannelNotFound",
    "DatabaseWriteError",
    "DatabaseWriter",
    "End",
    "MemoryBroadcaster",
    "OnDisconnect",
    "RedisBroadcaster",
    "ResumeError",
    "SSEFormat",
    "SSEResponse",
    "SlowPolicy",
    "SlowSubscriberError",
    "StoredMessage",
    "message_table",
    "relay",
    "sse_response",
    "start_relay",
]

_publish(__name__, [globals()[name] for name in __all__ if name not in _LAZY])
