"""A fake Anthropic Messages API for tests, demos and examples: no network, no API key.

```python
from anthropic_rx import testing

reply = (testing.Reply(model="claude-sonnet-4-5", input_tokens=12)
         .thinking("Let me think", "about it", signature="sig")
         .text("Hello", ", world")
         .tool_use("get_weather", {"city": "Paris"}, fragment_size=7)
         .stop("tool_use", output_tokens=42))

fake = testing.FakeAnthropic()
fake.add_stream(reply, tokens_per_second=50)          # queued, answered in order
fake.add_error(529)                                  # then an overloaded_error
fake.add_stream("tests/fixtures/reply.sse", disconnect_after=300)

async with httpx.AsyncClient(transport=fake.transport) as http: ...   # in memory
async with fake.serve() as base_url: ...                              # real loopback HTTP/1.1

fake.assert_sent(model="claude-sonnet-4-5", headers={"anthropic-version": "2023-06-01"})
await fake.wait_closed()                             # every response closed
```

With nothing queued, the fake answers with :data:`echo` (``"You said: ..."``, word by word);
``fake.default`` changes that (a :class:`Reply`, a function of the request, or ``None`` for an
HTTP 500). A malformed Messages request (``model`` or ``max_tokens`` missing or of the wrong
type, ``messages`` not a non-empty list of ``user``/``assistant`` turns with content...) gets the
API's 400 ``invalid_request_error`` naming the field (``"max_tokens: Input should be a valid
integer"``) before any plan is used; ``FakeAnthropic(validate_requests=False)`` answers it
anyway. :class:`RecordingTransport` saves real streams as ``.sse`` files to replay here.
"""

from .. import _publish
from ._exchange import RecordedRequest
from ._fake import Default, Echo, FakeAnthropic, echo
from ._plan import ErrorOptions, FakeResponse, RawOptions, StreamOptions
from ._record import RecordingTransport
from ._replies import DEFAULT_MODEL, Reply, sse_bytes, text_reply

__all__ = [
    "DEFAULT_MODEL",
    "Default",
    "Echo",
    "ErrorOptions",
    "FakeAnthropic",
    "FakeResponse",
    "RawOptions",
    "RecordedRequest",
    "RecordingTransport",
    "Reply",
    "StreamOptions",
    "echo",
    "sse_bytes",
    "text_reply",
]

_publish(__name__, [globals()[name] for name in __all__])
