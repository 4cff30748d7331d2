"""Export and import as a user meets them: downloads with their contents, uploads with errors."""

import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient

from conversations.models import Conversation, Message
from conversations.transfer import conversations_export_all
from tests.conversations import page_factories as make


def _tree(owner):
    """A conversation with a regenerated answer: two branches below one question."""
    config = make.provider_config(name="local")
    chat = make.conversation(
        owner,
        "Trip to Lisbon",
        provider_config=config,
        model="fake-model",
        system_prompt="You plan trips.",
        options={"temperature": 0.3},
    )
    question, first = make.chain(chat, ["Plan a day in Lisbon", "Start at **Belém**."])
    second = make.message(
        chat, "Begin in Alfama.", role="assistant", parent=question, provider="local",
        model="fake-model", prompt_tokens=12, completion_tokens=4,
    )  # fmt: skip
    Conversation.objects.filter(pk=chat.pk).update(current_leaf=second)
    chat.refresh_from_db()
    return chat, question, first, second


def _upload(content: bytes, name="chat.json"):
    return SimpleUploadedFile(name, content, content_type="application/json")


def _item(**fields) -> dict:
    """One message of our format."""
    return {"id": "a", "parent": None, "role": "user", "content": "x", **fields}


def _ours(messages: list | None = None, *, version=1, **conversation) -> bytes:
    """A `chatsite.conversation` file (json.dumps writes NUL and lone surrogates as escapes)."""
    return json.dumps({
        "format": "chatsite.conversation", "version": version, "conversation": conversation,
        "messages": [_item()] if messages is None else messages,
    }).encode()  # fmt: skip


def _export(conversations: list, *, version=1) -> bytes:
    return json.dumps(
        {"format": "chatsite.export", "version": version, "conversations": conversations}
    ).encode()


def _openai(**fields) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "x", **fields}]}).encode()


# --- Export ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_json_export_holds_the_whole_tree_with_roles_times_and_usage(signed_in, ada):
    chat, question, first, second = _tree(ada)

    response = signed_in.get(f"/c/{chat.id}/export.json")

    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="trip-to-lisbon-{str(chat.id)[:8]}.json"'
    )
    document = json.loads(response.content)
    assert document["format"] == "chatsite.conversation"
    meta = document["conversation"]
    assert (meta["title"], meta["provider"]) == ("Trip to Lisbon", "local")
    assert meta["model"] == "fake-model"
    assert (meta["system_prompt"], meta["options"]) == ("You plan trips.", {"temperature": 0.3})
    assert meta["current_leaf"] == str(second.id)
    by_id = {item["id"]: item for item in document["messages"]}
    assert set(by_id) == {str(question.id), str(first.id), str(second.id)}
    assert by_id[str(first.id)]["parent"] == by_id[str(second.id)]["parent"] == str(question.id)
    assert by_id[str(second.id)]["usage"] == {"prompt_tokens": 12, "completion_tokens": 4}
    assert by_id[str(question.id)]["role"] == "user"
    assert all(item["created_at"] for item in document["messages"])


@pytest.mark.django_db
def test_markdown_export_is_the_current_branch(signed_in, ada):
    chat, *_ = _tree(ada)

    response = signed_in.get(f"/c/{chat.id}/export.md")
    text = response.content.decode()

    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert text.startswith("# Trip to Lisbon\n")
    assert "> **System prompt:** You plan trips." in text
    assert "## User" in text and "Plan a day in Lisbon" in text
    assert "## Assistant (local · fake-model)" in text and "Begin in Alfama." in text
    assert "Belém" not in text


@pytest.mark.django_db(transaction=True)
async def test_export_all_streams_every_conversation_of_the_user_only(
    ada, grace, view_thread_connections
):
    def rows():
        mine = [make.conversation(ada, f"mine {index}") for index in range(60)]
        make.chain(mine[0], ["hello", "hi"])
        make.chain(make.conversation(grace, "not yours"), ["grace's secret"])
        return mine

    mine = await sync_to_async(rows)()
    client = AsyncClient()
    await client.aforce_login(ada)

    response = await client.get("/export.json")
    body = b"".join([chunk async for chunk in response.streaming_content])

    assert response["Content-Disposition"] == 'attachment; filename="conversations.json"'
    document = json.loads(body)
    assert document["format"] == "chatsite.export"
    titles = sorted(item["conversation"]["title"] for item in document["conversations"])
    assert titles == sorted(chat.title for chat in mine)
    assert b"secret" not in body
    first = next(c for c in document["conversations"] if c["conversation"]["title"] == "mine 0")
    assert [m["content"] for m in first["messages"]] == ["hello", "hi"]


