import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from providers.models import FallbackChain, FallbackChainMember, ProviderConfig
from providers.services import provider_config_set_token

TOKEN = "sk-admin-secret-token-wxyz"
NEW_TOKEN = "sk-admin-replacement-token-9876"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # admin_client's superuser is created per test; the default hasher's rounds cost ~1 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def form_data(**overrides):
    data = {
        "name": "fake",
        "provider_class": "OpenAICompatible",
        "enabled": "on",
        "api_base": "http://127.0.0.1:9/v1",
        "token": "",
        "proxy": "",
        "default_model": "fake-model",
        "allowed_models": "[]",
        "options": "{}",
        "timeout": "5",
        "sort_order": "0",
        "_save": "Save",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def config(db, encryption_keys, fake_upstream):
    config = ProviderConfig.objects.create(
        name="fake",
        provider_class="OpenAICompatible",
        api_base=fake_upstream.url + "/v1",
        default_model="fake-model",
        is_default=True,
    )
    provider_config_set_token(config=config, token=TOKEN)
    return config


def admin_pages(client, config):
    urls = [
        reverse("admin:providers_providerconfig_changelist"),
        reverse("admin:providers_providerconfig_add"),
        reverse("admin:providers_providerconfig_change", args=[config.pk]),
        reverse("admin:providers_providerconfig_history", args=[config.pk]),
        reverse("admin:providers_providerconfig_delete", args=[config.pk]),
        reverse("admin:providers_fallbackchain_add"),
        reverse("admin:index"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        yield url, response.content.decode()


def test_adding_a_config_stores_the_token_encrypted(admin_client, encryption_keys):
    response = admin_client.post(
        reverse("admin:providers_providerconfig_add"), form_data(token=TOKEN)
    )
    assert response.status_code == 302
    config = ProviderConfig.objects.get(name="fake")
    assert config.token_ciphertext and TOKEN not in config.token_ciphertext
    assert config.token_last4 == "wxyz"


def test_no_admin_page_shows_the_token_only_its_last4(admin_client, config):
    for url, html in admin_pages(admin_client, config):
        assert TOKEN not in html, url
        assert config.token_ciphertext not in html, url
    change = admin_client.get(reverse("admin:providers_providerconfig_change", args=[config.pk]))
    assert "…wxyz" in change.content.decode()


def test_a_form_error_does_not_echo_the_posted_token(admin_client, config):
    response = admin_client.post(
        reverse("admin:providers_providerconfig_change", args=[config.pk]),
        form_data(name="not a slug!", token=NEW_TOKEN, api_base=config.api_base),
    )
    assert response.status_code == 200
    assert NEW_TOKEN not in response.content.decode()


def test_empty_token_field_keeps_the_stored_token(admin_client, config):
    before = config.token_ciphertext
    response = admin_client.post(
        reverse("admin:providers_providerconfig_change", args=[config.pk]),
        form_data(api_base=config.api_base, is_default="on", timeout="9"),
    )
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.token_ciphertext == before
    assert config.timeout == 9


def test_new_token_replaces_and_clear_checkbox_removes(admin_client, config):
    url = reverse("admin:providers_providerconfig_change", args=[config.pk])
    admin_client.post(url, form_data(api_base=config.api_base, token=NEW_TOKEN))
    config.refresh_from_db()
    assert config.token_last4 == "9876"
    admin_client.post(url, form_data(api_base=config.api_base, clear_token="on"))
    config.refresh_from_db()
    assert (config.token_ciphertext, config.token_last4) == ("", "")


def test_new_token_and_clear_together_is_a_form_error(admin_client, config):
    response = admin_client.post(
        reverse("admin:providers_providerconfig_change", args=[config.pk]),
        form_data(api_base=config.api_base, token=NEW_TOKEN, clear_token="on"),
    )
    assert response.status_code == 200
    assert "not both" in response.content.decode()
    config.refresh_from_db()
    assert config.token_last4 == "wxyz"


def test_second_default_is_a_form_error_not_a_crash(admin_client, config):
    response = admin_client.post(
        reverse("admin:providers_providerconfig_add"),
        form_data(name="other", is_default="on"),
    )
    assert response.status_code == 200
    assert "fake is the default" in response.content.decode()


def test_changelist_shows_class_models_token_hint_and_last_check(admin_client, config):
    html = admin_client.get(reverse("admin:providers_providerconfig_changelist")).content
    html = html.decode()
    for text in ("OpenAICompatible", "fake-model", "…wxyz", "never"):
        assert text in html


def test_check_connection_action_reports_latency(admin_client, config, fake_upstream):
    response = admin_client.post(
        reverse("admin:providers_providerconfig_changelist"),
        {"action": "check_connection", "_selected_action": [config.pk]},
        follow=True,
    )
    html = response.content.decode()
    # The name as typed (Django capitalises a message's first letter).
    assert "Checked “fake”: OK in " in html and " ms" in html
    assert TOKEN not in html
    config.refresh_from_db()
    assert config.last_check_ok is True
    assert config.last_check_detail.startswith("OK in ")
    [request] = fake_upstream.requests
    assert request.json["max_tokens"] == 1
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_check_connection_action_reports_the_error_without_the_token(
    admin_client, config, fake_upstream
):
    fake_upstream.behave(status=401, error_body={"error": {"message": f"bad key {TOKEN}"}})
    response = admin_client.post(
        reverse("admin:providers_providerconfig_changelist"),
        {"action": "check_connection", "_selected_action": [config.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Checked “fake”: failed — missing_auth: Error 401" in html
    assert TOKEN not in html
    config.refresh_from_db()
    assert config.last_check_ok is False
    assert TOKEN not in config.last_check_detail


def test_fallback_chain_admin_saves_ordered_members(admin_client, config):
    second = ProviderConfig.objects.create(name="second", provider_class="OpenAICompatible")
    response = admin_client.post(
        reverse("admin:providers_fallbackchain_add"),
        {
            "name": "safe",
            "enabled": "on",
            "links-TOTAL_FORMS": "2",
            "links-INITIAL_FORMS": "0",
            "links-0-position": "0",
            "links-0-config": str(second.pk),
            "links-1-position": "1",
            "links-1-config": str(config.pk),
        },
    )
    assert response.status_code == 302
    chain = FallbackChain.objects.get(name="safe")
    members = FallbackChainMember.objects.filter(chain=chain).order_by("position")
    assert [link.config.name for link in members] == ["second", "fake"]
    html = admin_client.get(reverse("admin:providers_fallbackchain_changelist")).content
    assert "second → fake" in html.decode()


def test_error_reports_mask_the_posted_token(admin_client, config):
    # What Django's exception reports (error e-mails, the debug page) would show of the request.
    for url in (
        reverse("admin:providers_providerconfig_add"),
        reverse("admin:providers_providerconfig_change", args=[config.pk]),
    ):
        response = admin_client.post(url, form_data(name="not a slug!", token=NEW_TOKEN))
        assert response.status_code == 200
        shown = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
        assert shown["token"] != NEW_TOKEN and set(shown["token"]) == {"*"}, url


def test_a_token_that_cannot_go_into_a_header_is_a_form_error(admin_client, config):
    bad = "sk-pasted-with\nline-break-0000"
    response = admin_client.post(
        reverse("admin:providers_providerconfig_change", args=[config.pk]),
        form_data(api_base=config.api_base, token=bad),
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "printable ASCII" in html
    assert bad not in html and "line-break-0000" not in html
    config.refresh_from_db()
    assert config.token_last4 == "wxyz"


def test_changelist_shows_the_result_of_the_last_check(admin_client, config, fake_upstream):
    changelist = reverse("admin:providers_providerconfig_changelist")
    admin_client.post(changelist, {"action": "check_connection", "_selected_action": [config.pk]})
    html = admin_client.get(changelist).content.decode()
    assert "OK in " in html and "OK: OK" not in html
    fake_upstream.behave(status=500)
    admin_client.post(changelist, {"action": "check_connection", "_selected_action": [config.pk]})
    html = admin_client.get(changelist).content.decode()
    assert "Failed: upstream_error: Error 500" in html


def _database_text() -> str:
    """Every row of every table, as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(rows)


def _sqlite_file_bytes() -> bytes:
    """The database file and its WAL as they are on disk, free pages included.

    Read by another process: closing a file descriptor of the database in this one would drop
    every POSIX lock this process holds on it, under the open connections of the database
    threads (chatsite.db), which then fail with "disk I/O error"."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database = Path(connection.settings_dict["NAME"])
    paths = [str(path) for path in (database, Path(f"{database}-wal")) if path.exists()]
    reader = "import sys\nfor p in sys.argv[1:]: sys.stdout.buffer.write(open(p, 'rb').read())"
    return subprocess.run(
        [sys.executable, "-c", reader, *paths], capture_output=True, check=True
    ).stdout


@pytest.mark.django_db(transaction=True)
def test_token_is_in_no_admin_page_log_line_or_database_byte(
    admin_client, encryption_keys, fake_upstream, caplog
):
    # Committed for real (transaction=True), so the rows reach the database file.
    caplog.set_level(logging.DEBUG)
    pages: dict[str, str] = {}

    def visit(label, response):
        assert response.status_code == 200, label
        pages[label] = response.content.decode()

    add = reverse("admin:providers_providerconfig_add")
    changelist = reverse("admin:providers_providerconfig_changelist")
    visit("add form", admin_client.get(add))
    visit(
        "after adding",
        admin_client.post(
            add, form_data(token=TOKEN, api_base=fake_upstream.url + "/v1"), follow=True
        ),
    )
    config = ProviderConfig.objects.get(name="fake")
    change = reverse("admin:providers_providerconfig_change", args=[config.pk])
    visit("change form", admin_client.get(change))
    visit(
        "change form with an error",
        admin_client.post(change, form_data(name="bad name!", token=NEW_TOKEN)),
    )
    check = {"action": "check_connection", "_selected_action": [config.pk]}
    visit("check passed", admin_client.post(changelist, check, follow=True))
    # An upstream that repeats the key it was sent in its error message.
    fake_upstream.behave(
        status=401, error_body={"error": {"message": f"Incorrect API key provided: {TOKEN}"}}
    )
    visit("check failed", admin_client.post(changelist, check, follow=True))
    visit("changelist", admin_client.get(changelist))
    visit(
        "history",
        admin_client.get(reverse("admin:providers_providerconfig_history", args=[config.pk])),
    )
    visit(
        "delete",
        admin_client.get(reverse("admin:providers_providerconfig_delete", args=[config.pk])),
    )
    visit("chain form", admin_client.get(reverse("admin:providers_fallbackchain_add")))
    visit("index", admin_client.get(reverse("admin:index")))

    # The pages did show what they are for, so a missing token means it was kept out.
    assert "…wxyz" in pages["change form"]
    assert "OK in " in pages["check passed"]
    assert "failed — missing_auth: Error 401" in pages["check failed"]
    for label, html in pages.items():
        assert TOKEN not in html and NEW_TOKEN not in html, label

    assert "HTTP Request: POST" in caplog.text  # the logs were captured
    assert TOKEN not in caplog.text and NEW_TOKEN not in caplog.text

    config.refresh_from_db()
    rows = _database_text()
    assert config.token_ciphertext in rows  # the rows were read
    assert TOKEN not in rows and NEW_TOKEN not in rows
    if connection.vendor == "sqlite":
        on_disk = _sqlite_file_bytes()
        assert config.token_ciphertext.encode() in on_disk  # committed data is in the file
        # Counted, so a failure does not print the whole file.
        assert (on_disk.count(TOKEN.encode()), on_disk.count(NEW_TOKEN.encode())) == (0, 0)


PROXY_SECRET = "proxy-pass-31337"


def test_proxy_password_is_never_shown_and_kept_when_the_mask_comes_back(admin_client, config):
    config.proxy = f"http://squid:{PROXY_SECRET}@127.0.0.1:3128"
    config.save()
    url = reverse("admin:providers_providerconfig_change", args=[config.pk])
    for _, html in admin_pages(admin_client, config):
        assert PROXY_SECRET not in html
    page = admin_client.get(url).content.decode()
    assert "http://squid:********@127.0.0.1:3128" in page

    # Saving the form as shown keeps the stored password.
    masked = "http://squid:********@127.0.0.1:3128"
    response = admin_client.post(
        url, form_data(api_base=config.api_base, is_default="on", proxy=masked)
    )
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.proxy == f"http://squid:{PROXY_SECRET}@127.0.0.1:3128"

    # A new password replaces it.
    admin_client.post(
        url,
        form_data(
            api_base=config.api_base, is_default="on", proxy="http://squid:new-one@10.0.0.1:3128"
        ),
    )
    config.refresh_from_db()
    assert config.proxy == "http://squid:new-one@10.0.0.1:3128"


def test_a_mask_with_no_stored_password_is_a_form_error(admin_client, config):
    response = admin_client.post(
        reverse("admin:providers_providerconfig_change", args=[config.pk]),
        form_data(api_base=config.api_base, is_default="on", proxy="http://u:********@h:1"),
    )
    assert response.status_code == 200
    assert "Enter the proxy" in response.content.decode()


def test_vision_is_offered_only_for_classes_that_can_send_images(admin_client, config):
    url = reverse("admin:providers_providerconfig_add")
    local = admin_client.post(
        url, form_data(name="local", provider_class="LlamaCpp", vision="on", api_base="")
    )
    hosted = admin_client.post(url, form_data(name="eyes", vision="on"))

    assert local.status_code == 200
    assert "This provider class cannot send images." in local.content.decode()
    assert hosted.status_code == 302
    assert ProviderConfig.objects.get(name="eyes").vision is True
    assert not ProviderConfig.objects.filter(name="local").exists()
