"""Upload, download and removal of attachments over HTTP, the no-JavaScript form's files, and
deletion with the conversation: as the browser sees them, with the files in real storage."""

import re

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient

from conversations import services
from conversations.attachments.models import Attachment
from conversations.models import Conversation, Message
from tests.conversations import page_factories as make
from tests.conversations.attachments.conftest import PNG, pdf_with_text


def upload(client, name: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.post(
        "/attachments/", {"file": SimpleUploadedFile(name, data, content_type=content_type)}
    )


@pytest.mark.django_db
def test_upload_answers_the_id_size_and_token_estimate(signed_in, ada):
    response = upload(signed_in, "notes.md", b"# Plan\n\n" + b"a" * 92, "text/markdown")

    assert response.status_code == 201
    data = response.json()
    row = Attachment.objects.get(pk=data["id"])
    assert data == {
        "id": str(row.id), "name": "notes.md", "size": 100, "kind": "text",
        "content_type": "text/plain; charset=utf-8", "tokens": 25,
        "url": f"/attachments/{row.id}/",
    }  # fmt: skip
    assert (row.owner, row.message) == (ada, None)
    assert default_storage.open(row.file.name).read() == b"# Plan\n\n" + b"a" * 92
    # The stored name is the row's id under its owner: nothing of the uploaded name.
    assert row.file.name == f"attachments/{ada.pk}/{row.id}"


@pytest.mark.django_db
def test_pdf_upload_keeps_the_extracted_text(signed_in):
    response = upload(signed_in, "paper.pdf", pdf_with_text("Quarterly numbers"))
    assert response.status_code == 201
    assert response.json()["kind"] == "pdf"
    assert Attachment.objects.get().text == "Quarterly numbers"


@pytest.mark.django_db
def test_files_over_the_limit_or_of_the_wrong_kind_get_a_clear_error(signed_in, settings):
    settings.ATTACHMENT_MAX_FILE_BYTES = 1000

    big = upload(signed_in, "big.txt", b"x" * 1001)
    fake = upload(signed_in, "cat.png", b"GIF? no, text", "image/png")
    missing = signed_in.post("/attachments/", {})

    assert big.status_code == 413
    assert big.json() == {
        "error": {"code": "too_large", "message": "big.txt is larger than 1000 bytes."}
    }
    assert fake.status_code == 400 and fake.json()["error"]["code"] == "bad_image"
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "Choose a file to attach."
    assert not Attachment.objects.exists()
    assert not default_storage.listdir("attachments")[1]


@pytest.mark.django_db
def test_files_are_downloads_and_images_inline_both_nosniff(signed_in):
    text = upload(signed_in, "page.html", b"<script>alert(1)</script>").json()
    image = upload(signed_in, "dot.png", PNG).json()

    served_text = signed_in.get(text["url"])
    served_image = signed_in.get(image["url"])

    assert served_text["Content-Type"] == "text/plain; charset=utf-8"
    assert served_text["Content-Disposition"].startswith('attachment; filename="page.html"')
    assert served_text["X-Content-Type-Options"] == "nosniff"
    assert b"".join(served_text.streaming_content) == b"<script>alert(1)</script>"
    assert served_image["Content-Type"] == "image/png"
    assert served_image["Content-Disposition"].startswith('inline; filename="dot.png"')
    assert served_image["X-Content-Type-Options"] == "nosniff"
    assert b"".join(served_image.streaming_content) == PNG


@pytest.mark.django_db
def test_another_user_never_gets_or_removes_a_file(client, signed_in, ada, grace):
    mine = upload(signed_in, "secret.txt", b"ada's secret").json()
    client.force_login(grace)

    assert client.get(mine["url"]).status_code == 404
    assert client.post(f"/attachments/{mine['id']}/remove/").status_code == 404
    assert Attachment.objects.filter(pk=mine["id"]).exists()


@pytest.mark.django_db
def test_removing_an_unsent_file_deletes_it_from_storage(signed_in):
    data = upload(signed_in, "draft.txt", b"draft").json()
    name = Attachment.objects.get(pk=data["id"]).file.name

    assert signed_in.post(f"/attachments/{data['id']}/remove/").status_code == 200
    assert not Attachment.objects.exists()
    assert not default_storage.exists(name)


@pytest.mark.django_db
def test_deleting_the_conversation_deletes_its_files(signed_in, ada):
    chat = make.conversation(ada, "With files")
    [question] = make.chain(chat, ["Look at this"])
    data = upload(signed_in, "notes.txt", b"notes").json()
    row = Attachment.objects.get(pk=data["id"])
    Attachment.objects.filter(pk=row.pk).update(message=question)

    services.conversation_delete(conversation=Conversation.objects.get(pk=chat.pk))

    assert not Attachment.objects.exists()
    assert not default_storage.exists(row.file.name)
    assert signed_in.get(data["url"]).status_code == 404


@pytest.mark.django_db
def test_files_of_a_hidden_conversation_are_not_served(signed_in, ada):
    chat = make.conversation(ada, "Being deleted")
    [question] = make.chain(chat, ["Q"])
    data = upload(signed_in, "notes.txt", b"notes").json()
    Attachment.objects.filter(pk=data["id"]).update(message=question)
    assert signed_in.get(data["url"]).status_code == 200

    Conversation.objects.filter(pk=chat.pk).update(hidden_since="2026-01-01T00:00:00Z")

    assert signed_in.get(data["url"]).status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_the_form_without_javascript_sends_files_with_the_message(
    ada, chat_config, fake_upstream, clean_engine, view_thread_connections
):
    fake_upstream.behave(reply="Read it.")
    client = AsyncClient()
    await client.aforce_login(ada)

    response = await client.post(
        "/send/",
        {"content": "Summarise", "target": "fake:fake-model", "parent": "",
         "files": [SimpleUploadedFile("notes.txt", b"Line one", content_type="text/plain")]},
    )  # fmt: skip

    assert response.status_code == 302
    conversation_id = re.match(r"/c/([0-9a-f-]{36})/", response["Location"]).group(1)
    question = await Message.objects.aget(conversation_id=conversation_id, role="user")
    row = await Attachment.objects.aget()
    assert (row.message_id, row.name, row.owner_id) == (question.id, "notes.txt", ada.id)
    assert fake_upstream.requests[-1].json["messages"] == [
        {"role": "user", "content": '<file name="notes.txt">\nLine one\n</file>\n\nSummarise'}
    ]
    page = (await client.get(f"/c/{conversation_id}/")).content.decode()
    assert f'href="/attachments/{row.id}/" download' in page
    assert "notes.txt" in page and "8\xa0bytes" in page


@pytest.mark.django_db(transaction=True)
async def test_the_form_refuses_an_image_for_a_model_without_vision(
    ada, chat_config, fake_upstream, clean_engine, view_thread_connections
):
    client = AsyncClient()
    await client.aforce_login(ada)

    response = await client.post(
        "/send/",
        {"content": "What is this?", "target": "fake:fake-model", "parent": "",
         "files": [SimpleUploadedFile("dot.png", PNG, content_type="image/png")]},
    )  # fmt: skip

    assert response.status_code == 400
    assert "This model cannot see images." in response.content.decode()
    assert fake_upstream.requests == []
    assert not await Message.objects.aexists()
    assert not await Attachment.objects.aexists()
