import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/admin/"])
def test_pages_redirect_anonymous_users_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/") or response["Location"].startswith(
        "/admin/login/"
    )


def test_login_page_is_public_and_has_no_inline_script(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "<script>" not in html
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_signing_in_opens_the_chat(client, django_user_model):
    django_user_model.objects.create_user(username="ada", password="correct horse battery")
    response = client.post(
        "/accounts/login/", {"username": "ada", "password": "correct horse battery"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/"
    assert response.status_code == 200
    assert response.wsgi_request.user.username == "ada"


def test_wrong_password_shows_an_error_and_stays_anonymous(client, django_user_model):
    django_user_model.objects.create_user(username="ada", password="correct horse battery")
    response = client.post("/accounts/login/", {"username": "ada", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert client.get("/").status_code == 302


def test_static_files_are_served_without_debug(client):
    response = client.get("/static/chat.css")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"prefers-color-scheme" in body
