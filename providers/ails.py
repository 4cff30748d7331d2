"""ai.ls (api.caipacity.com): OpenAI-style streaming behind a signed request."""

import hashlib
import time
import uuid
from contextlib import aclosing
from datetime import datetime
from typing import Any

from providers.base import AsyncGeneratorProvider, ProviderModelMixin, RaiseErrorMixin
from providers.errors import ResponseError
from providers.registry import register
from providers.transport import endpoint, post_for_events, request_timeout
from providers.types import AsyncResult, Messages

# The signing salt the ai.ls web client uses; not a secret of ours.
_SALT = "WI,2rU#_r:r~aF4aJ36[.Z(/8Rv93Rf"
CLIENT_VERSION = "0.1.278"


class Utils:
    @staticmethod
    def hash(json_data: dict[str, str]) -> str:
        t, m = json_data["t"], json_data["m"]
        return hashlib.sha256(f"{t}:{m}:{_SALT}:{len(m)}".encode()).hexdigest()

    @staticmethod
    def format_timestamp(timestamp: int) -> str:
        """The millisecond time as a string with an odd last digit (the upstream checks it)."""
        last = timestamp % 10
        return str(timestamp + 1 if last % 2 == 0 else timestamp)


@register
class Ails(AsyncGeneratorProvider, ProviderModelMixin, RaiseErrorMixin):
    label = "Ails (ai.ls)"
    url = "https://ai.ls"
    api_base = "https://api.caipacity.com"
    path = "/v1/chat/completions"
    working = True
    supports_stream = True
    supports_message_history = True
    default_model = "gpt-3.5-turbo"
    models = ["gpt-3.5-turbo"]

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
        temperature: float = 0.6,
        **kwargs: Any,
    ) -> AsyncResult:
        cls.get_model(model)
        headers = {
            "authority": "api.caipacity.com",
            "accept": "*/*",
            "authorization": "Bearer free",
            "client-id": str(uuid.uuid4()),
            "client-v": CLIENT_VERSION,
            "content-type": "application/json",
            "from-url": "https://ai.ls/?chat=1",
            "origin": "https://ai.ls",
            "referer": "https://ai.ls/",
        }
        timestamp = Utils.format_timestamp(int(time.time() * 1000))
        last_content = messages[-1]["content"] if messages else ""
        body = {
            "model": "gpt-3.5-turbo",
            "temperature": float(temperature),
            "stream": True,
            "messages": messages,
            "d": datetime.now().strftime("%Y-%m-%d"),
            "t": timestamp,
            "s": Utils.hash({"t": timestamp, "m": last_content}),
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
                for choice in data.get("choices") or []:
                    token = (choice.get("delta") or {}).get("content")
                    if not token:
                        continue
                    lowered = token.lower()
                    if "ai.ls" in lowered or "ai.ci" in lowered:
                        # The upstream advertises itself instead of answering.
                        raise ResponseError("Ails answered with an advertisement.")
                    yield token
