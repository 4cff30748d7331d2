"""OpenAI's chat-completions wire format: the request as clients send it, parsed and checked,
and the objects we answer with (completions, stream chunks, errors), shaped as OpenAI's are so
that its own client reads them.

Parameters we do not know, or know but do not support in any way that changes the answer
(`user`, `logit_bias`, `tools`, ...), are ignored, as OpenAI's API does for unknown ones.
"""

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from conversations.errors import ChatError
from conversations.protocol import MAX_TOKENS_LIMIT, text_within_limit
from providers.types import Messages, Usage

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_SEQUENCES = 4
MAX_MODEL_NAME = 300


class ApiError(Exception):
    """An answer in OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return error_body(message=self.message, type_=self.type, param=self.param, code=self.code)


def error_body(
    *, message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    messages: Messages
    stream: bool = False
    include_usage: bool = False
    # The sampling options for stream_chat (temperature, max_tokens, stop, ...).
    options: dict[str, Any] = field(default_factory=dict)


def completion_request_parse(body: bytes) -> CompletionRequest:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("`model` is required: a model name from GET /v1/models.", "model")
    if len(model) > MAX_MODEL_NAME:
        raise ApiError(404, "The model does not exist.", param="model", code="model_not_found")
    messages = _messages_parse(data.get("messages"))
    stream = _boolean(data, "stream")
    include_usage = False
    stream_options = data.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise invalid("`stream_options` must be an object.", "stream_options")
        include_usage = _boolean(stream_options, "include_usage", "stream_options.include_usage")
    n = data.get("n")
    if n is not None and n != 1:
        raise invalid("Only one choice (`n`: 1) is supported.", "n")
    return CompletionRequest(
        model=model.strip(),
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        options=_options_parse(data),
    )


def _boolean(data: dict[str, Any], name: str, param: str | None = None) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"`{param or name}` must be true or false.", param or name)
    return value


def _messages_parse(value: Any) -> Messages:
    if not isinstance(value, list) or not value:
        raise invalid("`messages` must be a non-empty array.", "messages")
    messages: Messages = []
    for index, item in enumerate(value):
        param = f"messages[{index}]"
        if not isinstance(item, dict):
            raise invalid(f"`{param}` must be an object.", param)
        role = ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise invalid(
                f"`{param}.role` must be one of system, developer, user, assistant.",
                f"{param}.role",
            )
        content = _content_text(item.get("content"), f"{param}.content")
        try:
            text_within_limit(content, f"{param}.content")
        except ChatError as exc:
            raise invalid(exc.detail, f"{param}.content") from None
        messages.append({"role": role, "content": content})
    if not any(message["role"] == "user" for message in messages):
        raise invalid("`messages` must hold at least one user message.", "messages")
    return messages


def _content_text(value: Any, param: str) -> str:
    """A message's text: a string, or a list of content parts of which only text ones are
    supported (an image or audio part is refused, not silently dropped)."""
    if value is None:
        # An assistant turn that only called tools has no content.
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid(f"`{param}` must be a string or an array of content parts.", param)
    texts = []
    for index, part in enumerate(value):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise invalid(f"`{param}[{index}]`: only text content parts are supported.", param)
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"`{param}[{index}].text` must be a string.", param)
        texts.append(text)
    return "\n".join(texts)


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"`{name}` must be a number from {low:g} to {high:g}.", name)
    return float(value)


def _options_parse(data: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, low, high in (
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("frequency_penalty", -2, 2),
        ("presence_penalty", -2, 2),
    ):
        value = _number(data, name, low, high)
        if value is not None:
            options[name] = value
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"`{name}` must be an integer.", name)
        if not 1 <= value <= MAX_TOKENS_LIMIT:
            raise invalid(f"`{name}` must be 1 to {MAX_TOKENS_LIMIT}.", name)
        # The newer name wins when a client sends both.
        options.setdefault("max_tokens", value)
    seed = data.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise invalid("`seed` must be an integer.", "seed")
        options["seed"] = seed
    stop = data.get("stop")
    if stop is not None:
        sequences = [stop] if isinstance(stop, str) else stop
        if (
            not isinstance(sequences, list)
            or not 1 <= len(sequences) <= MAX_STOP_SEQUENCES
            or not all(isinstance(item, str) and item for item in sequences)
        ):
            raise invalid(
                f"`stop` must be a string or an array of 1 to {MAX_STOP_SEQUENCES} strings.",
                "stop",
            )
        options["stop"] = sequences
    return options


# --- Responses ---------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_object(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_object(
    *,
    id_: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    usage: Usage | None,
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_object(usage),
    }


def chunk_object(
    *,
    id_: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """One `chat.completion.chunk`. With `include_usage`, every chunk carries `"usage": null`
    as OpenAI's do; `usage_chunk` is the last one, with the figures and no choices."""
    chunk: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def usage_chunk(*, id_: str, created: int, model: str, usage: Usage | None) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage_object(usage),
    }


def sse_event(data: dict[str, Any]) -> bytes:
    """One server-sent event (WHATWG HTML, "Server-sent events": a `data:` line, then a blank
    line). JSON escapes every line break, so the payload is always a single line."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def now_seconds() -> int:
    return int(time.time())
