"""The provider admin in a real browser: the defaults and labels an administrator reads."""

import re

import pytest
from playwright.sync_api import expect

from providers.models import ProviderConfig

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(django_user_model, transactional_db):
    return django_user_model.objects.create_superuser(username="root", password="pw-unused")


def test_adding_a_provider_reads_plainly_and_takes_a_list_of_models(
    open_page, admin_user, fake_upstream, encryption_keys
):
    page = open_page(admin_user)
    page.goto("/admin/providers/providerconfig/add/")

    expect(page.get_by_label("Provider class")).to_have_value("OpenAICompatible")
    expect(page.locator("#id_provider_class option:checked")).to_have_text("OpenAI-compatible API")
    labels = page.locator(".form-row label").all_inner_texts()
    labels = [label.strip().rstrip(":") for label in labels if label.strip()]
    assert len(labels) == len(set(labels)), labels
    assert {"API base URL", "API token", "Proxy URL"} <= set(labels)

    page.get_by_label("Name").fill("fake")
    page.get_by_label("API base URL").fill(fake_upstream.url + "/v1")
    page.get_by_role("textbox", name="API token").fill("sk-browser-token-1234")
    page.get_by_label("Default model").fill("fake-model")
    page.get_by_label("Allowed models").fill("fake-model, fake-model-2\nfake-model-3")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".messagelist .success")).to_be_visible()
    config = ProviderConfig.objects.get(name="fake")
    assert config.allowed_models == ["fake-model", "fake-model-2", "fake-model-3"]
    row = page.locator("#result_list tbody tr").first
    expect(row).to_contain_text("fake-model, fake-model-2, fake-model-3")

    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("check_connection")
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".messagelist")).to_contain_text(
        re.compile(r"Checked “fake”: OK in \d+ ms")
    )
    last_check = page.locator("#result_list tbody tr td.field-last_check_display").first
    expect(last_check).to_have_text(re.compile(r"^OK in \d+ ms$"))
    assert "sk-browser-token-1234" not in page.content()
    page.goto(f"/admin/providers/providerconfig/{config.pk}/change/")
    expect(page.get_by_label("Allowed models")).to_have_value(
        "fake-model\nfake-model-2\nfake-model-3"
    )
