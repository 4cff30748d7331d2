"""Pins and folders: the sidebar's first page leads with pinned conversations, then folders,
then the rest, newest first and cursor-paged; all of it through plain form posts."""

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import selectors, services
from conversations.errors import ChatError
from conversations.models import Conversation, Folder
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db

ITEM_IDS = r'class="conversation-item[^"]*" data-id="([0-9a-f-]+)"'


def _sidebar_ids(html: str) -> list[str]:
    return re.findall(ITEM_IDS, html)


# --- Selectors: order, paging, bounded queries ---------------------------------------------------


def test_pinned_then_folders_then_the_rest_and_pages_repeat_none(ada):
    chats = [make.conversation(ada, f"chat {index:03}") for index in range(130)]
    pinned = [chats[5], chats[90]]
    for chat in pinned:
        services.conversation_set_pinned(conversation=chat, pinned=True)
    work = services.folder_create(user=ada, name="Work")
    filed = chats[10:25]
    for chat in filed:
        services.conversation_move(conversation=chat, folder=work)

    first = selectors.conversation_sidebar_page(user=ada)

    # Most recently pinned first.
    assert [c.id for c in first.pinned] == [chats[90].id, chats[5].id]
    [section] = first.folders
    assert section.folder == work and section.has_more
    newest_filed = sorted(filed, key=lambda c: c.updated_at, reverse=True)
    assert [c.id for c in section.conversations] == [
        c.id for c in newest_filed[: selectors.FOLDER_PREVIEW_SIZE]
    ]
    rest, cursor = list(first.conversations), first.next_cursor
    while cursor:
        page = selectors.conversation_sidebar_page(user=ada, cursor=cursor)
        assert page.pinned == [] and page.folders == []
        rest += page.conversations
        cursor = page.next_cursor
    expected = [c for c in reversed(chats) if c not in pinned and c not in filed]
    assert [c.id for c in rest] == [c.id for c in expected]


def test_the_first_page_is_a_fixed_number_of_queries(ada):
    counts = []
    for folders in (1, 40):
        Folder.objects.filter(owner=ada).delete()
        for index in range(folders):
            folder = Folder.objects.create(owner=ada, name=f"folder {index}")
            for _ in range(3):
                make.conversation(ada, "filed", folder=folder)
        with CaptureQueriesContext(connection) as queries:
            page = selectors.conversation_sidebar_page(user=ada)
            assert len(page.folders) == folders
        counts.append(len(queries))
    assert counts == [4, 4]


def test_a_folders_page_lists_all_its_conversations_paged(signed_in, ada):
    folder = services.folder_create(user=ada, name="Big")
    chats = [make.conversation(ada, f"filed {index}", folder=folder) for index in range(60)]
    make.conversation(ada, "loose")

    html = signed_in.get(f"/conversations/?folder={folder.pk}").content.decode()
    listed = re.findall(ITEM_IDS, html.split('class="page-inner"')[1])
    more = re.search(r'href="(/conversations/\?cursor=[^"]+folder=[^"]+)"', html)
    rest = signed_in.get(more.group(1).replace("&amp;", "&") + "&fragment=1").content.decode()

    assert listed + _sidebar_ids(rest) == [str(c.id) for c in reversed(chats)]
    assert signed_in.get(f"/conversations/?folder={uuid.uuid4()}").status_code == 404


# --- Services -------------------------------------------------------------------------------------


def test_deleting_a_folder_keeps_its_conversations(signed_in, ada):
    folder = services.folder_create(user=ada, name="Temp")
    chat = make.conversation(ada, "Keep me", folder=folder)
    stamp = Conversation.objects.get(pk=chat.pk).updated_at

    response = signed_in.post(f"/folders/{folder.pk}/delete/", {"next": f"/c/{chat.id}/"})

    assert response.status_code == 302 and response["Location"] == f"/c/{chat.id}/"
    chat.refresh_from_db()
    assert not Folder.objects.exists()
    # Still there, out of any folder, and not moved to the top of the sidebar.
    assert (chat.folder_id, chat.updated_at) == (None, stamp)
    assert str(chat.id) in _sidebar_ids(signed_in.get("/").content.decode())


def test_folder_names_are_tidied_unique_and_required(ada):
    services.folder_create(user=ada, name="  Work   stuff ")
    assert Folder.objects.get().name == "Work stuff"
    with pytest.raises(ChatError, match="already have a folder named"):
        services.folder_create(user=ada, name="Work stuff")
    with pytest.raises(ChatError, match="needs a name"):
        services.folder_create(user=ada, name="   ")
    assert Folder.objects.count() == 1


