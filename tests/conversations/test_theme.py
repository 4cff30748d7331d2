"""The theme: chosen per user, rendered by the server as <html data-theme>, which the stylesheet
follows, so the first paint already has it (no script: the CSP forbids inline ones)."""

import re
from pathlib import Path

import pytest
from django.conf import settings

from conversations import selectors, services
from conversations.errors import ChatError
from conversations.models import UserSettings

pytestmark = pytest.mark.django_db

CSS = Path(settings.BASE_DIR, "static", "chat.css").read_text()


def _html_theme(response) -> str:
    return re.search(r'<html lang="en" class="no-js" data-theme="(\w+)">', response.text).group(1)


def test_nobody_chose_means_follow_the_device(signed_in, client):
    assert _html_theme(signed_in.get("/")) == "system"
    signed_in.logout()
    assert _html_theme(client.get("/accounts/login/")) == "system"


def test_the_chosen_theme_is_on_every_page_and_only_for_its_user(signed_in, ada, grace, client):
    response = signed_in.post("/account/theme/", {"theme": "dark"})

    assert response.status_code == 302 and response["Location"] == "/account/"
    for url in ("/", "/history/", "/account/"):
        page = signed_in.get(url)
        assert _html_theme(page) == "dark"
        assert '<meta name="color-scheme" content="dark">' in page.text
    account = signed_in.get("/account/").text
    assert re.search(r'value="dark" checked', account)
    client.force_login(grace)
    assert _html_theme(client.get("/")) == "system"


def test_a_bad_theme_is_refused_and_nothing_is_saved(signed_in, ada):
    response = signed_in.post("/account/theme/", {"theme": "purple"}, follow=True)

    assert "Choose System, Light or Dark." in response.text
    assert not UserSettings.objects.exists()
    with pytest.raises(ChatError):
        services.user_theme_set(user=ada, theme="")


def test_changing_the_theme_keeps_one_row(ada):
    services.user_theme_set(user=ada, theme="light")
    services.user_theme_set(user=ada, theme="dark")
    assert UserSettings.objects.count() == 1
    assert selectors.user_theme(user=ada) == "dark"


def test_fragments_cost_no_theme_query(signed_in, ada, django_assert_max_num_queries):
    services.user_theme_set(user=ada, theme="dark")
    # Session, user and the three sidebar sections: no settings query for a fragment.
    with django_assert_max_num_queries(5):
        signed_in.get("/conversations/?fragment=1")


def _block(selector_start: str) -> list[str]:
    body = CSS[CSS.index(selector_start) :]
    body = body[body.index("{") + 1 : body.index("}")]
    return [line.strip() for line in body.splitlines() if line.strip().startswith("--")]


def test_the_dark_colours_are_the_same_chosen_or_from_the_device():
    chosen = _block(':root[data-theme="dark"] {')
    from_device = _block(':root:not([data-theme="light"]) {')
    assert len(chosen) > 30
    assert chosen == from_device
