import asyncio
import itertools
import json
import os
import subprocess
import sys

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from providers.aichat import Aichat
from providers.ails import Ails
from providers.base import AsyncGeneratorProvider
from providers.errors import (
    MissingAuthError,
    PaymentRequiredError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
    UpstreamDroppedError,
)
from providers.lockchat import Lockchat
from providers.openai_compatible import OpenAICompatible
from providers.raycast import Raycast
from providers.transport import (
    body_lines,
    client_lanes,
    close_shared_clients,
    request_timeout,
    sse_data,
)
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


async def test_one_set_of_clients_per_loop_and_proxy():
    lanes = client_lanes()
    assert client_lanes() is lanes
    assert client_lanes("http://127.0.0.1:3128") is not lanes
    other_loop_lanes = await asyncio.to_thread(asyncio.run, _lanes_in_new_loop())
    assert other_loop_lanes is not lanes


async def _lanes_in_new_loop():
    lanes = client_lanes()
    await lanes.aclose()
    return lanes


# A fresh process: imports and the TLS context are per process, and this one's test run has
# made both long ago. It warms up (or not), then times nothing: it lists what the first request
# through a lane still had to import, and whether the lanes share the process's TLS context.
FIRST_REQUEST = """
import asyncio, json, sys
from django.conf import settings
from tests.fake_upstream import FakeUpstream
from providers import transport

settings.PROVIDER_MAX_CONNECTIONS  # a server has its settings loaded long before an answer

if sys.argv[1] == "warm":
    transport.transport_warm_up()

async def first_request(url):
    lanes = transport.client_lanes()
    before = set(sys.modules)
    with lanes.lane() as client:
        body = {"model": "fake-model", "messages": []}
        response = await client.post(url + "/v1/chat/completions", json=body)
    imported = sorted(set(sys.modules) - before)
    shared = client._transport._pool._ssl_context is transport.shared_ssl_context()
    await transport.close_shared_clients()
    return {"status": response.status_code, "imported": imported, "shared": shared}

upstream = FakeUpstream()
print(json.dumps(asyncio.run(first_request(upstream.url))))
upstream.close()
"""


@pytest.mark.parametrize("warm", ["warm", "cold"])
def test_the_warm_up_leaves_the_first_request_nothing_to_load(warm):
    """What the first answer of a new server process would pay for on the event loop (40 ms of
    its first token: the CA bundle, anyio's modules) is paid at start instead."""
    child = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, warm],
        env={**os.environ, "ENV_FILE": "", "DATABASE_URL": "", "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    first = json.loads(child.stdout.strip().splitlines()[-1])
    assert (first["status"], first["shared"]) == (200, True)
    if warm == "warm":
        assert first["imported"] == []
    else:  # what the warm-up spares it (the test's own check that it can tell)
        assert any(name.startswith("anyio.") for name in first["imported"]), first["imported"]


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
    kwargs.setdefault("api_base", fake_upstream.url + suffix)
    return [
        chunk
        async for chunk in provider.create_async_generator(model, USER_HELLO, **extra, **kwargs)
    ]


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_every_streaming_provider_reports_a_dropped_stream(
    fake_upstream, provider, model, suffix, extra
):
    fake_upstream.behave(reply="one two three four", drop_after=2, nasty=True)
    with pytest.raises(UpstreamDroppedError):
        await stream(provider, model, suffix, extra, fake_upstream)


# Aichat answers in one piece: everything about requests and statuses applies to it too.
EVERY = [*STREAMING, (Aichat, "gpt-3.5-turbo", "", {})]
EVERY_IDS = [provider.__name__ for provider, *_ in EVERY]


async def answer(provider, model, suffix, extra, fake_upstream, **kwargs):
    if issubclass(provider, AsyncGeneratorProvider):
        return await stream(provider, model, suffix, extra, fake_upstream, **kwargs)
    origin = kwargs.pop("api_base", fake_upstream.url + suffix)
    return [await provider.create_async(model, USER_HELLO, api_base=origin, **extra, **kwargs)]


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), EVERY, ids=EVERY_IDS)
async def test_every_provider_times_out_on_a_slow_first_byte(
    fake_upstream, provider, model, suffix, extra
):
    # The upstream stops waiting as soon as the client leaves: a long delay costs nothing and
    # stays longer than the timeout however slowly the test's loop runs.
    fake_upstream.behave(first_byte_delay=60)
    with pytest.raises(ProviderTimeoutError):
        await answer(provider, model, suffix, extra, fake_upstream, timeout=0.1)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, MissingAuthError),
        (402, PaymentRequiredError),
        (429, RateLimitError),
        (500, ResponseStatusError),
    ],
)
@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), EVERY, ids=EVERY_IDS)
async def test_every_provider_maps_error_statuses_with_json_bodies(
    fake_upstream, provider, model, suffix, extra, status, error_type
):
    fake_upstream.behave(status=status, error_body={"error": {"message": "kaput"}})
    with pytest.raises(error_type) as caught:
        await answer(provider, model, suffix, extra, fake_upstream)
    assert str(caught.value) == f"Error {status}: kaput"
    assert len(fake_upstream.requests) == 1  # an error status is not retried


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_every_streaming_provider_raises_an_error_object_sent_in_the_stream(
    fake_upstream, provider, model, suffix, extra
):
    fake_upstream.behave(error_body={"error": {"message": "overloaded", "code": 429}})
    with pytest.raises(RateLimitError, match=r"^Error 429: overloaded$"):
        await stream(provider, model, suffix, extra, fake_upstream)


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_every_streaming_provider_raises_a_bare_json_error_line(
    fake_upstream, provider, model, suffix, extra
):
    # No `data:` prefix, and the line cut in two across network chunks.
    fake_upstream.behave(raw_stream=('{"error": {"message": "bare', ' failure"}}\r\n'))
    with pytest.raises(ResponseError, match=r"^bare failure$"):
        await stream(provider, model, suffix, extra, fake_upstream)


