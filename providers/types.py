"""Message and chunk types shared by every provider.

A stream carries text (`str`) and response objects. A response object's `str()` is "", so code
that only concatenates chunks gets the text and nothing else.
"""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

# A message's content is a string, or (a user message with images) a list of OpenAI-style content
# parts: {"type": "text", "text": ...} and {"type": "image_url", "image_url": {"url": ...}}.
Messages = list[dict[str, Any]]

# The sampling options: how an answer is written, never where the request goes or with which
# credentials. The one list every other list of option names is made from: what a caller of
# stream_chat may set per request, what OpenAICompatible forwards, what get_parameters shows.
SAMPLING_OPTIONS = (
    "temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "frequency_penalty",
    "presence_penalty",
)  # fmt: skip


class ResponseObject:
    def __str__(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class FinishReason(ResponseObject):
    reason: str


@dataclass(frozen=True, slots=True)
class Usage(ResponseObject):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class ProviderInfo(ResponseObject):
    """Which configuration and model actually answer (for a fallback chain: the member that did)."""

    provider: str
    model: str


class AuthResult(ResponseObject):
    """What an authenticated provider needs for its requests (api_key, cookies, ...).

    Free-form keyword fields, as upstream logins return different things. The repr names the
    fields but never shows their values: an AuthResult usually holds a secret.
    """

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def get_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuthResult) and self.get_dict() == other.get_dict()

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"AuthResult({', '.join(f'{name}=…' for name in sorted(self.__dict__))})"


Chunk = str | ResponseObject
CreateResult = Iterator[Chunk]
AsyncResult = AsyncIterator[Chunk]
