"""Get a database ready for a benchmark server (run in a child process with the server's
environment): migrate, a default provider pointing at the bench upstream, a signed-in user.

    python -m bench.prepare <upstream url>    # prints the session cookie header value
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from providers.models import ProviderConfig  # noqa: E402


def prepare(upstream_url: str) -> str:
    call_command("migrate", verbosity=0)
    ProviderConfig.objects.update_or_create(
        name="bench",
        defaults={
            "provider_class": "OpenAICompatible",
            "api_base": upstream_url + "/v1",
            "default_model": "fake-model",
            "is_default": True,
            "timeout": 120,
        },
    )
    # A fresh user each time: in services mode the database outlives the run, and answers left by
    # earlier runs would make every later start slower than the last.
    get_user_model().objects.filter(username="bench").delete()
    user = get_user_model().objects.create(username="bench")
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


if __name__ == "__main__":
    print(prepare(sys.argv[1]))
