"""The history page: search with highlighted snippets, filters, links to the message."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Message
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db


def test_history_without_a_query_explains_itself(signed_in):
    html = signed_in.get("/history/").content.decode()

    assert "Search every message and title across your conversations." in html
    assert 'role="search"' in html


def test_hits_are_highlighted_and_open_the_conversation_at_the_message(signed_in, ada):
    chat = make.conversation(ada, "Baking")
    _, hit = make.chain(chat, ["How long to knead?", "Knead the dough for ten minutes."])

    response = signed_in.get("/history/", {"q": "dough"})
    html = response.content.decode()

    assert response.status_code == 200
    assert "1 result" in html
    assert "<mark>dough</mark>" in html
    assert f'href="/c/{chat.id}/?m={hit.id}#m-{hit.id}"' in html
    assert "<title>dough · Search history · Chat</title>" in html


def test_title_hits_link_to_the_conversation(signed_in, ada):
    chat = make.conversation(ada, "Quarterly budget review")

    html = signed_in.get("/history/", {"q": "budget"}).content.decode()

    assert f'href="/c/{chat.id}/"' in html
    assert "<mark>budget</mark>" in html


def test_hits_show_escaped_text_never_markup(signed_in, ada):
    chat = make.conversation(ada)
    make.chain(chat, ["<img src=x onerror=alert(1)> payload here"])

    html = signed_in.get("/history/", {"q": "payload"}).content.decode()

    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; <mark>payload</mark>" in html


def test_filters_narrow_the_hits(signed_in, ada):
    make.provider_config(name="local", allowed_models=["small", "large"])
    small = make.conversation(ada, "one")
    make.chain(small, ["alpha question", "alpha answer"], provider="local", model="small")
    large = make.conversation(ada, "two")
    rows = make.chain(large, ["alpha again", "alpha too"], provider="local", model="large")
    Message.objects.filter(pk__in=[row.pk for row in rows]).update(
        created_at=timezone.now() - timedelta(days=40)
    )

    def hits(**params):
        html = signed_in.get("/history/", {"q": "alpha", **params}).content.decode()
        return set(re.findall(r'href="/c/([0-9a-f-]{36})/\?m=', html))

    assert hits() == {str(small.id), str(large.id)}
    assert hits(model="large") == {str(large.id)}
    since = (timezone.now() - timedelta(days=7)).date().isoformat()
    assert hits(since=since) == {str(small.id)}
    html = signed_in.get("/history/", {"q": "alpha", "model": "large"}).content.decode()
    assert '<option value="large" selected>large</option>' in html


def test_reversed_dates_are_an_error_not_an_empty_result(signed_in):
    response = signed_in.get("/history/", {"q": "x", "since": "2024-05-02", "until": "2024-05-01"})

    assert response.status_code == 400
    assert "The start date is after the end date." in response.content.decode()


def test_nothing_found_says_so(signed_in, ada):
    make.chain(make.conversation(ada), ["something else"])

    html = signed_in.get("/history/", {"q": "zebra"}).content.decode()

    assert "Nothing found for “zebra”." in html


@pytest.mark.parametrize(
    "dates",
    [
        {"until": "9999-12-31"},
        {"since": "0001-01-01"},
        {"since": "0001-01-01", "until": "9999-12-31"},
    ],
)
def test_dates_at_the_ends_of_the_calendar_still_search(signed_in, ada, dates):
    make.chain(make.conversation(ada), ["evergreen topic"])

    response = signed_in.get("/history/", {"q": "evergreen", **dates})

    assert response.status_code == 200
    assert "1 result" in response.content.decode()


def test_more_results_link_to_the_next_page_of_the_same_search(signed_in, ada):
    chat = make.conversation(ada)
    rows = make.chain(chat, [f"kiwi {i}" for i in range(60)])

    first = signed_in.get("/history/", {"q": "kiwi", "model": ""}).content.decode()
    assert "50+ results, newest first" in first
    link = re.search(r'<a class="button" href="([^"]+)" rel="next">More results</a>', first)
    assert link is not None
    second = signed_in.get(link[1].replace("&amp;", "&"))
    html = second.content.decode()

    assert second.status_code == 200
    assert 'rel="next"' not in html
    back = re.search(r'<a class="button" href="([^"]+)">Newest results</a>', html)
    assert back is not None and "after=" not in back[1]
    assert "Newest results" not in first
    shown = re.findall(r"\?m=([0-9a-f-]+)#", first + html)
    assert shown == [str(row.id) for row in reversed(rows)]


def test_snippets_show_markdown_as_text_with_the_term_marked(signed_in, ada):
    chat = make.conversation(ada)
    make.chain(chat, ["## Plan\n\n```sh\nrun fn_12 <now>\n```\n\n| a | **fn_12** |\n|---|---|\n"])
    make.chain(chat, ["fn_1296 and 1296 are other things"])

    html = signed_in.get("/history/", {"q": "fn_12"}).content.decode()

    snippets = re.findall(r'<span class="hit-snippet">(.*?)</span>', html)
    assert snippets == ["Plan run <mark>fn_12</mark> &lt;now&gt; a <mark>fn_12</mark>"]


def test_a_page_link_that_no_search_gave_is_an_error(signed_in, ada):
    response = signed_in.get("/history/", {"q": "kiwi", "after": "not-a-page"})

    assert response.status_code == 400
    assert "That page of results does not exist" in response.content.decode()
