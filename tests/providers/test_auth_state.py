import os
import subprocess
import sys
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

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


@pytest.mark.django_db(transaction=True)
async def test_auth_state_rejected_by_the_upstream_is_replaced_for_every_process(
    authed_config, fake_upstream
):
    key = f"config:{authed_config.pk}:DbAuthedEcho"
    # Left behind by another server process, from before the token changed upstream.
    await DatabaseAuthStore(key=key).save(AuthResult(api_key="old-login-key"))
    fake_upstream.behave(reply="ok", accept_token=TOKEN)
    chunks = [c async for c in stream_chat(authed_config, USER_HELLO)]
    assert "ok" in chunks
    assert [r.headers["authorization"] for r in fake_upstream.requests] == [
        "Bearer old-login-key",
        f"Bearer {TOKEN}",
    ]
    assert DbAuthedEcho.logins == [TOKEN]
    assert await DatabaseAuthStore(key=key).load() == AuthResult(api_key=TOKEN)


OTHER_PROCESS = """
import asyncio, sys
import django
django.setup()
from providers.auth_state import DatabaseAuthStore
from providers.types import AuthResult

async def main():
    store = DatabaseAuthStore(key=sys.argv[1])
    if await store.load() != AuthResult(api_key="saved-by-the-first-process"):
        sys.exit("the first process's auth state is not visible here")
    await store.save(AuthResult(api_key="saved-by-the-second-process"))

asyncio.run(main())
"""


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def run_in_another_process(script: str, *args: str, keys: list[str]) -> str:
    """Run `script` in a fresh interpreter on the same (test) database; its stdout."""
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    env.update(
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        ENV_FILE="",
        SECRET_KEY="s" * 50,
        FIELD_ENCRYPTION_KEYS=",".join(keys),
        DATABASE_URL=_database_url(),
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a deadlock fails the test instead of hanging the run
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.django_db(transaction=True)
def test_auth_state_is_shared_with_another_server_process(encryption_keys):
    async_to_sync(DatabaseAuthStore(key="shared").save)(
        AuthResult(api_key="saved-by-the-first-process")
    )
    run_in_another_process(OTHER_PROCESS, "shared", keys=encryption_keys)
    loaded = async_to_sync(DatabaseAuthStore(key="shared").load)()
    assert loaded == AuthResult(api_key="saved-by-the-second-process")


SYNC_VIEW_CHECK = """
import asyncio, sys
import django
django.setup()
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.db import database_sync_to_async
import tests.providers.test_auth_state  # registers DbAuthedEcho
from providers.bridge import run_sync
from providers.models import ProviderConfig
from providers.services import provider_config_check

def count_configs_through_the_bridge():
    # A thread-sensitive query inside a bridged coroutine.
    return run_sync(lambda: database_sync_to_async(ProviderConfig.objects.count)())

async def main():
    config = await sync_to_async(ProviderConfig.objects.get)(name=sys.argv[1])
    # As Daphne runs a sync view (the admin action): in the request's thread-sensitive executor.
    async with ThreadSensitiveContext():
        in_request = await sync_to_async(provider_config_check)(config=config)
        bridged_count = await sync_to_async(count_configs_through_the_bridge)()
    # As Django's test client runs one: in asgiref's single-thread executor.
    in_single_thread = await sync_to_async(provider_config_check)(config=config)
    print(in_request.ok, in_single_thread.ok, bridged_count)

asyncio.run(main())
"""


@pytest.mark.django_db(transaction=True)
def test_checking_an_authed_config_from_a_sync_view_under_asgi_does_not_deadlock(
    authed_config, encryption_keys, fake_upstream
):
    # The check blocks the view's thread on the sync bridge while the provider reads its auth
    # state from the database; that read must not queue behind the blocked thread.
    fake_upstream.behave(reply="ok", accept_token=TOKEN)
    out = run_in_another_process(SYNC_VIEW_CHECK, authed_config.name, keys=encryption_keys)
    assert out.split() == ["True", "True", "1"]
    assert [r.headers["authorization"] for r in fake_upstream.requests] == [f"Bearer {TOKEN}"] * 2
    assert ProviderAuthState.objects.filter(key=f"config:{authed_config.pk}:DbAuthedEcho").exists()
