import asyncio
import logging
import traceback
from contextlib import aclosing

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers.base import AsyncGeneratorProvider
from providers.errors import (
    MissingAuthError,
    ModelNotFoundError,
    ProviderError,
    ProviderNotFoundError,
    ResponseError,
    UpstreamDroppedError,
    UpstreamUnavailableError,
)
from providers.models import FallbackChain, FallbackChainMember, ProviderConfig
from providers.registry import register
from providers.services import provider_config_set_token, stream_chat
from providers.types import FinishReason, ProviderInfo, Usage
from tests.providers.conftest import USER_HELLO

TOKEN = "sk-test-0123456789-abcd"


def make_config(name, api_base, **fields):
    fields.setdefault("default_model", "fake-model")
    return ProviderConfig.objects.create(
        name=name, provider_class="OpenAICompatible", api_base=api_base, **fields
    )


def make_chain(name, *configs):
    chain = FallbackChain.objects.create(name=name)
    for position, config in enumerate(configs):
        FallbackChainMember.objects.create(chain=chain, config=config, position=position)
    return chain


@pytest.fixture
def fake_config(db, encryption_keys, fake_upstream):
    config = make_config("fake", fake_upstream.url + "/v1", is_default=True)
    provider_config_set_token(config=config, token=TOKEN)
    return config


async def collect(target, **kwargs):
    return [chunk async for chunk in stream_chat(target, USER_HELLO, **kwargs)]


# --- provider_config_set_token --------------------------------------------------------------


@pytest.mark.django_db
def test_set_token_stores_only_ciphertext_and_last4(encryption_keys):
    config = make_config("c", "http://127.0.0.1:1/v1")
    provider_config_set_token(config=config, token=TOKEN)
    row = ProviderConfig.objects.values().get(pk=config.pk)
    assert TOKEN not in str(row)
    assert row["token_last4"] == "abcd"
    assert row["token_ciphertext"]


@pytest.mark.django_db
def test_set_token_none_or_empty_clears_it(encryption_keys):
    config = make_config("c", "http://127.0.0.1:1/v1")
    provider_config_set_token(config=config, token=TOKEN)
    provider_config_set_token(config=config, token="")
    config.refresh_from_db()
    assert (config.token_ciphertext, config.token_last4) == ("", "")
    provider_config_set_token(config=config, token=TOKEN)
    provider_config_set_token(config=config, token=None)
    config.refresh_from_db()
    assert config.token_ciphertext == ""


@pytest.mark.django_db
def test_short_token_gets_no_last4_hint(encryption_keys):
    config = make_config("c", "http://127.0.0.1:1/v1")
    provider_config_set_token(config=config, token="abc12345")
    config.refresh_from_db()
    assert config.token_last4 == ""


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["sk-line\nbreak-0123456789", "sk-tab\t-0123456789", "sk-é-123"])
def test_set_token_refuses_what_cannot_go_into_a_header_without_quoting_it(encryption_keys, bad):
    config = make_config("c", "http://127.0.0.1:1/v1")
    with pytest.raises(ValidationError) as caught:
        provider_config_set_token(config=config, token=bad)
    assert bad not in repr(caught.value) and bad not in str(caught.value)
    config.refresh_from_db()
    assert config.token_ciphertext == ""


@pytest.mark.django_db
def test_set_token_writes_one_update(encryption_keys):
    config = make_config("c", "http://127.0.0.1:1/v1")
    with CaptureQueriesContext(connection) as queries:
        provider_config_set_token(config=config, token=TOKEN)
    assert len(queries) == 1


# --- stream_chat with a config ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_stream_chat_yields_provider_info_first_then_text_usage_finish(
    fake_config, fake_upstream
):
    fake_upstream.behave(reply="Hi there")
    chunks = await collect(fake_config)
    assert chunks == [
        ProviderInfo(provider="fake", model="fake-model"),
        "Hi ",
        "there",
        Usage(1, 2, 3),
        FinishReason("stop"),
    ]


@pytest.mark.django_db(transaction=True)
async def test_stream_chat_sends_the_decrypted_token_and_options(fake_config, fake_upstream):
    await collect(fake_config, temperature=0.3, max_tokens=7, top_p=None)
    [request] = fake_upstream.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.json["temperature"] == 0.3
    assert request.json["max_tokens"] == 7
    assert "top_p" not in request.json


@pytest.mark.django_db(transaction=True)
async def test_stream_chat_uses_the_requested_allowed_model(db, encryption_keys, fake_upstream):
    config = await database_sync_to_async(make_config)(
        "multi",
        fake_upstream.url + "/v1",
        allowed_models=["fake-model", "fake-model-2"],
    )
    chunks = await collect(config, model="fake-model-2")
    assert chunks[0] == ProviderInfo(provider="multi", model="fake-model-2")
    assert fake_upstream.requests[0].json["model"] == "fake-model-2"


