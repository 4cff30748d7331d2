"""Raycast's AI chat backend (needs the token of a Raycast Pro account)."""

from contextlib import aclosing
from typing import Any

from providers.base import AsyncGeneratorProvider, ProviderModelMixin, RaiseErrorMixin
from providers.errors import MissingAuthError
from providers.registry import register
from providers.transport import endpoint, post_for_events, request_timeout
from providers.types import AsyncResult, Messages


@register
class Raycast(AsyncGeneratorProvider, ProviderModelMixin, RaiseErrorMixin):
    label = "Raycast"
    url = "https://raycast.com"
    api_base = "https://backend.raycast.com"
    path = "/api/v1/ai/chat_completions"
    working = True
    needs_auth = True
    supports_stream = True
    supports_message_history = True
    default_model = "gpt-3.5-turbo"
    models = ["gpt-3.5-turbo", "gpt-4"]

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        stream: bool = True,
        *,
        proxy: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- bounds each wait, passed to httpx
        api_key: str | None = None,
        api_base: str | None = None,
        temperature: float = 0.5,
        auth: str | None = None,
        **kwargs: Any,
    ) -> AsyncResult:
        token = auth or api_key
        if not token:
            raise MissingAuthError("Raycast needs a token (auth or api_key).")
        headers = {
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": "Raycast/0 CFNetwork/1410.0.3 Darwin/22.6.0",
        }
        body = {
            "debug": False,
            "locale": "en-CN",
            "messages": [
                {"author": message["role"], "content": {"text": message["content"]}}
                for message in messages
            ],
            "model": cls.get_model(model),
            "provider": "openai",
            "source": "ai_chat",
            "system_instruction": "markdown",
            "temperature": float(temperature),
        }
        events = post_for_events(
            endpoint(api_base or cls.api_base, cls.path),
            body=body,
            headers=headers,
            proxy=proxy,
            timeout=request_timeout(timeout, kwargs.get("connect_timeout")),
            raise_error=cls.raise_error,
        )
        async with aclosing(events):
            async for data in events:
                if data.get("text"):
                    yield data["text"]
