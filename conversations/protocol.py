"""Client frames of the /ws/chat/ protocol: parsing and validation (see docs/protocol.md).

Every frame from a browser is untrusted: each field is checked for presence, type and size here,
before anything touches the database, and every failure is a ChatError with its own code.
Unknown fields are ignored so that newer clients keep working with this server.
"""

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings

from conversations.errors import ChatError

# Values the page script shares with the server, each defined here only: the templates put them
# on #app as data attributes (templates/conversations/layout.html, via chat_pages tags) and the
# script reads them there (static/js/page.mjs).
# Close code for "not signed in": the script does not reconnect after it.
CLOSE_UNAUTHENTICATED = 4401
# Stands for "the conversation's id" in links of a page whose conversation does not exist yet;
# the script swaps in the real id once the first message has created it.
PLACEHOLDER_ID = uuid.UUID(int=0)

MAX_REQUEST_ID_LENGTH = 100
MAX_NAME_LENGTH = 200
MAX_TOKENS_LIMIT = 1_000_000
TEMPERATURE_MIN, TEMPERATURE_MAX = 0.0, 2.0
# The options a user may set for the provider (the rest of a provider call is the admin's): a
# subset of providers.types.SAMPLING_OPTIONS, with their bounds just above, for frames and forms.
PROVIDER_OPTIONS = ("temperature", "max_tokens")


# One frozen dataclass per client frame type; its fields are the frame's (a field with `within` in
# its metadata arrives inside another field's object). Parsed by hand below rather than by a
# schema library: every field needs its own error code and sentence, and the server must not
# depend on a package for the one place that reads untrusted frames.
@dataclass(frozen=True)
class ChatSend:
    type: ClassVar[str] = "chat.send"
    conversation: uuid.UUID | None
    parent: uuid.UUID | None
    content: str
    provider: str | None = None
    model: str | None = None
    # temperature / max_tokens, only the ones the client sent.
    options: dict[str, Any] = field(default_factory=dict)
    system: str | None = field(default=None, metadata={"within": "options"})
    request_id: str | None = None
    # Ids of files uploaded beforehand (POST /attachments/), unsent and the user's own.
    attachments: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class ChatStop:
    type: ClassVar[str] = "chat.stop"
    message: uuid.UUID
    request_id: str | None = None


@dataclass(frozen=True)
class ChatSubscribe:
    type: ClassVar[str] = "chat.subscribe"
    conversation: uuid.UUID
    # An answer the client was showing as streaming when it lost the socket: if it has ended
    # meanwhile, the server sends its message.done, so the client never keeps a half answer.
    message: uuid.UUID | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class ChatRegenerate:
    type: ClassVar[str] = "chat.regenerate"
    message: uuid.UUID
    request_id: str | None = None


@dataclass(frozen=True)
class ChatEdit:
    type: ClassVar[str] = "chat.edit"
    message: uuid.UUID
    content: str
    request_id: str | None = None


ClientFrame = ChatSend | ChatStop | ChatSubscribe | ChatRegenerate | ChatEdit
CLIENT_FRAMES: tuple[type[ClientFrame], ...] = (
    ChatSend,
    ChatStop,
    ChatSubscribe,
    ChatRegenerate,
    ChatEdit,
)


def max_frame_chars() -> int:
    # JSON may escape one character of content as six (\uXXXX); room for the other fields too.
    return settings.CHAT_MAX_CONTENT_BYTES * 6 + 16_384


def frame_decode(text: str | None, binary: bytes | None = None) -> dict[str, Any]:
    """The JSON object of one WebSocket frame, or ChatError."""
    if text is None:
        raise ChatError("bad_frame", "Frames must be JSON text, not binary.")
    if len(text) > max_frame_chars():
        raise ChatError("too_large", "The frame is too large.")
    try:
        data = json.loads(text)
    except ValueError:
        raise ChatError("bad_json", "The frame is not valid JSON.") from None
    except RecursionError:
        # Nesting deeper than the parser's stack (a few thousand "[" fit in a small frame):
        # bad input like any other, not a bug to log.
        raise ChatError("bad_json", "The frame is nested too deeply.") from None
    if not isinstance(data, dict):
        raise ChatError("bad_frame", "A frame must be a JSON object.")
    return data


def request_id_of(data: dict[str, Any]) -> str | None:
    """The frame's request_id when it is usable, so even an error about the frame can carry it."""
    value = data.get("request_id")
    if isinstance(value, str) and len(value) <= MAX_REQUEST_ID_LENGTH and text_is_storable(value):
        return value
    return None


def frame_parse(data: dict[str, Any]) -> ClientFrame:
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ChatError("bad_frame", "A frame needs a string `type`.")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ChatError("unknown_type", f"Unknown frame type {kind[:40]!r}.")
    if "request_id" in data and data["request_id"] is not None:
        value = data["request_id"]
        if not isinstance(value, str) or len(value) > MAX_REQUEST_ID_LENGTH:
            raise ChatError(
                "invalid", f"`request_id` must be a string of at most {MAX_REQUEST_ID_LENGTH}."
            )
        # Echoed back in every answer to the frame: no string we send may hold these.
        _storable(value, "request_id")
    return parser(data)


