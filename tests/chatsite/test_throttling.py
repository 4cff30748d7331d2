"""Login throttling (chatsite.throttling on django-axes) as a client meets it: the login page."""

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create_user(username="ada", password=PASSWORD)


def sign_in(client, username, password, address="10.0.0.1"):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def fail_until_limit(client, settings, username="ada", addresses=("10.0.0.1",)):
    """The last failure that the limit allows locks out at once."""
    for attempt in range(settings.LOGIN_FAILURE_LIMIT):
        response = sign_in(client, username, "wrong", addresses[attempt % len(addresses)])
        last = attempt == settings.LOGIN_FAILURE_LIMIT - 1
        assert response.status_code == (429 if last else 200)


def test_after_the_limit_even_the_right_password_is_refused_with_a_clear_message(
    client, settings, ada
):
    fail_until_limit(client, settings)
    response = sign_in(client, "ada", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    # A try while locked out counts as one more failure: the wait has doubled.
    assert "Too many failed sign-ins. Wait 2 minutes, then try again." in page
    assert 'name="password"' in page
    assert not signed_in(client)


def test_one_username_is_locked_out_whatever_address_guesses_it(client, settings, ada):
    addresses = [f"10.0.1.{n}" for n in range(settings.LOGIN_FAILURE_LIMIT)]
    fail_until_limit(client, settings, addresses=addresses)
    assert sign_in(client, "ada", PASSWORD, address="10.0.2.1").status_code == 429


def test_one_address_is_locked_out_whatever_usernames_it_guesses(
    client, settings, django_user_model, ada
):
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        sign_in(client, f"user{n}", "wrong")
    assert sign_in(client, "ada", PASSWORD).status_code == 429
    # Another address may still sign ada in.
    assert sign_in(client, "ada", PASSWORD, address="10.0.3.1").status_code == 302


def test_every_further_failure_doubles_the_wait(client, settings, ada):
    fail_until_limit(client, settings)
    waits = []
    for _ in range(3):
        page = sign_in(client, "ada", "wrong").content.decode()
        waits.append(page.split("Wait ", 1)[1].split(",", 1)[0])
    assert waits == ["2 minutes", "4 minutes", "8 minutes"]


def test_an_admin_sees_the_lock_out_and_clearing_it_lets_the_user_in(
    client, settings, ada, admin_client
):
    fail_until_limit(client, settings)
    listing = admin_client.get("/admin/axes/accessattempt/").content.decode()
    assert "ada" in listing and "10.0.0.1" in listing
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert response.status_code == 302
    assert sign_in(client, "ada", PASSWORD).status_code == 302
    assert signed_in(client)


def test_signing_in_from_a_command_is_not_throttled(ada):
    assert authenticate(username="ada", password=PASSWORD) == ada
