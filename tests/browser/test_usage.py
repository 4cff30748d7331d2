"""Usage in a real browser: an answer's tokens, time and cost appear when it ends (from the
live `message.done`) and stay the same after a reload; the chat's and the account's totals."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from conversations.usage.models import ModelPrice
from tests.browser.test_chat import FRAME_LOG, last_answer, send, wait_until_handled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LINE = re.compile(r"^(\d+) prompt \+ (\d+) answer tokens · (\d+\.\d) s · (\$\d+\.\d{4})$")


def test_an_answer_shows_its_usage_live_and_after_a_reload(
    open_page, user, provider, fake_upstream
):
    ModelPrice.objects.create(
        model="fake-model", input_per_million=Decimal(1000), output_per_million=Decimal(3000)
    )
    fake_upstream.behave(reply="Four words of answer.")
    page = open_page(user)
    page.add_init_script(FRAME_LOG)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    send(page, "Count my tokens please")
    wait_until_handled(page, "message.done")
    answer = last_answer(page)
    usage = answer.locator("[data-slot=usage]")
    expect(usage).to_have_text(LINE)

    row = Message.objects.get(role="assistant")
    prompt, completion, _, cost = LINE.match(usage.inner_text()).groups()
    assert (int(prompt), int(completion)) == (row.prompt_tokens, row.completion_tokens) == (4, 4)
    # 4 * $1000/M + 4 * $3000/M = $0.016
    assert cost == "$0.0160"

    page.reload()
    reloaded = last_answer(page).locator("[data-slot=usage]")
    expect(reloaded).to_have_text(LINE)
    assert LINE.match(reloaded.inner_text()).group(1, 2, 4) == (prompt, completion, cost)

    page.locator("#conversation-menu > summary").click()
    expect(page.locator("#conversation-usage")).to_have_text(
        "This chat: 1 answer, 4 prompt + 4 answer tokens · $0.0160"
    )

    page.goto("/account/usage/")
    total = page.locator("#usage-table tfoot tr")
    expect(total).to_have_text(re.compile(r"Total\s*1\s*4\s*4\s*\$0\.0160"))
