"""`manage.py apikeys`: create (the key alone on stdout), list, revoke."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from conversations.api.keys import api_key_hash
from conversations.api.selectors import api_key_authenticate
from conversations.models import ApiKey

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("apikeys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_prints_only_the_key_and_stores_only_its_hash(ada):
    out, err = run("create", "ada", "--name", "build server")
    key = out.strip()
    assert out == key + "\n"
    assert key.startswith("chat-") and len(key) > 40
    row = ApiKey.objects.get()
    assert (row.user, row.name, row.store_conversations) == (ada, "build server", False)
    assert row.key_hash == api_key_hash(key) and key not in row.key_hash
    assert key.startswith(row.prefix) and len(row.prefix) < 16
    assert key not in err and row.prefix in err
    assert api_key_authenticate(key=key) == row


def test_create_with_stored_conversations(ada):
    run("create", "ada", "--name", "notes", "--store-conversations")
    assert ApiKey.objects.get().store_conversations


def test_create_refuses_an_unknown_user_or_an_empty_name(ada):
    with pytest.raises(CommandError, match="No user"):
        run("create", "nobody", "--name", "x")
    with pytest.raises(CommandError, match="name"):
        run("create", "ada", "--name", "   ")
    assert not ApiKey.objects.exists()


def test_list_shows_keys_without_their_secret(ada, grace):
    ada_key = run("create", "ada", "--name", "laptop")[0].strip()
    run("create", "grace", "--name", "phone")
    everyone, _ = run("list")
    assert "laptop" in everyone and "phone" in everyone
    assert ada_key not in everyone and ada_key[:11] in everyone
    only_ada, _ = run("list", "ada")
    assert "laptop" in only_ada and "phone" not in only_ada


def test_revoke_ends_a_key(ada):
    key = run("create", "ada", "--name", "laptop")[0].strip()
    row = ApiKey.objects.get()
    out, _ = run("revoke", str(row.pk))
    assert "Revoked" in out
    assert api_key_authenticate(key=key) is None
    assert "revoked" in run("list")[0]
    assert "already" in run("revoke", str(row.pk))[0]
    with pytest.raises(CommandError, match="No API key"):
        run("revoke", "999999")
