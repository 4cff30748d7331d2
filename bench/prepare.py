"""Get a database ready for a benchmark server (run in a child process with the server's
environment): migrate, a default provider pointing at the bench upstream, signed-in users.

    python -m bench.prepare <upstream url> [users]    # prints their session cookies, a line each
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


def prepare(upstream_url: str, users: int = 1) -> list[str]:
    """Session cookies of `users` fresh users ("many people at once" are many users: one user's
    answers share that user's limit and row lock, which is not what a crowd does)."""
    from django.contrib.auth import get_user_model

    bench_provider_set(name="bench", upstream_url=upstream_url)
    model = get_user_model()
    # Fresh users each time: in services mode the database outlives the run, and answers left by
    # earlier runs would make every later start slower than the last.
    model.objects.filter(username__startswith="bench").delete()
    created = model.objects.bulk_create([model(username=f"bench{index}") for index in range(users)])
    return session_cookies(model.objects.filter(pk__in=[user.pk for user in created]))


def session_cookies(users) -> list[str]:
    """A signed-in session for each of `users` (a queryset), as Cookie header values, in order of
    their primary keys."""
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore

    cookies = []
    for user in users.order_by("pk"):
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return cookies


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    print("\n".join(prepare(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)))