@pytest.mark.django_db(transaction=True)
async def test_stream_chat_refuses_a_model_the_config_does_not_allow(fake_config, fake_upstream):
    with pytest.raises(ModelNotFoundError):
        await collect(fake_config, model="fake-model-2")
    assert fake_upstream.requests == []


@pytest.mark.django_db(transaction=True)
async def test_stream_chat_errors_never_carry_the_token(fake_config, fake_upstream):
    fake_upstream.behave(
        status=401, error_body={"error": {"message": f"Incorrect API key provided: {TOKEN}"}}
    )
    with pytest.raises(MissingAuthError) as caught:
        await collect(fake_config)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert caught.value.__cause__ is None or TOKEN not in str(caught.value.__cause__)


@register
class LeakyFailure(AsyncGeneratorProvider):
    """Fails the way a careless library does: with the token in the error it raises from."""

    @classmethod
    async def create_async_generator(
        cls, model, messages, stream=True, api_key=None, wrap=True, **kwargs
    ):
        if wrap:
            raise ResponseError("Request failed.") from ValueError(f"Bad header: Bearer {api_key}")
        raise RuntimeError(f"unexpected header Bearer {api_key}")
        yield ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("wrap", [True, False])
async def test_stream_chat_errors_and_logs_never_carry_the_token_from_a_cause(
    db, encryption_keys, caplog, wrap
):
    caplog.set_level(logging.DEBUG)

    def create():
        config = ProviderConfig.objects.create(
            name="leaky", provider_class="LeakyFailure", options={"wrap": wrap}
        )
        provider_config_set_token(config=config, token=TOKEN)
        return config

    config = await database_sync_to_async(create)()
    with pytest.raises(ResponseError) as caught:
        await collect(config)
    # What a log line with a traceback would show of the error.
    report = "".join(traceback.format_exception(caught.value))
    assert caught.value.code == ("upstream_error" if wrap else "malformed_response")
    assert TOKEN not in report
    assert TOKEN not in caplog.text
    if not wrap:
        assert "LeakyFailure failed unexpectedly (RuntimeError" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_undecryptable_token_raises_missing_auth(fake_config, settings, fake_upstream):
    from cryptography.fernet import Fernet

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(MissingAuthError, match="cannot be decrypted"):
        await collect(fake_config)
    assert fake_upstream.requests == []


@pytest.mark.django_db(transaction=True)
async def test_unknown_provider_class_raises_provider_not_found(db, encryption_keys):
    config = await database_sync_to_async(ProviderConfig.objects.create)(
        name="ghost", provider_class="Ghost"
    )
    with pytest.raises(ProviderNotFoundError):
        await collect(config)


@pytest.mark.django_db(transaction=True)
async def test_closing_stream_chat_closes_the_upstream_connection(fake_config, fake_upstream):
    fake_upstream.behave(reply="word " * 200, chunk_delay=0.01)
    async with aclosing(stream_chat(fake_config, USER_HELLO)) as stream:
        assert isinstance(await anext(stream), ProviderInfo)
        assert await anext(stream) == "word "
    request = await asyncio.to_thread(fake_upstream.wait_done, 5.0)
    assert request.disconnected.is_set()


# --- stream_chat with a fallback chain ------------------------------------------------------


@pytest.fixture
def chain_refused_then_fake(db, encryption_keys, fake_upstream, closed_port_url):
    dead = make_config("dead", closed_port_url + "/v1")
    wrong_model = make_config("wrong-model", fake_upstream.url + "/v1", default_model="nope")
    good = make_config("good", fake_upstream.url + "/v1")
    return make_chain("chain", dead, wrong_model, good)


@pytest.mark.django_db(transaction=True)
async def test_chain_falls_through_failures_before_the_first_token(
    chain_refused_then_fake, fake_upstream
):
    fake_upstream.behave(reply="From the good one")
    chunks = await collect(chain_refused_then_fake)
    assert chunks[0] == ProviderInfo(provider="good", model="fake-model")
    assert "".join(c for c in chunks if isinstance(c, str)) == "From the good one"
    # The wrong-model member reached the upstream and was refused; the good one answered.
    assert [r.json["model"] for r in fake_upstream.requests] == ["nope", "fake-model"]
    assert sum(isinstance(c, ProviderInfo) for c in chunks) == 1


