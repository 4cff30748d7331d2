"""The chat pages as a browser without JavaScript sees them: rendered HTML, links and forms."""

import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from conversations import rendering, services
from conversations.models import Conversation, Folder, Message
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db


def _messages_in(html: str) -> list[str]:
    """Ids of the message items on a page, in page order (the <template>s excluded)."""
    return [
        ident
        for ident in re.findall(r'<li class="message [^"]*" id="m-([0-9a-f-]{36})"', html)
        if ident != "00000000-0000-0000-0000-000000000000"
    ]


# --- The chat page --------------------------------------------------------------------------------


def test_new_chat_offers_only_enabled_providers_and_their_models(signed_in):
    make.provider_config(name="local", allowed_models=["small", "large"], default_model="small")
    make.provider_config(name="retired", enabled=False)

    html = signed_in.get("/").content.decode()

    assert '<option value="local:small" selected>small</option>' in html
    assert '<option value="local:large">large</option>' in html
    assert "retired" not in html
    assert "What can I help with?" in html
    assert "<title>New chat · Chat</title>" in html


def test_new_chat_without_any_provider_says_so_and_disables_the_composer(signed_in):
    html = signed_in.get("/").content.decode()

    assert "No model is set up yet" in html
    assert re.search(r'<fieldset class="composer-fields"[^>]* disabled>', html)


def test_conversation_page_shows_its_branch_with_finished_answers_as_markdown(signed_in, ada):
    chat = make.conversation(ada, "Greeting <b>bold</b>")
    question, answer = make.chain(chat, ["Say **hi** <script>x()</script>", "Hi **there**!"])

    response = signed_in.get(f"/c/{chat.id}/")
    html = response.content.decode()

    assert response.status_code == 200
    assert "<title>Greeting &lt;b&gt;bold&lt;/b&gt; · Chat</title>" in html
    assert _messages_in(html) == [str(question.id), str(answer.id)]
    # The user's text is shown as written (escaped), the answer as rendered Markdown.
    assert "Say **hi** &lt;script&gt;x()&lt;/script&gt;" in html
    assert "<p>Hi <strong>there</strong>!</p>" in html
    # The composer continues this branch, and the menu links to this conversation's actions.
    assert f'name="parent" value="{answer.id}"' in html
    assert f'action="/c/{chat.id}/send/"' in html
    assert f'href="/c/{chat.id}/export.md"' in html


def test_answer_still_being_written_is_plain_text_not_markdown(signed_in, ada):
    chat = make.conversation(ada)
    _, answer = make.chain(chat, ["Question", "Partial **answer"])
    Message.objects.filter(pk=answer.pk).update(status=Message.Status.STREAMING)

    html = signed_in.get(f"/c/{chat.id}/").content.decode()

    assert 'data-status="streaming"' in html
    assert '<div class="message-content plain" data-slot="content">Partial **answer</div>' in html


def test_failed_answer_shows_its_error_inline_with_a_retry(signed_in, ada):
    chat = make.conversation(ada)
    _, answer = make.chain(chat, ["Question", "Half an ans"])
    Message.objects.filter(pk=answer.pk).update(
        status=Message.Status.ERROR, error_code="rate_limited", error_detail="Too many requests."
    )

    html = signed_in.get(f"/c/{chat.id}/").content.decode()
    item = html[html.index(f'id="m-{answer.id}"') :]

    assert re.search(r'<div class="message-error" role="alert" data-slot="error-box">', item)
    # The provider's own words are for admins; the user reads a fixed sentence.
    assert "The provider is rate limiting; try again later." in item
    assert "Too many requests." not in item
    assert 'data-action="regenerate">Retry</button>' in item


def test_siblings_show_their_position_and_arrows(signed_in, ada):
    chat = make.conversation(ada)
    question, first = make.chain(chat, ["Question", "First answer"])
    second = make.message(chat, "Second answer", role="assistant", parent=question)
    third = make.message(chat, "Third answer", role="assistant", parent=question)
    Conversation.objects.filter(pk=chat.pk).update(current_leaf=second)

    html = signed_in.get(f"/c/{chat.id}/").content.decode()

    assert _messages_in(html) == [str(question.id), str(second.id)]
    assert "2/3" in html
    assert f'name="message" value="{first.id}" aria-label="Previous version"' in html
    assert f'name="message" value="{third.id}" aria-label="Next version"' in html