def hostile_body(event) -> tuple[str, ...]:
    """Two text events among comments, keep-alives, other fields, CRLF and LF endings and a line
    cut mid-JSON, the closing event; then [DONE] and an event that must never be read."""
    first, second, late = (json.dumps(event(text)) for text in ("Hél", "lo", " after done"))
    return (
        ": a comment\r\n",
        "\r\n",
        f"data: {first[:9]}",
        f"{first[9:]}\r\n\r\n",
        "\n",
        f"data:{second}\n\n",
        "event: ping\nid: 3\nretry: 10\n\n",
        f"data: {json.dumps(event(None))}\r\n\r\n",
        "data: [DONE]\r\n\r\n",
        f"data: {late}\n\n",
    )


def openai_event(text):
    if text is None:
        return {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def raycast_event(text):
    return {"text": text} if text is not None else {"text": None, "finish_reason": "stop"}


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_every_streaming_provider_reads_hostile_framing_and_stops_at_done(
    fake_upstream, provider, model, suffix, extra
):
    event = raycast_event if provider is Raycast else openai_event
    fake_upstream.behave(raw_stream=hostile_body(event))
    chunks = await stream(provider, model, suffix, extra, fake_upstream)
    assert [chunk for chunk in chunks if isinstance(chunk, str)] == ["Hél", "lo"]


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), STREAMING, ids=IDS)
async def test_a_connection_cut_after_done_does_not_spoil_the_complete_answer(
    fake_upstream, provider, model, suffix, extra
):
    event = raycast_event if provider is Raycast else openai_event
    body = hostile_body(event)
    fake_upstream.behave(raw_stream=body, drop_after=len(body))
    chunks = await stream(provider, model, suffix, extra, fake_upstream)
    assert [chunk for chunk in chunks if isinstance(chunk, str)] == ["Hél", "lo"]


@pytest.mark.parametrize(("provider", "model", "suffix", "extra"), EVERY, ids=EVERY_IDS)
async def test_every_provider_sends_through_the_configured_proxy(
    fake_upstream, provider, model, suffix, extra
):
    fake_upstream.behave(reply="Via proxy")
    origin = f"http://{provider.__name__.lower()}.invalid"
    chunks = await answer(
        provider, model, suffix, extra, fake_upstream,
        api_base=origin + suffix, proxy=fake_upstream.url,
    )  # fmt: skip
    assert "".join(chunk for chunk in chunks if isinstance(chunk, str)) == "Via proxy"
    [request] = fake_upstream.requests
    assert request.proxied_for == origin
    assert request.headers["host"] == origin.removeprefix("http://")


async def test_proxy_settings_of_the_environment_are_ignored(
    fake_upstream, closed_port_url, monkeypatch
):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, closed_port_url)
    chunks = await stream(OpenAICompatible, "fake-model", "/v1", {}, fake_upstream)
    assert "Hello " in chunks
    assert fake_upstream.requests[0].proxied_for is None


async def test_providers_on_one_loop_share_one_pooled_http11_connection(fake_upstream):
    for provider, model, suffix, extra in EVERY:
        await answer(provider, model, suffix, extra, fake_upstream)
    assert len(fake_upstream.requests) == len(EVERY)
    assert len({request.client_port for request in fake_upstream.requests}) == 1
    assert {request.http_version for request in fake_upstream.requests} == {"HTTP/1.1"}


async def test_a_second_burst_of_answers_reuses_the_first_bursts_connections(fake_upstream):
    """Answers that start together after others ended take pooled connections instead of
    connecting again (with 20 kept, a burst of 60 opened 40 new ones every time)."""
    fake_upstream.behave(reply="one two three", chunk_delay=0.01)
    burst = 60

    async def together() -> int:
        before = fake_upstream.connections
        await asyncio.gather(
            *(
                stream(OpenAICompatible, "fake-model", "/v1", {}, fake_upstream)
                for _ in range(burst)
            )
        )
        return fake_upstream.connections - before

    assert await together() == burst
    assert await together() == 0


