"""The API tests talk to a real server: `manage.py serve` (Daphne) in a subprocess on loopback,
on this run's database, with providers pointing at the fake upstream (or at llama-cpp-python's
server). Rows the tests write are committed (transactional tests), so the server sees them."""

import httpx
import openai
import pytest
from cryptography.fernet import Fernet

from conversations.api.services import api_key_create
from tests.live_server import LiveServer

# One Fernet key for the server process and every test of the package: tokens a test stores
# must be readable by the server started before it.
PACKAGE_FERNET_KEY = Fernet.generate_key().decode()
WAIT = 30.0
STALE_SECONDS = 3.0


@pytest.fixture(scope="package")
def api_server(django_db_setup, django_db_blocker, tmp_path_factory):
    server = LiveServer(
        tmp_path_factory.mktemp("api-server") / "server.log",
        FIELD_ENCRYPTION_KEYS=PACKAGE_FERNET_KEY,
        # Everything a request may cause to be logged, for the tests that look for secrets.
        LOG_LEVEL="DEBUG",
        # Running calls refresh their row every second (a third of this): a test can see a
        # call outlive the staleness cutoff.
        CHAT_STALE_STREAM_SECONDS="3",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def encryption_keys(settings):
    settings.FIELD_ENCRYPTION_KEYS = [PACKAGE_FERNET_KEY]
    return settings.FIELD_ENCRYPTION_KEYS


@pytest.fixture
def ada_key(ada) -> str:
    return api_key_create(user=ada, name="laptop").key


@pytest.fixture
def client_for(api_server):
    """`client_for(key)`: the official OpenAI client, pointed at our server."""
    clients: list[openai.OpenAI] = []

    def make(key: str, **options) -> openai.OpenAI:
        client = openai.OpenAI(
            api_key=key, base_url=api_server.url + "/v1", max_retries=0, timeout=WAIT, **options
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def http(api_server):
    """A plain HTTP client on the server, for the wire format byte by byte."""
    with httpx.Client(base_url=api_server.url, timeout=WAIT) as client:
        yield client