# --- Import ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_of_our_export_recreates_the_tree_as_a_new_conversation(signed_in, ada):
    chat, question, _, _ = _tree(ada)
    exported = signed_in.get(f"/c/{chat.id}/export.json").content

    response = signed_in.post("/import/", {"file": _upload(exported)})

    copy = Conversation.objects.exclude(pk=chat.pk).get(owner=ada)
    assert response["Location"] == f"/c/{copy.id}/"
    assert (copy.title, copy.system_prompt) == ("Trip to Lisbon", "You plan trips.")
    assert copy.model == "fake-model"
    rows = {m.content: m for m in Message.objects.filter(conversation=copy)}
    assert set(rows) == {"Plan a day in Lisbon", "Start at **Belém**.", "Begin in Alfama."}
    root = rows["Plan a day in Lisbon"]
    assert rows["Start at **Belém**."].parent_id == rows["Begin in Alfama."].parent_id == root.id
    assert copy.current_leaf_id == rows["Begin in Alfama."].id
    assert root.id != question.id  # new ids, the original is untouched
    page = signed_in.get(f"/c/{copy.id}/").content.decode()
    assert "Begin in Alfama." in page and "2/2" in page


@pytest.mark.django_db
def test_import_of_an_openai_messages_list(signed_in, ada):
    payload = {
        "title": "From elsewhere",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
        ],
    }

    response = signed_in.post("/import/", {"file": _upload(json.dumps(payload).encode())})

    chat = Conversation.objects.get(owner=ada)
    assert response["Location"] == f"/c/{chat.id}/"
    assert (chat.title, chat.system_prompt) == ("From elsewhere", "Be terse.")
    question, answer = Message.objects.filter(conversation=chat).order_by("created_at")
    assert (question.role, question.content, answer.role, answer.content) == (
        "user", "Capital of France?", "assistant", "Paris.",
    )  # fmt: skip
    assert answer.parent_id == question.id


@pytest.mark.django_db
def test_import_of_a_whole_export_reports_how_many(signed_in, ada, grace):
    make.chain(make.conversation(grace, "one"), ["a", "b"])
    make.chain(make.conversation(grace, "two"), ["c"])
    export = "".join(conversations_export_all(user=grace)).encode()

    response = signed_in.post("/import/", {"file": _upload(export)}, follow=True)

    assert "Imported 2 conversations." in response.content.decode()
    assert sorted(Conversation.objects.filter(owner=ada).values_list("title", flat=True)) == [
        "one", "two",
    ]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"\xff\xfe not text", "The file is not UTF-8 text."),
        (b"{ nope", "The file is not valid JSON"),
        (b'{"hello": "world"}', "This is not a file we can import"),
        (b'{"messages": []}', "&quot;messages&quot; must be a non-empty list."),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "Message 1 has role"),
        (
            b'{"format": "chatsite.conversation", "version": 1, "conversation": {},'
            b' "messages": [{"id": "a", "parent": "b", "role": "user", "content": "x"},'
            b' {"id": "b", "parent": "a", "role": "user", "content": "y"}]}',
            "parent links form a loop",
        ),
        (
            b'{"format": "chatsite.conversation", "version": 9, "conversation": {},'
            b' "messages": []}',
            "this site reads version 1",
        ),
        # Hostile files: each of these once reached the database or crashed the parser.
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-nesting"),
        pytest.param(
            b'{"messages": [], "n": ' + b"7" * 5000 + b"}",
            "The file is not valid JSON",
            id="huge-number",
        ),
        pytest.param(_openai(role=["user"]), "Message 1 has role", id="openai-role-list"),
        pytest.param(_openai(content=["hidden\x00"]), "cannot be stored", id="openai-part-nul"),
        pytest.param(
            _openai(content=[{"type": "text", "text": "\ud800"}]),
            "cannot be stored",
            id="openai-part-surrogate",
        ),
        pytest.param(
            _ours([_item(role={"user": 1})]), "Message 1 has an unknown role", id="role-dict"
        ),
        pytest.param(
            _ours([_item(status=["complete"])]), "Message 1 has an unknown status", id="status-list"
        ),
        pytest.param(
            _ours(current_leaf=["a"]), "current_leaf names a message", id="current-leaf-list"
        ),
        pytest.param(
            _ours([_item(usage={"prompt_tokens": 2**31})]),
            "prompt_tokens must be",
            id="usage-above-int32",
        ),
        pytest.param(
            _ours([_item(usage={"completion_tokens": 10**30})]),
            "completion_tokens must be",
            id="usage-huge",
        ),
        pytest.param(
            _ours([_item(content="nul \x00 inside")]), "Message 1 content holds", id="content-nul"
        ),
        pytest.param(
            _ours([_item(content="lone \ud800 half")]),
            "Message 1 content holds",
            id="content-surrogate",
        ),
        pytest.param(
            _ours([_item(error={"detail": "\udfff"})]),
            "Message 1 error detail holds",
            id="error-surrogate",
        ),
        pytest.param(_ours(title="\x00"), "The title holds", id="title-nul"),
        pytest.param(
            _ours([_item(created_at="0001-01-01T00:00:00+05:00")]),
            "is out of range",
            id="time-underflows-utc",
        ),
        pytest.param(
            _ours([_item(completed_at="9999-12-31T23:59:59-05:00")]),
            "is out of range",
            id="time-overflows-utc",
        ),
        pytest.param(
            _ours(created_at="9999-12-31T23:59:59-05:00"),
            "is out of range",
            id="conversation-time-overflows",
        ),
        pytest.param(
            _ours(archived="false"), "archived must be true or false", id="archived-string"
        ),
        pytest.param(_ours([]), "holds no messages", id="no-messages"),
        pytest.param(_ours(version=True), "this site reads version 1", id="version-true"),
        pytest.param(
            _export([json.loads(_ours())], version=2),
            "this site reads version 1",
            id="export-version-2",
        ),
        pytest.param(_export([]), "holds no conversations", id="export-empty"),
    ],
)
def test_bad_import_files_get_a_clear_error_and_change_nothing(signed_in, ada, content, error):
    make.chain(make.conversation(ada, "existing"), ["kept"])
    before = (Conversation.objects.count(), Message.objects.count())

    response = signed_in.post("/import/", {"file": _upload(content)})

    assert response.status_code == 400
    html = response.content.decode()
    assert error in html
    assert 'role="alert"' in html
    assert (Conversation.objects.count(), Message.objects.count()) == before


