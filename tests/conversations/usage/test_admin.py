"""Admins set model prices in the admin; users then see costs."""

from decimal import Decimal

import pytest

from conversations.presets.models import PromptPreset
from conversations.usage.models import ModelPrice

pytestmark = pytest.mark.django_db


def test_an_admin_sets_a_models_price(admin_client):
    response = admin_client.post(
        "/admin/usage/modelprice/add/",
        {"model": "gpt-x", "input_per_million": "0.15", "output_per_million": "0.6"},
    )

    assert response.status_code == 302
    price = ModelPrice.objects.get()
    assert (price.input_per_million, price.output_per_million) == (
        Decimal("0.15"), Decimal("0.6")
    )  # fmt: skip
    assert "gpt-x" in admin_client.get("/admin/usage/modelprice/").content.decode()


def test_a_negative_or_duplicate_price_is_refused(admin_client):
    ModelPrice.objects.create(model="gpt-x", input_per_million=1, output_per_million=1)

    negative = admin_client.post(
        "/admin/usage/modelprice/add/",
        {"model": "other", "input_per_million": "-1", "output_per_million": "1"},
    )
    duplicate = admin_client.post(
        "/admin/usage/modelprice/add/",
        {"model": "gpt-x", "input_per_million": "1", "output_per_million": "1"},
    )

    assert negative.status_code == duplicate.status_code == 200  # the form again, with errors
    assert "greater than or equal to 0" in negative.content.decode()
    assert "already exists" in duplicate.content.decode()
    assert ModelPrice.objects.count() == 1


def test_staff_see_and_publish_presets_in_the_admin(admin_client, django_user_model):
    owner = django_user_model.objects.create_user(username="ada")
    preset = PromptPreset.objects.create(owner=owner, title="Review", text="Review:")

    assert "Review" in admin_client.get("/admin/presets/promptpreset/").content.decode()
    response = admin_client.post(
        f"/admin/presets/promptpreset/{preset.pk}/change/",
        {"owner": owner.pk, "title": "Review", "text": "Review:", "published": "on",
         "system_prompt": "", "target": "", "temperature": ""},
    )  # fmt: skip

    assert response.status_code == 302
    preset.refresh_from_db()
    assert preset.published is True