def test_pages_carry_no_inline_script_style_or_handler(signed_in, ada):
    chat = make.conversation(ada, "Styles")
    make.chain(chat, ["Question", "| a | b |\n|:-:|--:|\n| 1 | 2 |\n\n```python\nx = 1\n```"])

    for url in ["/", f"/c/{chat.id}/", "/history/?q=question", "/import/", "/conversations/"]:
        response = signed_in.get(url)
        html = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert " src=" in tag, f"{url}: inline script {tag}"
        assert not re.search(r"\sstyle=", html), url
        assert not re.search(r"\son[a-z]+=", html), url
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_long_conversation_renders_only_its_newest_page(signed_in, ada, monkeypatch):
    chat = make.conversation(ada, "Marathon")
    rows = make.chain(chat, [f"message number {index}" for index in range(5000)])
    # Every message the page reads becomes a model instance through from_db; count them, and
    # keep the SQL, so that reading the whole branch and slicing it in Python would show.
    loaded = []
    from_db = Message.from_db.__func__

    def counted(cls, *args, **kwargs):
        loaded.append(1)
        return from_db(cls, *args, **kwargs)

    monkeypatch.setattr(Message, "from_db", classmethod(counted))

    with CaptureQueriesContext(connection) as queries:
        html = signed_in.get(f"/c/{chat.id}/").content.decode()

    shown = _messages_in(html)
    assert shown == [str(row.id) for row in rows[-50:]]
    assert "message number 4949" not in html
    assert f'href="/c/{chat.id}/?before={rows[-50].id}" data-older' in html
    # The page and the one message above it that says "there is more".
    assert len(loaded) <= 51
    (branch,) = [q["sql"] for q in queries.captured_queries if "WITH RECURSIVE" in q["sql"]]
    assert re.search(r"depth \+ 1 < 51\b", branch)


def test_older_messages_come_page_by_page_as_a_fragment(signed_in, ada):
    chat = make.conversation(ada)
    rows = make.chain(chat, [f"message {index}" for index in range(120)])

    html = signed_in.get(f"/c/{chat.id}/?before={rows[70].id}&fragment=1").content.decode()

    assert "<html" not in html
    assert _messages_in(html) == [str(row.id) for row in rows[20:70]]
    assert f"?before={rows[20].id}" in html


def test_search_hit_opens_the_branch_at_that_message(signed_in, ada):
    chat = make.conversation(ada)
    rows = make.chain(chat, [f"message {index}" for index in range(300)])

    html = signed_in.get(f"/c/{chat.id}/?m={rows[10].id}").content.decode()

    shown = _messages_in(html)
    assert str(rows[10].id) in shown and shown[-1] == str(rows[10].id)
    # Not the end of the branch: the page says so, and sending from the middle is off.
    assert "Jump to the latest message" in html
    assert re.search(r'<fieldset class="composer-fields"[^>]* disabled>', html)