@pytest.mark.django_db(transaction=True)
async def test_chain_never_mixes_answers_after_the_first_token(db, encryption_keys, fake_upstream):
    first = await database_sync_to_async(make_config)("first", fake_upstream.url + "/v1")
    second = await database_sync_to_async(make_config)("second", fake_upstream.url + "/v1")
    chain = await database_sync_to_async(make_chain)("chain", first, second)
    fake_upstream.behave(reply="one two three", drop_after=1)
    received = []
    with pytest.raises(UpstreamDroppedError):
        async for chunk in stream_chat(chain, USER_HELLO):
            received.append(chunk)
    assert received == [ProviderInfo(provider="first", model="fake-model"), "one "]
    assert len(fake_upstream.requests) == 1


@pytest.mark.django_db(transaction=True)
async def test_chain_moves_on_after_an_error_status_and_logs_no_token(
    db, encryption_keys, fake_upstream, caplog
):
    caplog.set_level(logging.DEBUG)
    wrong_token = "sk-wrong-token-0000-zzzz"

    def create():
        rejected = make_config("rejected", fake_upstream.url + "/v1")
        provider_config_set_token(config=rejected, token=wrong_token)
        accepted = make_config("accepted", fake_upstream.url + "/v1")
        provider_config_set_token(config=accepted, token=TOKEN)
        return make_chain("chain", rejected, accepted)

    chain = await database_sync_to_async(create)()
    fake_upstream.behave(reply="Second member", accept_token=TOKEN)
    chunks = await collect(chain)
    assert chunks[0] == ProviderInfo(provider="accepted", model="fake-model")
    assert "".join(c for c in chunks if isinstance(c, str)) == "Second member"
    assert [r.headers["authorization"] for r in fake_upstream.requests] == [
        f"Bearer {wrong_token}",
        f"Bearer {TOKEN}",
    ]
    assert "chain: rejected failed before answering (missing_auth" in caplog.text
    assert wrong_token not in caplog.text and TOKEN not in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_chain_raises_the_last_error_when_every_member_fails(
    db, encryption_keys, closed_port_url
):
    dead = await database_sync_to_async(make_config)("dead", closed_port_url + "/v1")
    chain = await database_sync_to_async(make_chain)("chain", dead)
    with pytest.raises(UpstreamUnavailableError):
        await collect(chain)


@pytest.mark.django_db(transaction=True)
async def test_chain_skips_disabled_members_and_empty_chain_is_not_found(
    db, encryption_keys, fake_upstream
):
    off = await database_sync_to_async(make_config)("off", fake_upstream.url + "/v1", enabled=False)
    chain = await database_sync_to_async(make_chain)("chain", off)
    with pytest.raises(ProviderNotFoundError):
        await collect(chain)
    assert fake_upstream.requests == []


@pytest.mark.django_db(transaction=True)
async def test_chain_passes_the_model_only_to_members_that_offer_it(
    db, encryption_keys, fake_upstream
):
    plain = await database_sync_to_async(make_config)("plain", fake_upstream.url + "/v1")
    chain = await database_sync_to_async(make_chain)("chain", plain)
    chunks = await collect(chain, model="fake-model-2")
    assert chunks[0] == ProviderInfo(provider="plain", model="fake-model")


def test_every_failure_is_a_provider_error():
    for error in (MissingAuthError, ModelNotFoundError, UpstreamDroppedError):
        assert issubclass(error, ProviderError)


@pytest.mark.django_db(transaction=True)
async def test_an_echoed_token_near_the_display_cut_leaves_no_part_of_it(
    fake_config, fake_upstream
):
    # The upstream quotes the request's header so that the token straddles character 300 of
    # its message: cut there first, ten of its characters would be left for the exact match
    # to miss.
    echo = "x" * 267 + f" Authorization: Bearer {TOKEN} was refused"
    fake_upstream.behave(status=401, error_body={"error": {"message": echo}})
    with pytest.raises(MissingAuthError) as caught:
        await collect(fake_config)
    text = "".join(traceback.format_exception(caught.value))
    runs = [TOKEN[start : start + 8] for start in range(len(TOKEN) - 7)]
    assert not [run for run in runs if run in text]
    assert str(caught.value).startswith("Error 401: xxx")
    assert len(str(caught.value)) <= 300


@pytest.mark.django_db(transaction=True)
async def test_a_lockchat_config_sets_its_retry_count_in_its_options(
    db, encryption_keys, fake_upstream
):
    config = await database_sync_to_async(ProviderConfig.objects.create)(
        name="lock",
        provider_class="Lockchat",
        api_base=fake_upstream.url,
        default_model="gpt-4",
        options={"max_retries": 1},
    )
    fake_upstream.behave(model_missing=10)
    with pytest.raises(ModelNotFoundError):
        await collect(config)
    assert len(fake_upstream.requests) == 2  # the request and the one retry the options allow
