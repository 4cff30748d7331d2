"""chat-gpt.org's text endpoint: one JSON request, one JSON answer (no streaming)."""

from typing import Any

from providers.base import AsyncProvider, RaiseErrorMixin
from providers.errors import ResponseError
from providers.registry import register
from providers.transport import endpoint, post_json, request_timeout
from providers.types import Messages

# The upstream serves its own web page's requests; it is sent what a desktop browser sends.
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36"
)


def format_prompt(messages: Messages) -> str:
    """One message: its content. Several: a `Role: content` line each, then `Assistant:`."""
    if len(messages) <= 1:
        return messages[0]["content"] if messages else ""
    lines = "\n".join(
        f"{message['role'].capitalize()}: {message['content']}"
        for message in messages
        if message.get("content")
    )
    return f"{lines}\nAssistant:"


@register
class Aichat(AsyncProvider, RaiseErrorMixin):
    label = "Aichat (chat-gpt.org)"
    url = "https://chat-gpt.org"
    api_base = "https://chat-gpt.org"
    path = "/api/text"
    working = True
    supports_stream = False
    supports_message_history = True
    default_model = "gpt-3.5-turbo"

    @classmethod
    async def create_async(
        cls,
        model: str,
        messages: Messages,
        *,
        proxy: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- bounds each wait, passed to httpx
        api_base: str | None = None,
        temperature: float = 0.5,
        top_p: float = 1,
        **kwargs: Any,
    ) -> str:
        headers = {
            "accept": "*/*",
            "content-type": "application/json",
            "origin": cls.url,
            "referer": f"{cls.url}/chat",
            "user-agent": USER_AGENT,
        }
        body = {
            "message": format_prompt(messages),
            "temperature": float(temperature),
            "presence_penalty": 0,
            "top_p": top_p,
            "frequency_penalty": 0,
        }
        data = await post_json(
            endpoint(api_base or cls.api_base, cls.path),
            body=body,
            headers=headers,
            proxy=proxy,
            timeout=request_timeout(timeout, kwargs.get("connect_timeout")),
            raise_error=cls.raise_error,
        )
        if not isinstance(data, dict) or not data.get("response"):
            cls.raise_error(data)
            raise ResponseError("Aichat did not return an answer.")
        return str(data.get("message") or "")
