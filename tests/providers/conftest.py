import socket

import pytest
from cryptography.fernet import Fernet


@pytest.fixture
def encryption_keys(settings):
    """A fresh key set for the test, so nothing depends on the machine's .env."""
    keys = [Fernet.generate_key().decode()]
    settings.FIELD_ENCRYPTION_KEYS = keys
    return keys


@pytest.fixture
def closed_port_url() -> str:
    """An origin where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


USER_HELLO = [{"role": "user", "content": "Hello"}]
