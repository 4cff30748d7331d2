"""Answers in a real browser: which model a retry uses, and the titles the sidebar shows."""

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from tests.conversations import page_factories as make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def send(page, text: str) -> None:
    box = page.locator("#id_content")
    box.fill(text)
    box.press("Enter")


@pytest.fixture
def broken_and_working(fake_upstream, transactional_db):
    """Two providers: the default one refuses connections, the other answers."""
    make.provider_config(name="broken", is_default=True, timeout=5, sort_order=0)
    make.provider_config(name="works", api_base=fake_upstream.url + "/v1", timeout=10, sort_order=1)
    fake_upstream.behave(reply="Answered by the working provider.")


@pytest.mark.parametrize("action", ["Retry", "Regenerate answer"])
def test_retry_and_regenerate_use_the_model_the_picker_shows(
    open_page, user, broken_and_working, action
):
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    send(page, "Hello?")
    answer = page.locator(".message--assistant").last
    expect(answer).to_have_attribute("data-status", "error")

    # At once, before the picker's own autosave had a chance to run.
    page.locator("select[name=target]").select_option("works:fake-model")
    answer.get_by_role("button", name=action, exact=True).click()

    answer = page.locator(".message--assistant").last
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator("[data-slot=content]")).to_have_text("Answered by the working provider.")
    expect(answer.locator("[data-slot=meta]")).to_have_text("fake-model")
    assert Message.objects.filter(role="assistant", status="complete").get().provider == "works"


def test_a_failed_answer_offers_another_model_and_picking_one_retries_with_it(
    open_page, user, broken_and_working
):
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    send(page, "Hello?")
    answer = page.locator(".message--assistant").last
    expect(answer).to_have_attribute("data-status", "error")
    # The provider's own words (its host, its port) stay out of the page.
    error = answer.locator("[data-slot=error-box]")
    expect(error.locator("[data-slot=error]")).to_have_text("Could not connect to the provider.")
    assert "127.0.0.1" not in page.content() and ":9" not in error.inner_text()

    error.get_by_role("button", name="Try another model").click()
    picker = page.locator("select[name=target]")
    expect(picker).to_be_focused()
    expect(page.locator(".model-picker")).to_have_class(re.compile("is-choosing"))
    assert Message.objects.filter(role="assistant").count() == 1
    picker.select_option("works:fake-model")

    answer = page.locator(".message--assistant").last
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator("[data-slot=content]")).to_have_text("Answered by the working provider.")
    expect(page.locator(".message--assistant")).to_have_count(1)
    retried = Message.objects.filter(role="assistant", status="complete").get()
    assert (retried.provider, retried.model) == ("works", "fake-model")
    # The failed answer stays as the other version of this one.
    assert Message.objects.filter(role="assistant", status="error").count() == 1
    expect(page.locator(".model-picker")).not_to_have_class(re.compile("is-choosing"))


def test_try_another_model_is_offered_only_when_there_is_one(open_page, user, fake_upstream):
    make.provider_config(name="only", is_default=True, allowed_models=["fake-model"])
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    send(page, "Hello?")
    error = page.locator(".message--assistant").last.locator("[data-slot=error-box]")
    expect(error).to_be_visible()
    expect(error.get_by_role("button", name="Retry")).to_be_visible()
    expect(error.get_by_role("button", name="Try another model")).to_be_hidden()


@pytest.mark.parametrize("outcome", ["error", "interrupted"])
def test_the_sidebar_shows_the_new_title_when_the_first_answer_fails(
    open_page, user, fake_upstream, provider, outcome
):
    if outcome == "error":
        fake_upstream.behave(status=500)
    else:
        # The upstream hangs up mid-answer.
        fake_upstream.behave(reply="Half an answer " * 20, drop_after=2)
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    send(page, "# Tides\n\nHow do **tides** work?")
    expect(page.locator(".message--assistant").last).to_have_attribute(
        "data-status", re.compile("error|interrupted")
    )

    title = "Tides How do tides work?"
    expect(page.locator(".conversation-item.is-current .conversation-link")).to_have_text(title)
    expect(page.locator("#conversation-title")).to_have_text(title)
    expect(page).to_have_title(f"{title} · Chat")
