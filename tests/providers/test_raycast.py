import re

import pytest

from providers.errors import MissingAuthError, ModelNotFoundError, RateLimitError, ResponseError
from providers.raycast import Raycast
from tests.fake_upstream import deltas_of

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello"},
]


async def collect(fake_upstream, **kwargs):
    kwargs.setdefault("auth", "raycast-token-1234")
    return [
        chunk
        async for chunk in Raycast.create_async_generator(
            kwargs.pop("model", "gpt-4"), MESSAGES, api_base=fake_upstream.url, **kwargs
        )
    ]


async def test_request_matches_the_raycast_wire_format(fake_upstream):
    await collect(fake_upstream, temperature=0.9)
    [request] = fake_upstream.requests
    assert (request.method, request.path) == ("POST", "/api/v1/ai/chat_completions")
    assert request.headers["authorization"] == "Bearer raycast-token-1234"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Raycast/0 CFNetwork/1410.0.3 Darwin/22.6.0"
    assert request.json == {
        "debug": False,
        "locale": "en-CN",
        "messages": [
            {"author": "system", "content": {"text": "Be brief."}},
            {"author": "user", "content": {"text": "Hello"}},
        ],
        "model": "gpt-4",
        "provider": "openai",
        "source": "ai_chat",
        "system_instruction": "markdown",
        "temperature": 0.9,
    }


async def test_temperature_defaults_to_half_and_api_key_works_as_token(fake_upstream):
    await collect(fake_upstream, auth=None, api_key="key-from-config")
    [request] = fake_upstream.requests
    assert request.json["temperature"] == 0.5
    assert request.headers["authorization"] == "Bearer key-from-config"


async def test_yields_each_text_and_skips_the_null_final_event(fake_upstream):
    fake_upstream.behave(reply="Raycast says hi")
    assert await collect(fake_upstream) == deltas_of("Raycast says hi")


async def test_nasty_framing_yields_the_same_text(fake_upstream):
    fake_upstream.behave(reply="Ça va? 😀 très bien", nasty=True)
    assert await collect(fake_upstream) == deltas_of("Ça va? 😀 très bien")


async def test_missing_token_raises_before_any_request(fake_upstream):
    with pytest.raises(MissingAuthError):
        await collect(fake_upstream, auth=None)
    assert fake_upstream.requests == []


async def test_unsupported_model_raises_before_any_request(fake_upstream):
    with pytest.raises(ModelNotFoundError, match=re.escape("gpt-3.5-turbo, gpt-4")):
        await collect(fake_upstream, model="claude")
    assert fake_upstream.requests == []


async def test_error_status_goes_through_raise_error(fake_upstream):
    fake_upstream.behave(status=429)
    with pytest.raises(RateLimitError, match="Error 429"):
        await collect(fake_upstream)


async def test_error_object_in_the_stream_raises(fake_upstream):
    fake_upstream.behave(error_body={"error": "quota exceeded"})
    with pytest.raises(ResponseError, match="quota exceeded"):
        await collect(fake_upstream)
