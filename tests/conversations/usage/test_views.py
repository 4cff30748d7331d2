"""Usage as users see it: on each answer, in the conversation's menu, on the usage page."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import frames
from conversations.models import Message
from conversations.usage.models import ModelPrice
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db


def _answer(chat, model, prompt, completion, *, seconds=2.0, parent=None):
    message = make.message(
        chat, "An answer", role="assistant", model=model, prompt_tokens=prompt,
        completion_tokens=completion, parent=parent,
    )  # fmt: skip
    Message.objects.filter(pk=message.pk).update(
        completed_at=message.created_at + timedelta(seconds=seconds)
    )
    return message


def test_each_answer_shows_its_tokens_time_and_cost(ada, client_for):
    chat = make.conversation(ada, "Costs")
    question = make.message(chat, "Question?")
    answer = _answer(chat, "gpt-x", 1200, 340, seconds=3.4, parent=question)
    chat.current_leaf = answer
    chat.save()
    ModelPrice.objects.create(
        model="gpt-x", input_per_million=Decimal("2.5"), output_per_million=Decimal(10)
    )

    html = client_for(ada).get(f"/c/{chat.id}/").content.decode()

    line = re.search(r'data-slot="usage"[^>]*>([^<]*)</span>', html.split(f'id="m-{answer.id}"')[1])
    # 1200 * $2.5/M + 340 * $10/M = $0.0064
    assert line.group(1) == "1200 prompt + 340 answer tokens · 3.4 s · $0.0064"
    totals = re.search(r'id="conversation-usage">([^<]*)<', html).group(1)
    assert totals == "This chat: 1 answer, 1200 prompt + 340 answer tokens · $0.0064"
    assert 'data-prices="{&quot;gpt-x&quot;: [&quot;2.5000&quot;, &quot;10.0000&quot;]}"' in html


def test_the_usage_page_shows_the_users_totals_per_model(ada, grace, client_for):
    chat = make.conversation(ada)
    _answer(chat, "gpt-x", 100, 10)
    _answer(chat, "gpt-x", 200, 20)
    _answer(chat, "small", 7, 3)
    _answer(make.conversation(grace), "grace-only-model", 9999, 9999)
    ModelPrice.objects.create(model="gpt-x", input_per_million=1000, output_per_million=1000)

    html = client_for(ada).get("/account/usage/").content.decode()

    cell = r"<td[^>]*>[^<]*(?:<span[^>]*>[^<]*</span>)?</td>"
    rows = re.findall(rf'<tr><th scope="row">([^<]*)</th>((?:{cell})+)</tr>', html)
    cells = {name: re.findall(r"<td[^>]*>([^<]*)", rest) for name, rest in rows}
    assert cells == {
        "gpt-x": ["2", "300", "30", "$0.3300"],
        "small": ["1", "7", "3", "no price"],
        "Total": ["3", "307", "33", "$0.3300"],
    }
    assert "grace-only-model" not in html and "9999" not in html
    assert "rounded to a hundredth of a cent" in html


def test_the_usage_page_period_is_chosen_and_checked(ada, client_for):
    client = client_for(ada)
    chat = make.conversation(ada)
    old = _answer(chat, "gpt-x", 100, 10)
    Message.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(days=60))

    assert "No answers in the last 30 days." in client.get("/account/usage/").content.decode()
    assert "gpt-x" in client.get("/account/usage/?days=90").content.decode()
    bad = client.get("/account/usage/?days=12")
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()


def test_the_usage_page_costs_the_same_queries_for_few_and_many_conversations(ada, client_for):
    client = client_for(ada)
    _answer(make.conversation(ada), "m", 1, 1)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/account/usage/").status_code == 200
    for index in range(60):
        _answer(make.conversation(ada, f"chat {index}"), f"m{index % 4}", index, index)
    with CaptureQueriesContext(connection) as many:
        assert client.get("/account/usage/").status_code == 200

    assert len(few) == len(many) <= 8


def test_the_done_frame_carries_the_time_to_answer(ada):
    chat = make.conversation(ada)
    answer = _answer(chat, "gpt-x", 1, 2, seconds=1.5)
    answer.refresh_from_db()

    frame = frames.message_done_from_row(answer, html="")

    assert frame["duration_ms"] == 1500
    answer.completed_at = None
    assert frames.message_done_from_row(answer, html="")["duration_ms"] is None
