"""Get a database ready for a benchmark server (run in a child process with the server's
environment): migrate, a default provider pointing at the bench upstream, a signed-in user.

    python -m bench.prepare <upstream url>    # prints the session cookie header value
"""

import os
import sys


def bench_provider_set(*, name: str, upstream_url: str, timeout: float = 120) -> None:
    """Migrate, and make `name` the one enabled default provider, pointing at the upstream (a
    database reused across runs may hold another default: only one may be). For every bench
    script, after django.setup()."""
    from django.core.management import call_command

    from providers.models import ProviderConfig

    call_command("migrate", verbosity=0)
    ProviderConfig.objects.exclude(name=name).update(is_default=False)
    ProviderConfig.objects.update_or_create(
        name=name,
        defaults={
            "provider_class": "OpenAICompatible",
            "api_base": upstream_url + "/v1",
            "default_model": "fake-model",
            "is_default": True,
            "enabled": True,
            "timeout": timeout,
        },
    )


def prepare(upstream_url: str) -> str:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    bench_provider_set(name="bench", upstream_url=upstream_url)
    # A fresh user each time: in services mode the database outlives the run, and answers left by
    # earlier runs would make every later start slower than the last.
    get_user_model().objects.filter(username="bench").delete()
    user = get_user_model().objects.create(username="bench")
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    print(prepare(sys.argv[1]))
