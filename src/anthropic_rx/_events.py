"""Typed pydantic models of the Messages API stream: events, content blocks, deltas, Message.

Every model is frozen (a value: shared streams cannot corrupt each other) and keeps fields it
does not know (``extra="allow"``), so data from newer API versions passes through. Types this
version does not know become :class:`UnknownEvent`, :class:`UnknownBlock` or
:class:`UnknownDelta`, with all their data.

Parsing looks at ``type`` first and validates only the model it names (validating a whole
union costs the official SDK tens of microseconds per event).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union, cast

import pydantic_core
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypeAliasType

from ._exceptions import ProtocolError
from ._meta import ResponseMeta

__all__ = [
    "Citation",
    "CitationsDelta",
    "CompactionBlock",
    "CompactionDelta",
    "ContentBlock",
    "ContentBlockDeltaEvent",
    "ContentBlockStartEvent",
    "ContentBlockStopEvent",
    "Delta",
    "ErrorDetail",
    "ErrorEvent",
    "InputJSONDelta",
    "JSONObject",
    "JSONValue",
    "MCPToolUseBlock",
    "Message",
    "MessageDelta",
    "MessageDeltaEvent",
    "MessageDeltaUsage",
    "MessageStartEvent",
    "MessageStopEvent",
    "MessageStreamEvent",
    "PingEvent",
    "RedactedThinkingBlock",
    "ServerToolUseBlock",
    "SignatureDelta",
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
    "parse_event",
]


if TYPE_CHECKING:
    JSONValue: TypeAlias = "JSONObject" | list["JSONValue"] | str | bool | int | float | None
else:
    JSONValue = TypeAliasType(
        "JSONValue", Union["JSONObject", list["JSONValue"], str, bool, int, float, None]
    )
"""A JSON value whose objects are :class:`JSONObject` models."""


class _Model(BaseModel):
    # Keys repeat on every event; text values almost never do: caching them only costs.
    model_config = ConfigDict(
        extra="allow", frozen=True, protected_namespaces=(), cache_strings="keys"
    )
    # Fields this version does not name are kept, and nested objects among them become
    # JSONObject models: attribute access works, and ``exclude_none`` reaches inside them as it
    # does inside the official SDK's typed models.
    __pydantic_extra__: dict[str, JSONValue]


class JSONObject(_Model):
    """A JSON object the API sent inside an event (a search result, a container...).

    Its keys are attributes; ``model_dump()`` gives the JSON back.
    """


# --- citations, usage ------------------------------------------------------------------------


class Citation(_Model):
    """A citation attached to a text block (``char_location``, ``page_location``,
    ``web_search_result_location``...). Location fields are kept as sent."""

    type: str
    cited_text: str | None = None


class Usage(_Model):
    """Token usage. ``message_delta`` carries cumulative counts, which overwrite these.

    ``estimated`` is true when the counts were estimated locally (a reply cancelled before its
    ``message_delta``); it is not wire data and never dumped.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    estimated: bool = Field(default=False, exclude=True)


class MessageDeltaUsage(_Model):
    """Usage on ``message_delta``: cumulative; a field that is absent or null is not changed."""

    output_tokens: int | None = None
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


# --- content blocks --------------------------------------------------------------------------


class TextBlock(_Model):
    """Text. ``text_delta`` appends to ``text``; ``citations_delta`` appends to ``citations``."""

    type: Literal["text"] = "text"
    text: str
    citations: tuple[Citation, ...] | None = None


