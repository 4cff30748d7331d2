"""Attachments in exports and imports: the files travel with their messages, and an import
checks them as an upload is checked."""

import base64
import json

import pytest
from django.core.files.storage import default_storage

from conversations.attachments.models import Attachment
from conversations.models import Message
from conversations.transfer import (
    TransferError,
    conversation_export_json,
    conversations_export_all,
    conversations_import,
)
from tests.conversations import page_factories as make
from tests.conversations.attachments.conftest import PNG

pytestmark = pytest.mark.django_db


def attach(owner, message, name: str, data: bytes, kind: str, content_type: str, text=""):
    row = Attachment(owner=owner, message=message, name=name, kind=kind,
                     content_type=content_type, size=len(data), text=text)  # fmt: skip
    from django.core.files.base import ContentFile

    row.file.save(str(row.id), ContentFile(data), save=True)
    return row


def test_export_and_import_carry_the_files(ada, grace):
    chat = make.conversation(ada, "Files")
    question, _answer = make.chain(chat, ["Look", "Seen"])
    attach(ada, question, "dot.png", PNG, "image", "image/png")
    attach(ada, question, "a.txt", b"alpha", "text", "text/plain; charset=utf-8", "alpha")

    document = json.loads(conversation_export_json(conversation=chat))
    files = document["messages"][0]["attachments"]
    assert files == [
        {"name": "dot.png", "kind": "image", "content_type": "image/png", "size": len(PNG),
         "data": base64.b64encode(PNG).decode()},
        {"name": "a.txt", "kind": "text", "content_type": "text/plain; charset=utf-8",
         "size": 5, "data": base64.b64encode(b"alpha").decode()},
    ]  # fmt: skip
    assert "attachments" not in document["messages"][1]
    everything = json.loads("".join(conversations_export_all(user=ada)))
    assert everything["conversations"][0]["messages"][0]["attachments"] == files

    [imported] = conversations_import(user=grace, raw=json.dumps(document).encode())

    copy = Message.objects.get(conversation=imported, content="Look")
    rows = list(Attachment.objects.filter(message=copy).order_by("name"))
    assert [(r.name, r.kind, r.owner, r.text) for r in rows] == [
        ("a.txt", "text", grace, "alpha"),
        ("dot.png", "image", grace, ""),
    ]
    assert default_storage.open(rows[1].file.name).read() == PNG
    # New files, not shared with the original's.
    assert Attachment.objects.count() == 4


def test_an_import_checks_the_files_like_an_upload(ada):
    fake_png = base64.b64encode(b"<svg/>").decode()
    document = {
        "format": "chatsite.conversation", "version": 1, "conversation": {"title": "x"},
        "messages": [{"id": "1", "role": "user", "content": "hi",
                      "attachments": [{"name": "x.png", "data": fake_png}]}],
    }  # fmt: skip

    with pytest.raises(TransferError) as caught:
        conversations_import(user=ada, raw=json.dumps(document).encode())

    assert "Message 1, attachment 1: x.png is not a PNG, JPEG, WebP or GIF image" in str(
        caught.value
    )
    assert not Attachment.objects.exists()
    document["messages"][0]["attachments"] = [{"name": "a.txt", "data": "not base64!"}]
    with pytest.raises(TransferError, match="not valid base64"):
        conversations_import(user=ada, raw=json.dumps(document).encode())


def test_an_import_keeps_the_size_limit(ada, settings):
    settings.ATTACHMENT_MAX_FILE_BYTES = 10
    data = base64.b64encode(b"x" * 64).decode()
    document = {
        "format": "chatsite.conversation", "version": 1, "conversation": {},
        "messages": [{"id": "1", "role": "user", "content": "hi",
                      "attachments": [{"name": "a.txt", "data": data}]}],
    }  # fmt: skip
    with pytest.raises(TransferError, match="larger than the attachment limit"):
        conversations_import(user=ada, raw=json.dumps(document).encode())


def test_a_file_lost_from_storage_is_left_out_of_the_export(ada):
    chat = make.conversation(ada, "Lost")
    [question] = make.chain(chat, ["Look"])
    kept = attach(ada, question, "a.txt", b"alpha", "text", "text/plain; charset=utf-8", "alpha")
    lost = attach(ada, question, "b.txt", b"beta", "text", "text/plain; charset=utf-8", "beta")
    default_storage.delete(lost.file.name)

    document = json.loads(conversation_export_json(conversation=chat))

    assert [a["name"] for a in document["messages"][0]["attachments"]] == [kept.name]


def test_the_markdown_export_names_the_files(ada):
    from conversations.selectors import message_branch
    from conversations.transfer import conversation_export_markdown

    chat = make.conversation(ada, "Named")
    question, _ = make.chain(chat, ["Look", "Seen"])
    attach(ada, question, "a.txt", b"alpha", "text", "text/plain; charset=utf-8", "alpha")
    attach(ada, question, "dot.png", PNG, "image", "image/png")

    text = conversation_export_markdown(conversation=chat, branch=message_branch(conversation=chat))

    assert "Look\n\n*Attached: `a.txt`, `dot.png`*\n\n## Assistant" in text
