import pytest

from providers.errors import ModelNotFoundError, PaymentRequiredError
from providers.lockchat import Lockchat
from tests.fake_upstream import deltas_of
from tests.providers.conftest import USER_HELLO


async def collect(fake_upstream, **kwargs):
    return [
        chunk
        async for chunk in Lockchat.create_async_generator(
            kwargs.pop("model", "gpt-4"), USER_HELLO, api_base=fake_upstream.url, **kwargs
        )
    ]


async def test_request_matches_the_lockchat_wire_format(fake_upstream):
    await collect(fake_upstream)
    [request] = fake_upstream.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["user-agent"] == "ChatX/39 CFNetwork/1408.0.4 Darwin/22.5.0"
    assert request.json == {
        "temperature": 0.7,
        "messages": USER_HELLO,
        "model": "gpt-4",
        "stream": True,
    }


async def test_yields_delta_contents(fake_upstream):
    fake_upstream.behave(reply="Lock and chat", nasty=True)
    assert await collect(fake_upstream) == deltas_of("Lock and chat")


async def test_model_missing_answer_is_retried_and_the_retry_is_yielded(fake_upstream):
    fake_upstream.behave(reply="Second time lucky", model_missing=2)
    assert await collect(fake_upstream) == deltas_of("Second time lucky")
    assert len(fake_upstream.requests) == 3


async def test_model_missing_past_max_retries_raises_model_not_found(fake_upstream):
    fake_upstream.behave(model_missing=10)
    with pytest.raises(ModelNotFoundError):
        await collect(fake_upstream, max_retries=2)
    assert len(fake_upstream.requests) == 3


async def test_model_missing_is_retried_three_times_by_default(fake_upstream):
    fake_upstream.behave(model_missing=10)
    with pytest.raises(ModelNotFoundError, match="gpt-4"):
        await collect(fake_upstream)
    assert len(fake_upstream.requests) == 4  # the request and three retries


async def test_retries_resend_the_same_request(fake_upstream):
    fake_upstream.behave(reply="Third", model_missing=2)
    await collect(fake_upstream, temperature=0.2)
    bodies = [request.json for request in fake_upstream.requests]
    assert bodies == [bodies[0]] * 3 and bodies[0]["temperature"] == 0.2


async def test_error_status_goes_through_raise_error(fake_upstream):
    fake_upstream.behave(status=402)
    with pytest.raises(PaymentRequiredError):
        await collect(fake_upstream)
