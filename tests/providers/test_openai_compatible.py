import asyncio

import pytest

from providers.errors import (
    BadRequestError,
    MalformedResponseError,
    MissingAuthError,
    ModelNotFoundError,
    PaymentRequiredError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseStatusError,
    UpstreamDroppedError,
    UpstreamUnavailableError,
)
from providers.openai_compatible import OpenAICompatible
from providers.types import FinishReason, Usage
from tests.fake_upstream import deltas_of
from tests.providers.conftest import USER_HELLO


async def collect(**kwargs):
    kwargs.setdefault("model", "fake-model")
    kwargs.setdefault("messages", USER_HELLO)
    return [chunk async for chunk in OpenAICompatible.create_async_generator(**kwargs)]


async def test_streams_word_deltas_then_usage_then_finish_reason(fake_upstream):
    fake_upstream.behave(reply="One two three.")
    chunks = await collect(api_base=fake_upstream.url + "/v1")
    assert chunks == [
        "One ",
        "two ",
        "three.",
        Usage(prompt_tokens=1, completion_tokens=3, total_tokens=4),
        FinishReason("stop"),
    ]


async def test_request_body_and_headers_as_the_upstream_received_them(fake_upstream):
    await collect(
        api_base=fake_upstream.url + "/v1",
        api_key="sk-secret-token-1234",
        temperature=0.2,
        max_tokens=50,
        stop=["\n"],
    )
    [request] = fake_upstream.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret-token-1234"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "text/event-stream"
    assert request.json == {
        "model": "fake-model",
        "messages": USER_HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["\n"],
    }


async def test_no_authorization_header_without_api_key(fake_upstream):
    await collect(api_base=fake_upstream.url + "/v1")
    assert "authorization" not in fake_upstream.requests[0].headers


async def test_nasty_framing_yields_the_same_text(fake_upstream):
    reply = "Ünïcödé 😀 split across chunks, with CRLF and comments."
    fake_upstream.behave(reply=reply, nasty=True)
    chunks = await collect(api_base=fake_upstream.url + "/v1")
    assert [c for c in chunks if isinstance(c, str)] == deltas_of(reply)


async def test_non_streaming_returns_the_whole_message(fake_upstream):
    fake_upstream.behave(reply="All at once.")
    chunks = await collect(api_base=fake_upstream.url + "/v1", stream=False)
    assert chunks[0] == "All at once."
    assert FinishReason("stop") in chunks
    assert fake_upstream.requests[0].json["stream"] is False
    assert "stream_options" not in fake_upstream.requests[0].json


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, MissingAuthError),
        (402, PaymentRequiredError),
        (429, RateLimitError),
        (500, ResponseStatusError),
    ],
)
async def test_error_status_raises_typed_error_with_upstream_message(
    fake_upstream, status, error_type
):
    fake_upstream.behave(status=status)
    with pytest.raises(error_type) as caught:
        await collect(api_base=fake_upstream.url + "/v1")
    assert str(caught.value).startswith(f"Error {status}: ")
    assert f"Fake upstream says {status}" in str(caught.value)


async def test_error_status_with_non_json_body_still_raises_typed_error(fake_upstream):
    fake_upstream.behave(status=503, error_body="<html>down</html>")
    with pytest.raises(ResponseStatusError, match="Error 503"):
        await collect(api_base=fake_upstream.url + "/v1")


async def test_unknown_model_raises_model_not_found(fake_upstream):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        await collect(api_base=fake_upstream.url + "/v1", model="no-such-model")


async def test_error_object_inside_the_stream_raises(fake_upstream):
    fake_upstream.behave(error_body={"error": {"message": "overloaded", "code": 429}})
    with pytest.raises(RateLimitError, match="overloaded"):
        await collect(api_base=fake_upstream.url + "/v1")


async def test_stream_dropped_mid_way_raises_after_the_text_so_far(fake_upstream):
    fake_upstream.behave(reply="one two three four", drop_after=2)
    received = []
    with pytest.raises(UpstreamDroppedError) as caught:
        async for chunk in OpenAICompatible.create_async_generator(
            "fake-model", USER_HELLO, api_base=fake_upstream.url + "/v1"
        ):
            received.append(chunk)
    assert received == ["one ", "two "]
    assert caught.value.code == "upstream_dropped"


async def test_slow_first_byte_raises_provider_timeout(fake_upstream):
    fake_upstream.behave(first_byte_delay=60)
    with pytest.raises(ProviderTimeoutError) as caught:
        await collect(api_base=fake_upstream.url + "/v1", timeout=0.2)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.code == "timeout"


async def test_connection_refused_raises_upstream_unavailable(closed_port_url):
    with pytest.raises(UpstreamUnavailableError) as caught:
        await collect(api_base=closed_port_url + "/v1")
    assert caught.value.code == "upstream_unavailable"


async def test_malformed_event_raises_malformed_response(fake_upstream):
    fake_upstream.behave(error_body="{not json")
    with pytest.raises(MalformedResponseError) as caught:
        await collect(api_base=fake_upstream.url + "/v1")
    assert caught.value.code == "malformed_response"


async def test_closing_the_stream_early_closes_the_upstream_connection(fake_upstream):
    fake_upstream.behave(reply="word " * 200, chunk_delay=0.01)
    stream = OpenAICompatible.create_async_generator(
        "fake-model", USER_HELLO, api_base=fake_upstream.url + "/v1"
    )
    assert await anext(stream) == "word "
    await stream.aclose()
    request = await asyncio.to_thread(fake_upstream.wait_done, 5.0)
    assert request.disconnected.is_set()


async def test_cancelling_the_consumer_closes_the_upstream_connection(fake_upstream):
    fake_upstream.behave(reply="word " * 200, chunk_delay=0.01)
    first = asyncio.Event()

    async def consume():
        async for _ in OpenAICompatible.create_async_generator(
            "fake-model", USER_HELLO, api_base=fake_upstream.url + "/v1"
        ):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    request = await asyncio.to_thread(fake_upstream.wait_done, 5.0)
    assert request.disconnected.is_set()


async def test_fetch_models_lists_the_servers_models(fake_upstream):
    models = await OpenAICompatible.fetch_models(
        api_base=fake_upstream.url + "/v1", api_key="sk-models-key"
    )
    assert models == ["fake-model", "fake-model-2"]
    [request] = fake_upstream.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["authorization"] == "Bearer sk-models-key"


def test_get_models_with_api_base_fetches_from_sync_code(fake_upstream):
    assert OpenAICompatible.get_models(api_base=fake_upstream.url + "/v1") == [
        "fake-model",
        "fake-model-2",
    ]


async def test_missing_model_raises_before_any_request(fake_upstream):
    with pytest.raises(ModelNotFoundError):
        await collect(api_base=fake_upstream.url + "/v1", model="")
    assert fake_upstream.requests == []
