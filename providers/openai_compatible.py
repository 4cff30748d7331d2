"""Any server speaking OpenAI's chat completions API: OpenAI, Ollama, vLLM, llama.cpp's server,
LM Studio, OpenRouter, Groq and the like."""

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from providers.base import (
    MAX_UPSTREAM_MESSAGE,
    AsyncGeneratorProvider,
    ProviderModelMixin,
    RaiseErrorMixin,
)
from providers.bridge import run_sync
from providers.errors import ModelNotFoundError, UpstreamDroppedError
from providers.registry import register
from providers.transport import (
    PostOptions,
    client_lanes,
    parse_json,
    post_for_events,
    post_json,
    raise_for_status,
    request_timeout,
    translate_transport_errors,
)
from providers.types import SAMPLING_OPTIONS, AsyncResult, FinishReason, Messages, Usage

# Options forwarded to the upstream as they are, when given: the sampling options OpenAI's API
# has (not top_k), and the ones a library caller may add.
FORWARDED_OPTIONS = (
    *(name for name in SAMPLING_OPTIONS if name != "top_k"),
    "n",
    "response_format",
    "tools",
)


@register
class OpenAICompatible(AsyncGeneratorProvider, ProviderModelMixin, RaiseErrorMixin):
    label = "OpenAI-compatible API"
    url = "https://platform.openai.com"
    api_base = "https://api.openai.com/v1"
    working = True
    needs_auth = False  # local servers need none; hosted ones take api_key
    supports_stream = True
    supports_message_history = True
    supports_system_message = True
    # Content-part lists go to the upstream as they are; whether the model reads images is the
    # admin's to say (the config's `vision` flag).
    supports_vision = True
    default_model = ""

    @classmethod
    def _headers(cls, api_key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    @classmethod
    def _base(cls, api_base: str | None) -> str:
        return (api_base or cls.api_base or "").rstrip("/")

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        stream: bool = True,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        proxy: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- bounds each wait, passed to httpx
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: list[str] | str | None = None,
        seed: int | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        n: int | None = None,
        response_format: dict | None = None,
        tools: list | None = None,
        **kwargs: Any,
    ) -> AsyncResult:
        model = cls.get_model(model)
        if not model:
            raise ModelNotFoundError("No model is configured for this provider.")
        options = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "top_p": top_p,
            "stop": stop,
            "seed": seed,
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
            "n": n,
            "response_format": response_format,
            "tools": tools,
        }
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        body.update({key: value for key, value in options.items() if value is not None})
        headers = cls._headers(api_key)
        if stream:
            headers["Accept"] = "text/event-stream"
        url = f"{cls._base(api_base)}/chat/completions"
        options: PostOptions = {
            "body": body,
            "headers": headers,
            "proxy": proxy,
            "timeout": request_timeout(timeout, kwargs.get("connect_timeout")),
            "raise_error": cls.raise_error,
        }
        if not stream:
            for chunk in cls._read_completion(await post_json(url, **options)):
                yield chunk
            return
        events = post_for_events(url, **options)
        async with aclosing(events):
            async for chunk in cls._read_stream(events):
                yield chunk

    @staticmethod
    def raise_error(data: Any, status: int | None = None) -> None:
        # OpenAI says 404 for an unknown model, llama.cpp's Python server 400; the code is the same.
        error = data.get("error") if isinstance(data, dict) else None
        if (
            status in (400, 404)
            and isinstance(error, dict)
            and error.get("code") == "model_not_found"
        ):
            raise ModelNotFoundError(str(error.get("message") or "")[:MAX_UPSTREAM_MESSAGE] or None)
        RaiseErrorMixin.raise_error(data, status)

    @classmethod
    def _read_completion(cls, data: Any) -> list[Any]:
        cls.raise_error(data)
        chunks: list[Any] = []
        choice = ((data or {}).get("choices") or [{}])[0]
        content = (choice.get("message") or {}).get("content")
        if content:
            chunks.append(content)
        if usage := cls._usage(data):
            chunks.append(usage)
        if choice.get("finish_reason"):
            chunks.append(FinishReason(choice["finish_reason"]))
        return chunks

    @classmethod
    async def _read_stream(cls, events: AsyncIterator[dict[str, Any]]) -> AsyncResult:
        finish_reason = None
        async for data in events:
            for choice in data.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield content
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
            if usage := cls._usage(data):
                yield usage
        if not finish_reason:
            # Every complete answer ends with a finish reason. Some servers end the stream cleanly
            # without one when they give up: llama.cpp's Python server sends an empty stream for a
            # failure after its 200 header, and cuts a stream short when another request arrives.
            raise UpstreamDroppedError()
        # The finish reason comes last, after the usage event that follows it on the wire.
        yield FinishReason(finish_reason)

    @staticmethod
    def _usage(data: dict[str, Any]) -> Usage | None:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        return Usage(prompt, completion, int(usage.get("total_tokens") or prompt + completion))

    @classmethod
    async def fetch_models(
        cls,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        proxy: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- passed to httpx
    ) -> list[str]:
        """The model ids `GET {api_base}/models` lists."""
        with translate_transport_errors(), client_lanes(proxy).lane() as client:
            response = await client.get(
                f"{cls._base(api_base)}/models",
                headers=cls._headers(api_key),
                timeout=request_timeout(timeout),
            )
            await raise_for_status(response, cls.raise_error)
        data = parse_json(response.text)
        return [item["id"] for item in (data or {}).get("data") or [] if "id" in item]

    @classmethod
    def get_models(cls, **kwargs: Any) -> list[str]:
        """With `api_base` (and `api_key`...): fetched from the server; else the declared list."""
        if kwargs.get("api_base"):
            return run_sync(lambda: cls.fetch_models(**kwargs))
        return super().get_models()