async def test_many_answers_at_once_are_spread_over_clients_of_a_few_connections_each(
    fake_upstream, monkeypatch, settings
):
    """httpcore's pool does work quadratic in its connections at every request's start and end;
    one client holding hundreds starved the server. Each client now holds at most a lane's
    worth, every answer still streams at once, and the process's cap still holds."""
    from providers import transport

    monkeypatch.setattr(transport, "LANE_CONNECTIONS", 4)
    settings.PROVIDER_MAX_CONNECTIONS = 10
    settings.PROVIDER_KEEPALIVE_CONNECTIONS = 6
    fake_upstream.behave(reply="one two three", chunk_delay=0.05)
    answers = 14
    results = await asyncio.gather(
        *(stream(OpenAICompatible, "fake-model", "/v1", {}, fake_upstream) for _ in range(answers))
    )
    assert all(
        "".join(c for c in chunks if isinstance(c, str)) == "one two three" for chunks in results
    )
    lanes = client_lanes()
    # 10 at once in lanes of 4, 4 and 2; the last 4 waited for a free connection.
    assert lanes.sizes == [4, 4, 2]
    # Kept for the next answers: the first lane's 4 and 2 of the second's, no more.
    kept = [client._transport._pool.connections for client in lanes.clients]
    assert [len(connections) for connections in kept] == [4, 2, 0]


# --- Stream fidelity: every character a model writes arrives, however the body is cut ---------

# Characters some line splitter or other takes for a line end (str.splitlines does for all of
# them); only the first two may end an event-stream line. JSON escapes CR and LF inside strings
# but may carry the rest raw. Plus any other character but NUL (no database stores it) and lone
# surrogates (not encodable), astral ones included.
LINE_BREAKERS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
MODEL_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(LINE_BREAKERS),
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    ),
    min_size=1,
    max_size=40,
)


def _openai_event(delta: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}


_OPENAI_LAST = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
_RAYCAST_LAST = {"text": None, "finish_reason": "stop"}

# How each streaming parser's upstream wraps one delta, its last event, and the request's fixed
# arguments.
FIDELITY = [
    (OpenAICompatible, (_openai_event, _OPENAI_LAST), "fake-model", "/v1", {}),
    (Lockchat, (_openai_event, _OPENAI_LAST), "gpt-4", "", {}),
    (Raycast, (lambda delta: {"text": delta}, _RAYCAST_LAST), "gpt-4", "", {"auth": "token"}),
]


@st.composite
def cut_bodies(draw, wire) -> tuple[list[str], list[bytes]]:
    """Deltas, and a body carrying them as events, cut into writes at random byte offsets
    (inside multi-byte characters and between a CR and its LF too)."""
    deltas = draw(st.lists(MODEL_TEXT, min_size=1, max_size=5))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    wrap, last = wire
    events = [json.dumps(wrap(delta), ensure_ascii=False) for delta in deltas]
    events += [json.dumps(last), "[DONE]"]
    body = "".join(f"data: {event}{eol}{eol}" for event in events).encode()
    offsets = draw(st.lists(st.integers(1, len(body) - 1), max_size=6, unique=True))
    bounds = [0, *sorted(offsets), len(body)]
    return deltas, [body[start:end] for start, end in itertools.pairwise(bounds)]


@pytest.mark.parametrize(
    ("provider", "wire", "model", "suffix", "extra"),
    FIDELITY,
    ids=[provider.__name__ for provider, *_ in FIDELITY],
)
def test_every_streaming_parser_returns_exactly_the_text_sent(
    fake_upstream_server, provider, wire, model, suffix, extra
):
    @hypothesis_settings(max_examples=40, deadline=None)
    @given(case=cut_bodies(wire))
    def round_trip(case):
        deltas, pieces = case
        fake_upstream_server.behave(raw_stream=tuple(pieces))
        received = asyncio.run(
            _collect_closing(provider, model, suffix, extra, fake_upstream_server)
        )
        text = "".join(chunk for chunk in received if isinstance(chunk, str))
        assert text == "".join(deltas)

    round_trip()


async def _collect_closing(provider, model, suffix, extra, fake_upstream) -> list[str]:
    # Each example runs on its own loop; its pooled client goes with it.
    try:
        return await stream(provider, model, suffix, extra, fake_upstream)
    finally:
        await close_shared_clients()


async def test_lines_end_only_at_cr_lf_and_crlf():
    response = httpx.Response(
        200, stream=Pieces("a\u2028b\x85c\u2029d\x0be\x1cf\r".encode(), b"\ng\rh\n\ni")
    )
    lines = [line async for line in body_lines(response)]
    assert lines == ["a\u2028b\x85c\u2029d\x0be\x1cf", "g", "h", "", "i"]


def test_httpcore_is_not_left_searching_for_sniffio_on_every_request():
    """httpcore imports sniffio for every lock it sets up; when it is not installed, each failed
    import searched the whole sys.path (a quarter of the server's time starting many answers)."""
    import importlib.util
    import sys

    import providers.transport  # noqa: F401

    if "sniffio" in sys.modules and sys.modules["sniffio"] is not None:
        pytest.skip("sniffio is installed: its import is cached like any other")
    assert "sniffio" in sys.modules and sys.modules["sniffio"] is None
    assert importlib.util.find_spec("sniffio") is None
