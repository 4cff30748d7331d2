import re
import uuid
from datetime import datetime

import pytest

from providers.ails import Ails, Utils
from providers.errors import ResponseError
from tests.fake_upstream import ails_signature, deltas_of

MESSAGES = [
    {"role": "user", "content": "First"},
    {"role": "assistant", "content": "Sure"},
    {"role": "user", "content": "Hello"},
]


async def collect(fake_upstream, **kwargs):
    return [
        chunk
        async for chunk in Ails.create_async_generator(
            "gpt-3.5-turbo", MESSAGES, api_base=fake_upstream.url, **kwargs
        )
    ]


def test_hash_matches_the_known_vector():
    assert Utils.hash({"t": "1690000000001", "m": "Hello"}) == (
        "2cd91ec45337301dada1fb623c7e8f233f84d440206f0863ab340adcacbd9152"
    )


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (1690000000000, "1690000000001"),
        (1690000000004, "1690000000005"),
        (1690000000007, "1690000000007"),
        (1690000000009, "1690000000009"),
    ],
)
def test_format_timestamp_makes_the_last_digit_odd(ms, expected):
    assert Utils.format_timestamp(ms) == expected


async def test_request_matches_the_ails_wire_format(fake_upstream):
    await collect(fake_upstream, temperature=0.2)
    [request] = fake_upstream.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    headers = request.headers
    assert headers["authorization"] == "Bearer free"
    assert uuid.UUID(headers["client-id"]).version == 4
    assert headers["client-v"] == "0.1.278"
    assert headers["from-url"] == "https://ai.ls/?chat=1"
    assert headers["origin"] == "https://ai.ls"
    assert headers["referer"] == "https://ai.ls/"
    assert headers["content-type"] == "application/json"
    body = request.json
    assert re.fullmatch(r"\d{13}", body["t"]) and int(body["t"][-1]) % 2 == 1
    assert body == {
        "model": "gpt-3.5-turbo",
        "temperature": 0.2,
        "stream": True,
        "messages": MESSAGES,
        "d": datetime.now().strftime("%Y-%m-%d"),
        "t": body["t"],
        "s": ails_signature(body["t"], "Hello"),
    }


async def test_temperature_defaults_to_0_6(fake_upstream):
    await collect(fake_upstream)
    assert fake_upstream.requests[0].json["temperature"] == 0.6


async def test_done_ends_the_stream_cleanly_under_nasty_framing(fake_upstream):
    fake_upstream.behave(reply="Signed and streamed", nasty=True)
    assert await collect(fake_upstream) == deltas_of("Signed and streamed")


async def test_advertisement_token_raises_response_error(fake_upstream):
    fake_upstream.behave(reply="Visit AI.LS for more")
    with pytest.raises(ResponseError, match="advertisement"):
        await collect(fake_upstream)