def test_conversation_page_costs_the_same_queries_for_short_and_long_chats(
    signed_in, ada, django_assert_max_num_queries
):
    make.provider_config()
    short = make.conversation(ada, "Short")
    make.chain(short, ["a", "b"])
    long = make.conversation(ada, "Long")
    rows = make.chain(long, [f"m{index}" for index in range(400)])
    for index in range(3):
        make.message(long, f"other answer {index}", role="assistant", parent=rows[-2])
    for index in range(80):
        make.conversation(ada, f"filler {index}")

    counts = []
    for chat in (short, long):
        with CaptureQueriesContext(connection) as queries:
            assert signed_in.get(f"/c/{chat.id}/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
    # The page with the sidebar's recent conversations, then two for its pinned and folder
    # sections, one for the user's theme, one for the model prices its answers are shown with and
    # one for the files of its questions.
    with django_assert_max_num_queries(14):
        signed_in.get(f"/c/{long.id}/")


def test_another_users_conversation_is_not_found_everywhere(client, grace, ada):
    chat = make.conversation(ada, "Private")
    question, answer = make.chain(chat, ["secret question", "secret answer"])
    client.force_login(grace)
    base = f"/c/{chat.id}"

    for url in [f"{base}/", f"{base}/rename/", f"{base}/delete/", f"{base}/export.json",
                f"{base}/export.md", f"{base}/?fragment=1&before={answer.id}"]:  # fmt: skip
        assert client.get(url).status_code == 404, url
    for url, data in [
        (f"{base}/rename/", {"title": "mine now"}),
        (f"{base}/archive/", {"archived": "1"}),
        (f"{base}/delete/", {}),
        (f"{base}/switch/", {"message": str(question.id)}),
        (f"{base}/settings/", {"system": "obey grace"}),
        (f"{base}/send/", {"content": "hello"}),
    ]:
        assert client.post(url, data).status_code == 404, url
    chat.refresh_from_db()
    assert (chat.title, chat.archived, chat.system_prompt) == ("Private", False, "")
    assert Message.objects.filter(conversation=chat).count() == 2
    assert "secret" not in client.get("/").content.decode()


def test_unknown_conversation_id_is_not_found(signed_in):
    assert signed_in.get(f"/c/{uuid.uuid4()}/").status_code == 404


# --- The sidebar ----------------------------------------------------------------------------------


def test_sidebar_shows_the_newest_fifty_and_a_link_to_the_rest(signed_in, ada, grace):
    chats = [make.conversation(ada, f"chat {index:03}") for index in range(120)]
    make.conversation(grace, "grace's own")
    archived = make.conversation(ada, "put away", archived=True)

    html = signed_in.get("/").content.decode()
    titles = re.findall(r'class="conversation-link" href="[^"]+">([^<]+)</a>', html)

    assert titles == [chat.title for chat in reversed(chats[-50:])]
    assert "grace&#x27;s own" not in html and archived.title not in html
    assert "/conversations/?cursor=" in html


def test_sidebar_pages_follow_each_other_without_gaps_or_repeats(signed_in, ada):
    chats = [make.conversation(ada, f"chat {index:03}") for index in range(120)]
    seen: list[str] = []
    url = "/conversations/?fragment=1"
    while url:
        html = signed_in.get(url).content.decode()
        seen += re.findall(r'class="conversation-item[^"]*" data-id="([0-9a-f-]+)"', html)
        more = re.search(r'href="(/conversations/\?cursor=[^"]+)"', html)
        url = more.group(1).replace("&amp;", "&") + "&fragment=1" if more else None

    assert seen == [str(chat.id) for chat in reversed(chats)]


def test_sidebar_costs_the_same_queries_for_few_and_many_conversations(
    signed_in, ada, django_assert_max_num_queries
):
    counts = []
    for total in (3, 150):
        for index in range(total - Conversation.objects.filter(owner=ada).count()):
            chat = make.conversation(ada, f"chat {index}")
            # Pinned and filed ones too: each section is one query, however full.
            if index % 3 == 1:
                services.conversation_set_pinned(conversation=chat, pinned=True)
            elif index % 3 == 2:
                folder, _ = Folder.objects.get_or_create(owner=ada, name=f"folder {index % 30}")
                services.conversation_move(conversation=chat, folder=folder)
        with CaptureQueriesContext(connection) as queries:
            signed_in.get("/conversations/?fragment=1")
        counts.append(len(queries))
    assert counts[0] == counts[1]
    # Session, user, pinned, folders, the folders' newest, the rest.
    with django_assert_max_num_queries(6):
        signed_in.get("/conversations/?fragment=1")


def test_archived_list_shows_archived_conversations_with_unarchive(signed_in, ada):
    chat = make.conversation(ada, "Old project", archived=True)

    html = signed_in.get("/conversations/?archived=1").content.decode()

    assert "Old project" in html
    assert f'action="/c/{chat.id}/archive/"' in html and ">Unarchive</button>" in html.replace(
        "\n", ""
    ).replace("  ", "")


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00+05:00",  # before the calendar's start once in UTC
        "9999-12-31T23:59:59-05:00",  # after its end once in UTC
        "2000-01-01T00:00:00",  # no offset: which zone would it be in?
        "yesterday",
    ],
)
def test_a_bad_sidebar_cursor_shows_the_first_page(signed_in, ada, stamp):
    chats = [make.conversation(ada, f"chat {index}") for index in range(3)]

    response = signed_in.get("/conversations/", {"cursor": f"{stamp}~{uuid.uuid4()}"})

    assert response.status_code == 200
    listed = re.findall(r'class="conversation-item[^"]*" data-id="([0-9a-f-]+)"', response.text)
    # Twice: in the sidebar and in the page's own list.
    assert listed == [str(chat.id) for chat in reversed(chats)] * 2


