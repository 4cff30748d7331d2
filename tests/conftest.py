"""Shared fixtures, and the rule for tests that need a service: skip with a reason on a laptop,
fail in CI's services mode (REQUIRE_SERVICES=1) or wherever the browser is required."""

import os
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


@pytest.fixture(scope="session", autouse=True)
def media_root(tmp_path_factory):
    """Attachments of this run go to a folder of its own, never to var/media; server processes
    the tests start inherit it through MEDIA_ROOT."""
    from django.core.files.storage import default_storage, storages
    from django.utils.functional import empty

    root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = root
    os.environ["MEDIA_ROOT"] = str(root)
    storages._storages.pop("default", None)
    default_storage._wrapped = empty
    return root


@pytest.fixture(scope="session", autouse=True)
def collected_static(tmp_path_factory):
    """`collectstatic` into a folder of this run, as `make run` does before serving: pages name
    the hashed files of the static manifest, and the served files are this checkout's, never
    those a previous `make run` left in var/static. Server processes the tests start inherit
    the folder through STATIC_ROOT."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.core.files.storage import storages
    from django.core.management import call_command
    from django.utils.functional import empty

    root = tmp_path_factory.mktemp("static")
    settings.STATIC_ROOT = root
    os.environ["STATIC_ROOT"] = str(root)
    # Storages read STATIC_ROOT when first built: drop any built before this fixture.
    storages._storages.pop("staticfiles", None)
    staticfiles_storage._wrapped = empty
    call_command("collectstatic", interactive=False, verbosity=0)
    return root
