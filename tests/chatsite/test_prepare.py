import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from providers.models import ProviderConfig


def prepare() -> str:
    out = io.StringIO()
    call_command("prepare", stdout=out, stderr=out)
    return out.getvalue()


@pytest.mark.django_db
def test_prepare_sets_up_once_and_then_says_nothing(settings, tmp_path):
    # A provider exists, so the Local one (and its 250 MB model file) is not made here; its own
    # command has its own tests.
    ProviderConfig.objects.create(name="mine", provider_class="OpenAICompatible")
    settings.STATIC_ROOT = tmp_path

    first = prepare()

    assert "username: admin" in first
    assert get_user_model().objects.filter(username="admin", is_superuser=True).exists()
    assert (tmp_path / "chat.js").is_file()
    assert prepare() == ""
    assert ProviderConfig.objects.count() == 1
