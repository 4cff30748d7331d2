"""Usage totals: per answer, per conversation, per user and period, with prices."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Message
from conversations.usage.models import ModelPrice
from conversations.usage.selectors import answer_usage, usage_for_conversation, usage_for_user
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db


def _answer(chat, model, prompt, completion, *, seconds=2.0, created=None):
    message = make.message(
        chat, "answer", role="assistant", model=model, prompt_tokens=prompt,
        completion_tokens=completion,
    )  # fmt: skip
    created = created or message.created_at
    Message.objects.filter(pk=message.pk).update(
        created_at=created, completed_at=created + timedelta(seconds=seconds)
    )
    message.refresh_from_db()
    return message


def test_an_answer_shows_tokens_duration_and_cost_when_priced(ada):
    chat = make.conversation(ada)
    message = _answer(chat, "gpt-x", 1000, 500, seconds=1.25)
    price = ModelPrice.objects.create(
        model="gpt-x", input_per_million=Decimal("0.15"), output_per_million=Decimal("0.60")
    )

    usage = answer_usage(message=message, prices={"gpt-x": price})
    unpriced = answer_usage(message=message, prices={})

    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 500)
    assert (usage.duration_text, usage.cost_text) == ("1.2 s", "$0.0005")
    assert unpriced.cost_text == ""
    # A question, or an answer still being written, has no usage line.
    assert answer_usage(message=make.message(chat, "q"), prices={}) is None


def test_conversation_totals_add_every_answer_per_model(ada):
    chat = make.conversation(ada)
    _answer(chat, "gpt-x", 1000, 100)
    _answer(chat, "gpt-x", 3000, 300)
    _answer(chat, "local", 50, 5)
    make.message(chat, "question")
    ModelPrice.objects.create(
        model="gpt-x", input_per_million=Decimal(1), output_per_million=Decimal(2)
    )

    totals = usage_for_conversation(conversation=chat)

    assert [(r.model, r.answers, r.prompt_tokens, r.completion_tokens) for r in totals.rows] == [
        ("gpt-x", 2, 4000, 400),
        ("local", 1, 50, 5),
    ]
    assert (totals.answers, totals.prompt_tokens, totals.completion_tokens) == (3, 4050, 405)
    # 4000 * $1/M + 400 * $2/M = $0.0048; "local" has no price.
    assert (totals.cost_text, totals.fully_priced) == ("$0.0048", False)


def test_a_users_usage_counts_only_their_answers_in_the_period(ada, grace):
    now = timezone.now()
    mine = make.conversation(ada)
    _answer(mine, "gpt-x", 10, 20)
    _answer(mine, "gpt-x", 999, 999, created=now - timedelta(days=40))
    _answer(make.conversation(grace), "gpt-x", 5000, 5000)

    recent = usage_for_user(user=ada, since=now - timedelta(days=30))
    longer = usage_for_user(user=ada, since=now - timedelta(days=90))

    assert [(r.model, r.prompt_tokens, r.completion_tokens) for r in recent.rows] == [
        ("gpt-x", 10, 20)
    ]
    assert longer.prompt_tokens == 1009
    assert usage_for_user(user=grace, since=now - timedelta(days=30)).prompt_tokens == 5000


def test_a_users_usage_costs_the_same_queries_for_few_and_many_answers(ada, grace):
    since = timezone.now() - timedelta(days=30)
    ModelPrice.objects.create(model="m0", input_per_million=1, output_per_million=1)
    chat = make.conversation(ada)
    _answer(chat, "m0", 1, 1)
    with CaptureQueriesContext(connection) as few:
        usage_for_user(user=ada, since=since)
    for index in range(30):
        other = make.conversation(ada)
        for model in range(5):
            _answer(other, f"m{model}", index, index)
    with CaptureQueriesContext(connection) as many:
        totals = usage_for_user(user=ada, since=since)

    assert len(few) == len(many) == 2
    assert totals.answers == 151 and len(totals.rows) == 5
