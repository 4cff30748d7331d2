import socket

import pytest


@pytest.fixture
def closed_port_url() -> str:
    """An origin where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


USER_HELLO = [{"role": "user", "content": "Hello"}]
