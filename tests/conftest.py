"""Shared fixtures, and the rule for tests that need a service: skip with a reason on a laptop,
fail in CI's services mode (REQUIRE_SERVICES=1) or wherever the browser is required."""

import shutil

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection

pytest_plugins = ["tests.fake_upstream", "tests.llama_server"]


def _missing_service(item) -> str | None:
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    if item.get_closest_marker("redis") and not settings.REDIS_URL:
        return "needs Redis: set REDIS_URL=redis://..."
    return None


@pytest.fixture(autouse=True)
def _require_services(request):
    reason = _missing_service(request.node)
    if reason:
        if settings.REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but this test {reason}")
        pytest.skip(reason)
    if request.node.get_closest_marker("browser") and not shutil.which("chromium"):
        reason = "needs Chromium (apt-get install chromium; `make test` tries this itself)"
        if settings.REQUIRE_BROWSER:
            pytest.fail(f"REQUIRE_BROWSER=1 but this test {reason}")
        pytest.skip(reason)


@pytest.fixture
def encryption_keys(settings):
    """A fresh key set for the test, so nothing depends on the machine's .env."""
    keys = [Fernet.generate_key().decode()]
    settings.FIELD_ENCRYPTION_KEYS = keys
    return keys