class ThinkingBlock(_Model):
    """Extended thinking. ``thinking_delta`` appends; ``signature_delta`` replaces ``signature``."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(_Model):
    """Thinking the API redacted; arrives whole in ``content_block_start``."""

    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class _ToolInputBlock(_Model):
    # The concatenated ``partial_json`` fragments exactly as streamed, kept even when they do not
    # parse. Excluded from dumps so a message dumps as the API's own JSON does.
    input_json: str | None = Field(default=None, exclude=True, repr=False)


class ToolUseBlock(_ToolInputBlock):
    """A client tool call. ``input`` is parsed from the ``input_json_delta`` fragments."""

    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: Any


class ServerToolUseBlock(_ToolInputBlock):
    """A server tool call (web search, code execution...)."""

    type: Literal["server_tool_use"] = "server_tool_use"
    id: str
    name: str
    input: Any


class MCPToolUseBlock(_ToolInputBlock):
    """An MCP connector tool call (beta)."""

    type: Literal["mcp_tool_use"] = "mcp_tool_use"
    id: str
    name: str
    server_name: str | None = None
    input: Any


class WebSearchToolResultBlock(_Model):
    """Results of the web search server tool; arrives whole in ``content_block_start``."""

    type: Literal["web_search_tool_result"] = "web_search_tool_result"
    tool_use_id: str
    content: JSONValue


class CompactionBlock(_Model):
    """A context compaction block (beta); ``compaction_delta`` replaces its content."""

    type: Literal["compaction"] = "compaction"
    content: str | None = None
    encrypted_content: str | None = None


_KNOWN_BLOCKS: tuple[type[_Model], ...] = (
    TextBlock,
    ThinkingBlock,
    RedactedThinkingBlock,
    ToolUseBlock,
    ServerToolUseBlock,
    MCPToolUseBlock,
    WebSearchToolResultBlock,
    CompactionBlock,
)


def _not_known(known: tuple[type[_Model], ...]) -> Any:
    names = frozenset(m.model_fields["type"].default for m in known)

    def check(kind: str) -> str:
        if kind in names:
            raise ValueError(f"{kind!r} is a known type: its fields are invalid")
        return kind

    return AfterValidator(check)


class UnknownBlock(_ToolInputBlock):
    """A block type this version does not know; all its fields are kept.

    When it has an ``input`` field, ``input_json_delta`` fragments are parsed into it as for
    :class:`ToolUseBlock`.
    """

    type: Annotated[str, _not_known(_KNOWN_BLOCKS)]


# --- deltas ----------------------------------------------------------------------------------


class TextDelta(_Model):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(_Model):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ThinkingDelta(_Model):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(_Model):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class CitationsDelta(_Model):
    type: Literal["citations_delta"] = "citations_delta"
    citation: Citation


class CompactionDelta(_Model):
    type: Literal["compaction_delta"] = "compaction_delta"
    content: str | None = None
    encrypted_content: str | None = None


_KNOWN_DELTAS: tuple[type[_Model], ...] = (
    TextDelta,
    InputJSONDelta,
    ThinkingDelta,
    SignatureDelta,
    CitationsDelta,
    CompactionDelta,
)


class UnknownDelta(_Model):
    """A delta type this version does not know; all its fields are kept."""

    type: Annotated[str, _not_known(_KNOWN_DELTAS)]


ContentBlock: TypeAlias = (
    TextBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ToolUseBlock
    | ServerToolUseBlock
    | MCPToolUseBlock
    | WebSearchToolResultBlock
    | CompactionBlock
    | UnknownBlock
)
"""Any content block; types this version does not know are :class:`UnknownBlock`."""

Delta: TypeAlias = (
    TextDelta
    | InputJSONDelta
    | ThinkingDelta
    | SignatureDelta
    | CitationsDelta
    | CompactionDelta
    | UnknownDelta
)
"""Any ``content_block_delta`` payload; types this version does not know are
:class:`UnknownDelta`."""


def _open_union(known: tuple[type[_Model], ...], unknown: type[_Model]) -> Any:
    """A union that validates a known ``type`` by its tag alone, and anything else as unknown.

    The tagged union is tried first (pydantic-core picks the one model by ``type``, with no
    trial and error); only when the tag is not known does ``unknown`` validate the data. The
    unknown model refuses the known tags, so a known type with bad fields is an error rather
    than a silently unknown value.
    """
    union, annotated = cast("Any", Union), cast("Any", Annotated)
    tagged = annotated[union[known], Field(discriminator="type")]
    return annotated[union[tagged, unknown], Field(union_mode="left_to_right")]


if TYPE_CHECKING:
    _BlockField: TypeAlias = ContentBlock
    _DeltaField: TypeAlias = Delta
else:
    _BlockField = _open_union(_KNOWN_BLOCKS, UnknownBlock)
    _DeltaField = _open_union(_KNOWN_DELTAS, UnknownDelta)


# --- message ---------------------------------------------------------------------------------


class Message(_Model):
    """A whole or partial assistant message.

    ``usage`` is ``None`` only when the stream carried no usage at all. ``cancelled`` is true
    for the last snapshot of a reply stopped on purpose (``ops.take_until_cancel``); it is not
    wire data and never dumped.
    ``model_dump(mode="json", exclude_none=True)`` gives the API's own JSON for the message.
    """

    id: str
    type: Literal["message"] = "message"
    role: str = "assistant"
    content: tuple[_BlockField, ...] = ()
    model: str
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    cancelled: bool = Field(default=False, exclude=True)


# --- events ----------------------------------------------------------------------------------


class MessageStartEvent(_Model):
    """The first event: the message envelope (id, model, role) and initial usage.

    ``response_meta`` is the HTTP response's meta (request id, rate limits) when the stream
    came from a response; it is not part of the wire data and never dumped.
    """

    type: Literal["message_start"] = "message_start"
    message: Message
    response_meta: ResponseMeta | None = Field(default=None, exclude=True, repr=False)


class ContentBlockStartEvent(_Model):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: _BlockField


class ContentBlockDeltaEvent(_Model):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: _DeltaField


class ContentBlockStopEvent(_Model):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(_Model):
    """The ``delta`` of ``message_delta``: stop reason and sequence, and any newer fields."""

    stop_reason: str | None = None
    stop_sequence: str | None = None


class MessageDeltaEvent(_Model):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage | None = None


class MessageStopEvent(_Model):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(_Model):
    type: Literal["ping"] = "ping"


class ErrorDetail(_Model):
    type: str = "api_error"
    message: str = ""


class ErrorEvent(_Model):
    """An error the API sent inside the stream (after HTTP 200).

    ``response_meta`` is as on :class:`MessageStartEvent`. ``partial_message`` is the message
    as far as it arrived before this event, set by the library's sources (not wire data).
    """

    type: Literal["error"] = "error"
    error: ErrorDetail
    response_meta: ResponseMeta | None = Field(default=None, exclude=True, repr=False)
    partial_message: Message | None = Field(default=None, exclude=True, repr=False)


class UnknownEvent(_Model):
    """An event type this version does not know; all its fields are kept."""

    type: str


MessageStreamEvent: TypeAlias = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | PingEvent
    | ErrorEvent
    | UnknownEvent
)
"""Any event of the stream."""

_EVENT_MODELS: dict[str, type[_Model]] = {
    m.model_fields["type"].default: m
    for m in (
        MessageStartEvent,
        ContentBlockStartEvent,
        ContentBlockDeltaEvent,
        ContentBlockStopEvent,
        MessageDeltaEvent,
        MessageStopEvent,
        PingEvent,
        ErrorEvent,
    )
}
EVENT_VALIDATORS = {name: model.__pydantic_validator__ for name, model in _EVENT_MODELS.items()}
"""The validator of each known event type, by name: JSON straight to the model."""


def parse_event(data: str | bytes, event_name: str | None = None) -> MessageStreamEvent:
    """Validate one SSE frame's data as the event its ``type`` names.

    ``event_name`` (the SSE ``event:`` field) is a hint: when it names a known type, the data is
    validated straight from JSON as that model, in one pass; if the data's ``type`` disagrees, it
    is parsed again by its own ``type``.

    Raises:
        ProtocolError: the data is not a JSON object with a string ``type``, or does not fit the
            model its type names.
    """
    if event_name is not None:
        validator = EVENT_VALIDATORS.get(event_name)
        if validator is not None:
            try:
                event = validator.validate_json(data)
            except ValidationError:
                pass  # wrong hint or bad data: the slow path below tells which
            else:
                # ``type`` has a default for building events in code; on the wire it must be
                # there, and the slow path says so when it is not.
                if "type" in event.model_fields_set:
                    return event  # type: ignore[no-any-return]
    try:
        obj = pydantic_core.from_json(data)
    except ValueError as exc:
        obj = json_with_lone_surrogates_replaced(data)
        if obj is None:
            raise ProtocolError(f"event data is not JSON: {_excerpt(data)}") from exc
    return parse_event_object(obj)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_with_lone_surrogates_replaced(data: str | bytes) -> object | None:
    """JSON holding ``\\ud83d``-style escapes of lone UTF-16 surrogates, decoded; else ``None``.

    They are valid JSON syntax (RFC 8259 leaves their meaning open) but not Unicode, so
    pydantic-core refuses them. A lone surrogate becomes U+FFFD, as a browser's decoder does,
    so that the text stays encodable everywhere; escaped pairs decode to their character.
    """
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    if not _SURROGATE_ESCAPE.search(text):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return _replace_lone_surrogates(obj)


def _replace_lone_surrogates(value: object) -> object:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {
            _replace_lone_surrogates(key): _replace_lone_surrogates(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    return value


def parse_event_object(obj: object) -> MessageStreamEvent:
    """Validate an already decoded JSON object as the event its ``type`` names.

    Raises:
        ProtocolError: ``obj`` is not an object with a string ``type`` or does not fit its model.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError(f"event data is not an object with a string type: {_excerpt(obj)}")
    model = _EVENT_MODELS.get(obj["type"], UnknownEvent)
    try:
        return model.model_validate(obj)  # type: ignore[return-value]
    except ValidationError as exc:
        raise ProtocolError(f"invalid {obj['type']} event: {exc.errors()[0]['msg']}") from exc


def _excerpt(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