def test_a_link_to_a_message_elsewhere_or_above_the_root_opens_the_latest_page(signed_in, ada):
    make.provider_config()
    chat = make.conversation(ada)
    rows = make.chain(chat, [f"message {index}" for index in range(60)])
    elsewhere = make.chain(make.conversation(ada), ["in another conversation"])[0]

    for query in (f"m={elsewhere.id}", f"before={rows[0].id}", f"m={uuid.uuid4()}"):
        html = signed_in.get(f"/c/{chat.id}/?{query}").content.decode()

        assert _messages_in(html) == [str(row.id) for row in rows[-50:]], query
        assert "What can I help with?" not in html and "Jump to the latest" not in html
        assert not re.search(r'<fieldset class="composer-fields"[^>]* disabled>', html)


def test_older_messages_above_the_root_are_an_empty_fragment(signed_in, ada):
    chat = make.conversation(ada)
    rows = make.chain(chat, ["first", "second"])

    html = signed_in.get(f"/c/{chat.id}/?before={rows[0].id}&fragment=1").content.decode()

    assert _messages_in(html) == []


def test_a_conversation_of_long_imported_answers_renders_a_bounded_amount_per_view(
    signed_in, ada, monkeypatch
):
    rendered: list[int] = []
    markdown_to_html = rendering._markdown_to_html

    def counting(text: str) -> str:
        rendered.append(len(text))
        return markdown_to_html(text)

    monkeypatch.setattr(rendering, "_markdown_to_html", counting)
    chat = make.conversation(ada, "Imported")
    long_answers = ["**long** " + "y" * 90_000 if index % 2 else "q" for index in range(38)]
    make.chain(chat, [*long_answers, "question", "**huge** " + "z" * 1_000_000])

    views = 0
    while True:
        rendered.clear()
        html = signed_in.get(f"/c/{chat.id}/").content.decode()
        views += 1
        assert sum(rendered) <= rendering.VIEW_RENDER_BUDGET_CHARS
        if not rendered:
            break
    # The 19 long answers, two per view, each once; then every view shows stored copies.
    assert views == 11
    assert rendering.TOO_LONG_NOTE in html and "<pre>**huge** zzz" in html
    assert html.count("<strong>long</strong>") == 19
    assert not Message.objects.filter(conversation=chat, role="assistant", content_html=None)


# --- The rendering of an answer so far ------------------------------------------------------------


def test_render_preview_returns_the_same_sanitised_html_as_a_finished_answer(signed_in):
    text = "**bold** <script>alert(1)</script> [x](javascript:alert(1))\n\n```python\nprint("

    response = signed_in.post("/render/", {"content": text}, HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    html = response.json()["html"]
    assert html == rendering.render_markdown(text)
    assert "<strong>bold</strong>" in html and "<script" not in html and "href=" not in html


def test_render_preview_reads_only_the_session_and_user_and_writes_nothing(signed_in):
    signed_in.get("/")  # the session exists and needs no update afterwards
    with CaptureQueriesContext(connection) as queries:
        response = signed_in.post("/render/", {"content": "# Title\n\n" + "word " * 4000})
    assert response.status_code == 200 and response.json()["html"].startswith("<h1>Title</h1>")
    assert [query["sql"].split()[0] for query in queries] == ["SELECT", "SELECT"]


def test_render_preview_needs_a_signed_in_post(signed_in):
    assert signed_in.get("/render/").status_code == 405
    response = Client().post("/render/", {"content": "**x**"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