@pytest.mark.django_db
def test_import_fails_as_a_whole_when_one_conversation_of_an_export_is_bad(signed_in, ada):
    good = {
        "format": "chatsite.conversation",
        "version": 1,
        "conversation": {"title": "ok"},
        "messages": [{"id": "1", "parent": None, "role": "user", "content": "fine"}],
    }
    bad = {**good, "messages": [{"id": "1", "parent": "ghost", "role": "user", "content": "x"}]}
    export = {"format": "chatsite.export", "version": 1, "conversations": [good, bad]}

    response = signed_in.post("/import/", {"file": _upload(json.dumps(export).encode())})

    assert response.status_code == 400
    assert "Conversation 2:" in response.content.decode()
    assert not Conversation.objects.exists()


@pytest.mark.django_db
def test_import_page_explains_what_it_accepts(signed_in):
    html = signed_in.get("/import/").content.decode()

    assert 'enctype="multipart/form-data"' in html
    assert "OpenAI-style <code>messages</code> list" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "ascii_stem", "unicode_stem"),
    [
        pytest.param(
            "Привет, мир",
            "conversation",
            "%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82-%D0%BC%D0%B8%D1%80",
            id="cyrillic",
        ),
        pytest.param("Café au lait", "cafe-au-lait", "caf%C3%A9-au-lait", id="accents"),
        pytest.param("東京 trip", "trip", "%E6%9D%B1%E4%BA%AC-trip", id="cjk"),
    ],
)
def test_export_of_a_non_ascii_title_names_the_file_in_its_own_script(
    signed_in, ada, title, ascii_stem, unicode_stem
):
    chat = make.conversation(ada, title)
    make.chain(chat, ["hello"])
    short = str(chat.id)[:8]

    for extension in ("json", "md"):
        response = signed_in.get(f"/c/{chat.id}/export.{extension}")

        # Old clients read the ASCII name; the others prefer the UTF-8 one (RFC 6266).
        assert response["Content-Disposition"] == (
            f'attachment; filename="{ascii_stem}-{short}.{extension}"; '
            f"filename*=UTF-8''{unicode_stem}-{short}.{extension}"
        )
