import pytest
from channels.db import database_sync_to_async

from providers.auth_state import DatabaseAuthStore
from providers.base import AsyncAuthedProvider
from providers.models import ProviderAuthState, ProviderConfig
from providers.openai_compatible import OpenAICompatible
from providers.registry import register
from providers.services import provider_config_set_token, stream_chat
from providers.types import AuthResult
from tests.providers.conftest import USER_HELLO

TOKEN = "db-auth-token-0123456789"


@register
class DbAuthedEcho(AsyncAuthedProvider):
    logins: list = []

    @classmethod
    async def on_auth_async(cls, api_key=None, **kwargs):
        cls.logins.append(api_key)
        async for chunk in super().on_auth_async(api_key=api_key, **kwargs):
            yield chunk

    @classmethod
    async def create_authed(cls, model, messages, auth_result, stream=True, **kwargs):
        kwargs.pop("api_key", None)
        async for chunk in OpenAICompatible.create_async_generator(
            model, messages, stream, api_key=auth_result.api_key, **kwargs
        ):
            yield chunk


@pytest.fixture
def authed_config(db, encryption_keys, fake_upstream, settings, tmp_path):
    settings.PROVIDERS_AUTH_DIR = tmp_path / "auth"
    DbAuthedEcho.logins.clear()
    config = ProviderConfig.objects.create(
        name="authed",
        provider_class="DbAuthedEcho",
        api_base=fake_upstream.url + "/v1",
        default_model="fake-model",
    )
    provider_config_set_token(config=config, token=TOKEN)
    return config


@pytest.mark.django_db(transaction=True)
async def test_web_app_keeps_auth_state_encrypted_in_the_database(
    authed_config, fake_upstream, settings
):
    fake_upstream.behave(reply="ok", accept_token=TOKEN)
    first = [c async for c in stream_chat(authed_config, USER_HELLO)]
    second = [c async for c in stream_chat(authed_config, USER_HELLO)]
    assert "ok" in first and "ok" in second
    assert DbAuthedEcho.logins == [TOKEN]
    state = await database_sync_to_async(ProviderAuthState.objects.get)(
        key=f"config:{authed_config.pk}:DbAuthedEcho"
    )
    assert TOKEN not in state.ciphertext
    assert not settings.PROVIDERS_AUTH_DIR.exists()


@pytest.mark.django_db(transaction=True)
async def test_database_store_round_trip_and_delete(encryption_keys):
    store = DatabaseAuthStore(key="k")
    assert await store.load() is None
    await store.save(AuthResult(api_key="a", cookies={"c": "1"}))
    assert await store.load() == AuthResult(api_key="a", cookies={"c": "1"})
    await store.save(None)
    assert await store.load() is None


@pytest.mark.django_db(transaction=True)
async def test_database_store_unreadable_state_loads_as_none(settings, encryption_keys):
    await database_sync_to_async(ProviderAuthState.objects.create)(key="k", ciphertext="garbage")
    assert await DatabaseAuthStore(key="k").load() is None
