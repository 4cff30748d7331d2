import asyncio

import httpx
import pytest

from providers.ails import Ails
from providers.errors import ProviderTimeoutError, ResponseStatusError, UpstreamDroppedError
from providers.lockchat import Lockchat
from providers.openai_compatible import OpenAICompatible
from providers.raycast import Raycast
from providers.transport import request_timeout, shared_client, sse_data
from tests.providers.conftest import USER_HELLO


class Pieces(httpx.AsyncByteStream):
    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    async def __aiter__(self):
        for piece in self.pieces:
            yield piece


async def payloads(*pieces: bytes) -> list[str]:
    response = httpx.Response(200, stream=Pieces(*pieces))
    return [payload async for payload in sse_data(response)]


async def test_sse_joins_lines_split_across_reads_and_mixed_line_endings():
    assert await payloads(
        b'data: {"a"',
        b": 1}\r",
        b"\n\r\n",
        b'data: {"b": 2}\n',
        b"\n",
        b'data: {"c": "\xc3',
        b'\xa9"}\r\n',
    ) == ['{"a": 1}', '{"b": 2}', '{"c": "é"}']


async def test_sse_skips_comments_blank_lines_and_other_fields_and_stops_at_done():
    assert await payloads(
        b": keep-alive\n\n",
        b"event: message\nid: 7\nretry: 100\n",
        b'data:{"tight": true}\n\n',
        b"data: [DONE]\n\n",
        b'data: {"after": "done"}\n\n',
    ) == ['{"tight": true}']


async def test_sse_passes_bare_json_lines_through():
    assert await payloads(b'{"error": "plain json line"}\n') == ['{"error": "plain json line"}']


async def test_one_shared_client_per_loop_and_proxy():
    client = shared_client()
    assert shared_client() is client
    assert shared_client("http://127.0.0.1:3128") is not client
    other_loop_client = await asyncio.to_thread(asyncio.run, _client_in_new_loop())
    assert other_loop_client is not client


async def _client_in_new_loop():
    client = shared_client()
    await client.aclose()
    return client


def test_timeout_bounds_reads_and_caps_connect():
    timeout = request_timeout(30)
    assert (timeout.read, timeout.connect, timeout.write) == (30, 10, 30)
    assert request_timeout(2).connect == 2
    assert request_timeout(None).read == 60


STREAMING = [
    (OpenAICompatible, "fake-model", "/v1", {}),
    (Raycast, "gpt-4", "", {"auth": "raycast-token"}),
    (Lockchat, "gpt-4", "", {}),
    (Ails, "gpt-3.5-turbo", "", {}),
]
IDS = [provider.__name__ for provider, *_ in STREAMING]


async def stream(provider, model, suffix, extra, fake_upstream, **kwargs):
    return [
        chunk
        async for chunk in provider.create_async_generator(
            model, USER_HELLO, api_base=fake_upstream.url + suffix, **extra, **kwargs
        )
    ]


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_every_streaming_provider_reports_a_dropped_stream(
    fake_upstream, provider, model, suffix, extra
):
    fake_upstream.behave(reply="one two three four", drop_after=2, nasty=True)
    with pytest.raises(UpstreamDroppedError):
        await stream(provider, model, suffix, extra, fake_upstream)


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_every_streaming_provider_times_out_on_a_slow_first_byte(
    fake_upstream, provider, model, suffix, extra
):
    fake_upstream.behave(first_byte_delay=0.5)
    with pytest.raises(ProviderTimeoutError):
        await stream(provider, model, suffix, extra, fake_upstream, timeout=0.1)


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_every_streaming_provider_maps_a_500_with_json_body(
    fake_upstream, provider, model, suffix, extra
):
    fake_upstream.behave(status=500, error_body={"error": {"message": "kaput"}})
    with pytest.raises(ResponseStatusError, match="Error 500: kaput"):
        await stream(provider, model, suffix, extra, fake_upstream)
