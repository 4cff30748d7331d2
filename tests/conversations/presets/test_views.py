"""The presets pages, as plain forms (no JavaScript), and the picker's JSON."""

import pytest

from conversations.presets.models import PromptPreset
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db


def _preset(owner, title, **fields):
    return PromptPreset.objects.create(owner=owner, title=title, text=f"{title} text", **fields)


def test_create_edit_and_delete_with_plain_forms(ada, client_for):
    make.provider_config()
    client = client_for(ada)

    form = client.get("/presets/new/").content.decode()
    assert 'name="title"' in form and 'value="fake:fake-model-2"' in form
    # Not staff: no publish box.
    assert 'name="published"' not in form

    response = client.post(
        "/presets/new/",
        {
            "title": "Reviewer",
            "text": "Review this code:\n",
            "system_prompt": "You are a careful reviewer.",
            "target": "fake:fake-model-2",
            "temperature": "0.4",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/presets/"
    preset = PromptPreset.objects.get(owner=ada)
    assert (preset.text, preset.target, preset.temperature) == (
        "Review this code:\n", "fake:fake-model-2", 0.4
    )  # fmt: skip
    listing = client.get("/presets/").content.decode()
    assert "Reviewer" in listing and f"/presets/{preset.pk}/edit/" in listing

    edit = client.get(f"/presets/{preset.pk}/edit/").content.decode()
    assert 'value="Reviewer"' in edit
    client.post(
        f"/presets/{preset.pk}/edit/", {"title": "Strict reviewer", "text": "Review:", "target": ""}
    )
    preset.refresh_from_db()
    assert (preset.title, preset.target, preset.temperature) == ("Strict reviewer", "", None)

    assert "Strict reviewer" in client.get(f"/presets/{preset.pk}/delete/").content.decode()
    assert client.post(f"/presets/{preset.pk}/delete/").status_code == 302
    assert not PromptPreset.objects.exists()


def test_bad_input_shows_the_form_again_with_errors(ada, client_for):
    client = client_for(ada)

    response = client.post(
        "/presets/new/", {"title": "", "text": "   ", "temperature": "7", "target": "nope:x"}
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "This field is required." in html and "Write the prompt." in html
    assert "less than or equal to 2" in html and "Select a valid choice" in html
    assert not PromptPreset.objects.exists()


def test_a_non_staff_user_cannot_publish_or_edit_a_published_preset(ada, root, client_for):
    client = client_for(ada)
    published = _preset(root, "House style", published=True)

    response = client.post("/presets/new/", {"title": "Mine", "text": "x", "published": "on"})
    assert response.status_code == 400
    assert "Only administrators can publish presets." in response.content.decode()
    assert not PromptPreset.objects.filter(owner=ada).exists()

    # Shown read-only: no edit link, and the edit and delete pages are not there for ada.
    listing = client.get("/presets/").content.decode()
    assert "House style" in listing and "read-only" in listing
    assert f"/presets/{published.pk}/edit/" not in listing
    for url in (f"/presets/{published.pk}/edit/", f"/presets/{published.pk}/delete/"):
        assert client.get(url).status_code == 404
        assert client.post(url, {"title": "Hijacked", "text": "x"}).status_code == 404
    published.refresh_from_db()
    assert published.title == "House style"


def test_staff_publish_from_the_page(root, ada, client_for):
    form = client_for(root).get("/presets/new/").content.decode()
    assert 'name="published"' in form

    client_for(root).post("/presets/new/", {"title": "For all", "text": "Hello", "published": "on"})

    assert PromptPreset.objects.get(title="For all").published is True
    assert "For all" in client_for(ada).get("/presets/").content.decode()


def test_another_users_private_preset_is_invisible(ada, grace, client_for):
    private = _preset(grace, "Grace's secret")
    client = client_for(ada)

    assert "Grace's secret" not in client.get("/presets/").content.decode()
    assert client.get("/presets/picker.json").json() == {"presets": []}
    assert client.get(f"/presets/{private.pk}/edit/").status_code == 404
    assert client.post(f"/presets/{private.pk}/delete/").status_code == 404
    assert PromptPreset.objects.filter(pk=private.pk).exists()


def test_the_picker_lists_own_and_published_presets(ada, root, client_for):
    _preset(ada, "Mine", temperature=0.5)
    _preset(root, "Shared", published=True)

    data = client_for(ada).get("/presets/picker.json").json()

    assert [(p["title"], p["published"], p["temperature"]) for p in data["presets"]] == [
        ("Mine", False, 0.5),
        ("Shared", True, None),
    ]


def test_signed_out_visitors_are_sent_to_sign_in(client):
    for url in ("/presets/", "/presets/new/", "/presets/picker.json"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