def _parse_send(data: dict[str, Any]) -> ChatSend:
    options, system = options_parse(data.get("options"))
    return ChatSend(
        conversation=_uuid(data, "conversation", optional=True),
        parent=_uuid(data, "parent", optional=True),
        content=_content(data, "content"),
        provider=_name(data, "provider"),
        model=_name(data, "model"),
        options=options,
        system=system,
        request_id=request_id_of(data),
        attachments=attachment_ids_parse(data.get("attachments")),
    )


def attachment_ids_parse(value: Any) -> tuple[uuid.UUID, ...]:
    """`attachments` of a chat.send: a list of at most ATTACHMENT_MAX_FILES ids, no repeats.
    Whose they are is checked when the message is written."""
    if value is None:
        return ()
    limit = settings.ATTACHMENT_MAX_FILES
    if not isinstance(value, list) or len(value) > limit:
        raise ChatError("invalid", f"`attachments` must be a list of at most {limit} ids.")
    ids = []
    for item in value:
        try:
            ids.append(uuid.UUID(item) if isinstance(item, str) else None)
        except ValueError:
            ids.append(None)
        if ids[-1] is None:
            raise ChatError("invalid", "`attachments` must hold ids (UUID strings).")
    if len(set(ids)) != len(ids):
        raise ChatError("invalid", "`attachments` names a file twice.")
    return tuple(ids)


def _parse_stop(data: dict[str, Any]) -> ChatStop:
    return ChatStop(message=_uuid(data, "message"), request_id=request_id_of(data))


def _parse_subscribe(data: dict[str, Any]) -> ChatSubscribe:
    return ChatSubscribe(
        conversation=_uuid(data, "conversation"),
        message=_uuid(data, "message", optional=True),
        request_id=request_id_of(data),
    )


def _parse_regenerate(data: dict[str, Any]) -> ChatRegenerate:
    return ChatRegenerate(message=_uuid(data, "message"), request_id=request_id_of(data))


def _parse_edit(data: dict[str, Any]) -> ChatEdit:
    return ChatEdit(
        message=_uuid(data, "message"),
        content=_content(data, "content"),
        request_id=request_id_of(data),
    )


_PARSERS = {
    ChatSend.type: _parse_send,
    ChatStop.type: _parse_stop,
    ChatSubscribe.type: _parse_subscribe,
    ChatRegenerate.type: _parse_regenerate,
    ChatEdit.type: _parse_edit,
}


def _uuid(data: dict[str, Any], name: str, *, optional: bool = False) -> uuid.UUID | None:
    value = data.get(name)
    if value is None:
        if optional:
            return None
        raise ChatError("invalid", f"`{name}` is required.")
    if not isinstance(value, str):
        raise ChatError("invalid", f"`{name}` must be an id (a UUID string).")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ChatError("invalid", f"`{name}` must be an id (a UUID string).") from None


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_is_storable(value: str) -> bool:
    """Text every database can store: JSON allows lone surrogates (\\ud800) and NUL, but
    PostgreSQL refuses NUL in text and no UTF-8 column holds half a surrogate pair. The one rule
    for frames, forms and imported files."""
    return "\x00" not in value and not _has_lone_surrogate(value)


def _storable(value: str, name: str) -> str:
    """`value` when the database can store it; a ChatError that says why not otherwise."""
    if "\x00" in value:
        raise ChatError("invalid", f"`{name}` must not contain NUL characters.")
    if _has_lone_surrogate(value):
        raise ChatError("invalid", f"`{name}` is not valid Unicode text.")
    return value


def text_within_limit(value: str, name: str) -> str:
    """The one size rule for what a user writes (a message, a system prompt), whether it comes
    by socket or by the no-JavaScript form: CHAT_MAX_CONTENT_BYTES bytes of UTF-8."""
    _storable(value, name)
    if len(value.encode("utf-8")) > settings.CHAT_MAX_CONTENT_BYTES:
        raise ChatError(
            "too_large", f"`{name}` is longer than {settings.CHAT_MAX_CONTENT_BYTES} bytes."
        )
    return value


def _content(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ChatError("invalid", f"`{name}` must be a string.")
    text_within_limit(value, name)
    if not value.strip():
        raise ChatError("invalid", f"`{name}` must not be empty.")
    return value


def _name(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH:
        raise ChatError("invalid", f"`{name}` must be a string of at most {MAX_NAME_LENGTH}.")
    return _storable(value, name)


def options_parse(value: Any) -> tuple[dict[str, Any], str | None]:
    """`options` as a client (or an imported file) gives them: the provider options, checked,
    and the system prompt. ChatError for anything else."""
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        raise ChatError("invalid", "`options` must be an object.")
    unknown = set(value) - {*PROVIDER_OPTIONS, "system"}
    if unknown:
        raise ChatError("invalid", f"Unknown option {sorted(unknown)[0][:40]!r}.")
    options: dict[str, Any] = {}
    temperature = value.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise ChatError("invalid", "`options.temperature` must be a number.")
        if not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX:
            raise ChatError(
                "invalid",
                f"`options.temperature` must be between {TEMPERATURE_MIN:g} and "
                f"{TEMPERATURE_MAX:g}.",
            )
        options["temperature"] = float(temperature)
    max_tokens = value.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise ChatError("invalid", "`options.max_tokens` must be an integer.")
        if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise ChatError("invalid", f"`options.max_tokens` must be 1 to {MAX_TOKENS_LIMIT}.")
        options["max_tokens"] = max_tokens
    system = value.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise ChatError("invalid", "`options.system` must be a string.")
        text_within_limit(system, "options.system")
    return options, system
