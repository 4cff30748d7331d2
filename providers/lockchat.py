"""Lockchat's OpenAI-style endpoint, which sometimes claims gpt-4 does not exist and then works
when asked again."""

from typing import Any

import httpx

from providers.base import AsyncGeneratorProvider, ProviderModelMixin, RaiseErrorMixin
from providers.errors import ModelNotFoundError
from providers.registry import register
from providers.transport import (
    body_lines,
    drain_lines,
    endpoint,
    parse_json,
    request_timeout,
    streamed_post,
)
from providers.types import AsyncResult, Messages

MODEL_MISSING = "The model: `gpt-4` does not exist"


class _ModelMissing(Exception):
    pass


@register
class Lockchat(AsyncGeneratorProvider, ProviderModelMixin, RaiseErrorMixin):
    label = "Lockchat"
    url = "http://supertest.lockchat.app"
    api_base = "http://supertest.lockchat.app"
    path = "/v1/chat/completions"
    working = True
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
        api_base: str | None = None,
        temperature: float = 0.7,
        max_retries: int = 3,
        **kwargs: Any,
    ) -> AsyncResult:
        body = {
            "temperature": float(temperature),
            "messages": messages,
            "model": cls.get_model(model),
            "stream": True,
        }
        headers = {"user-agent": "ChatX/39 CFNetwork/1408.0.4 Darwin/22.5.0"}
        # The upstream's spurious "model does not exist" answer comes instead of any text, so
        # asking again is safe; a bounded loop, not recursion, and its answer is the one yielded.
        for _attempt in range(max(0, int(max_retries)) + 1):
            try:
                async for chunk in cls._request(
                    body,
                    headers,
                    api_base,
                    proxy,
                    request_timeout(timeout, kwargs.get("connect_timeout")),
                ):
                    yield chunk
                return
            except _ModelMissing:
                continue
        raise ModelNotFoundError(f"Lockchat says the model {body['model']} does not exist.")

    @classmethod
    async def _request(
        cls,
        body: dict[str, Any],
        headers: dict[str, str],
        api_base: str | None,
        proxy: str | None,
        timeout: httpx.Timeout,  # noqa: ASYNC109 -- passed to httpx
    ) -> AsyncResult:
        answered = False
        async with streamed_post(
            endpoint(api_base or cls.api_base, cls.path),
            body=body,
            headers=headers,
            proxy=proxy,
            timeout=timeout,
            raise_error=cls.raise_error,
        ) as response:
            # Raw lines rather than post_for_events: the model-missing answer counts in any line,
            # and must be seen before raise_error would turn it into an error.
            lines = body_lines(response)
            async for line in lines:
                if MODEL_MISSING in line:
                    if answered:
                        raise ModelNotFoundError(MODEL_MISSING)
                    raise _ModelMissing()
                if line.startswith("data:"):
                    payload = line.removeprefix("data:").strip()
                elif line.startswith("{"):
                    payload = line  # a bare JSON line: an error object sent without SSE
                else:
                    continue  # comments, keep-alive blank lines, other SSE fields
                if payload == "[DONE]":
                    await drain_lines(lines)
                    return
                data = parse_json(payload)
                if not isinstance(data, dict):
                    continue
                cls.raise_error(data)
                for choice in data.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        answered = True
                        yield content