def test_pins_and_folders_are_capped(ada, monkeypatch):
    monkeypatch.setattr(services, "PINNED_LIMIT", 2)
    monkeypatch.setattr(services, "FOLDER_LIMIT", 1)
    chats = [make.conversation(ada, f"chat {index}") for index in range(3)]
    for chat in chats[:2]:
        services.conversation_set_pinned(conversation=chat, pinned=True)
    with pytest.raises(ChatError, match="pin up to 2"):
        services.conversation_set_pinned(conversation=chats[2], pinned=True)
    services.folder_create(user=ada, name="One")
    with pytest.raises(ChatError, match="up to 1 folders"):
        services.folder_create(user=ada, name="Two")
    assert Conversation.objects.filter(pinned_at__isnull=False).count() == 2


# --- Views: plain forms that return where they came from ------------------------------------------


def test_pin_and_unpin_with_the_form_return_to_the_page(signed_in, ada):
    chat = make.conversation(ada, "Important")
    for index in range(3):
        make.conversation(ada, f"newer {index}")

    response = signed_in.post(f"/c/{chat.id}/pin/", {"pinned": "1", "next": "/history/"})
    html = signed_in.get("/").content.decode()

    assert response.status_code == 302 and response["Location"] == "/history/"
    assert _sidebar_ids(html)[0] == str(chat.id)
    assert "<h2>Pinned</h2>" in html

    signed_in.post(f"/c/{chat.id}/pin/", {"pinned": "0"})
    assert _sidebar_ids(signed_in.get("/").content.decode())[-1] == str(chat.id)


def test_create_rename_and_move_into_a_folder_with_forms(signed_in, ada):
    chat = make.conversation(ada, "Quarterly report")

    created = signed_in.post("/folders/new/", {"name": "Work"})
    folder = Folder.objects.get(owner=ada)
    moved = signed_in.post(f"/c/{chat.id}/move/", {"folder": str(folder.pk)}, follow=True)
    renamed = signed_in.post(f"/folders/{folder.pk}/rename/", {"name": "Office"})
    html = signed_in.get(f"/c/{chat.id}/").content.decode()

    assert created.status_code == 302 and renamed.status_code == 302
    assert "Moved “Quarterly report” to “Work”." in moved.content.decode()
    folder_markup = html.split(f'data-folder="{folder.pk}" data-drop-folder')[1].split("</li>\n")[0]
    assert "Office" in folder_markup and f'data-id="{chat.id}"' in folder_markup
    # The open conversation's folder is shown open.
    assert '<details class="folder-details" open>' in html

    signed_in.post(f"/c/{chat.id}/move/", {"folder": ""})
    assert Conversation.objects.get(pk=chat.pk).folder_id is None


def test_bad_folder_forms_show_a_clear_error(signed_in, ada):
    services.folder_create(user=ada, name="Work")

    duplicate = signed_in.post("/folders/new/", {"name": "Work"})
    blank = signed_in.post("/folders/new/", {"name": ""})
    too_long = signed_in.post("/folders/new/", {"name": "x" * 101})

    assert duplicate.status_code == 400 and "already have a folder named" in duplicate.text
    assert blank.status_code == 400 and "This field is required." in blank.text
    assert too_long.status_code == 400 and "at most 100 characters" in too_long.text
    assert Folder.objects.count() == 1


def test_the_script_moves_with_json_answers(signed_in, ada):
    chat = make.conversation(ada, "Dragged")
    folder = services.folder_create(user=ada, name="Target")

    ok = signed_in.post(
        f"/c/{chat.id}/move/", {"folder": str(folder.pk)}, HTTP_ACCEPT="application/json"
    )

    assert ok.status_code == 204
    assert Conversation.objects.get(pk=chat.pk).folder_id == folder.pk


def test_another_user_can_neither_use_nor_see_my_folders(client, ada, grace):
    folder = services.folder_create(user=ada, name="Private plans")
    mine = make.conversation(ada, "Mine")
    theirs = make.conversation(grace, "Theirs")
    client.force_login(grace)

    assert client.post(f"/c/{theirs.id}/move/", {"folder": str(folder.pk)}).status_code == 404
    assert client.post(f"/c/{mine.id}/move/", {"folder": ""}).status_code == 404
    assert client.post(f"/c/{mine.id}/pin/", {"pinned": "1"}).status_code == 404
    assert client.post(f"/folders/{folder.pk}/rename/", {"name": "Mine now"}).status_code == 404
    assert client.post(f"/folders/{folder.pk}/delete/").status_code == 404
    assert client.get(f"/conversations/?folder={folder.pk}").status_code == 404
    assert "Private plans" not in client.get("/").content.decode()
    assert Folder.objects.get().name == "Private plans"
    assert Conversation.objects.get(pk=theirs.pk).folder_id is None
    assert Conversation.objects.get(pk=mine.pk).pinned_at is None
