"""Prompt presets in a real browser: the composer's `/` list (filter, keyboard, listbox
semantics) fills the message box and the chat's settings, which the chat then uses."""

import json

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation
from conversations.presets.models import PromptPreset
from tests.browser.conftest import STEP_TIMEOUT_MS
from tests.browser.test_accessibility import axe_source, serious_violations  # noqa: F401
from tests.browser.test_chat import FRAME_LOG, last_answer, wait_until_handled
from tests.conversations import page_factories as make
from tests.live_server import session_cookie

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def presets(user, django_user_model):
    admin = django_user_model.objects.create_user(username="root", is_staff=True)
    grace = django_user_model.objects.create_user(username="grace")
    PromptPreset.objects.create(
        owner=user, title="Code review", text="Review this code:",
        system_prompt="You review code.", target="fake:fake-model-2", temperature=0.3,
    )  # fmt: skip
    PromptPreset.objects.create(owner=user, title="Translate to French", text="In French:")
    PromptPreset.objects.create(owner=admin, title="House style", text="Our style:", published=True)
    PromptPreset.objects.create(owner=grace, title="Grace's secret", text="Hidden")


def expect_titles(page, titles: list[str]) -> None:
    """Waits for the list to show these options (the presets load on the first `/`)."""
    expect(page.locator("#preset-picker [role=option] .preset-option-title")).to_have_text(titles)


def test_slash_lists_presets_and_the_keyboard_picks_one_that_fills_the_settings(
    open_page, user, provider, presets, fake_upstream
):
    chat = make.conversation(user, "Reviews", provider_config=provider, model="fake-model")
    page = open_page(user)
    page.add_init_script(FRAME_LOG)
    page.goto(f"/c/{chat.id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    box = page.locator("#id_content")
    picker = page.get_by_role("listbox", name="Prompt presets")

    box.press("/")
    expect(picker).to_be_visible()
    expect_titles(page, ["Code review", "House style (published)", "Translate to French"])
    expect(box).to_have_attribute("aria-controls", "preset-picker")
    first = picker.get_by_role("option").first
    expect(first).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", first.get_attribute("id"))

    box.press("ArrowDown")
    box.press("ArrowDown")
    expect(picker.get_by_role("option", name="Translate to French")).to_have_attribute(
        "aria-selected", "true"
    )
    box.press("ArrowDown")  # wraps around
    expect(first).to_have_attribute("aria-selected", "true")
    box.press("Escape")
    expect(picker).to_be_hidden()
    expect(box).to_have_value("/")

    box.press_sequentially("rev")
    expect(picker).to_be_visible()
    expect_titles(page, ["Code review"])
    box.press("Enter")

    expect(picker).to_be_hidden()
    expect(box).to_have_value("Review this code:")
    expect(box).to_be_focused()
    expect(page.locator("#id_target")).to_have_value("fake:fake-model-2")
    expect(page.locator("#id_temperature")).to_have_value("0.3")
    expect(page.locator("#id_system")).to_have_value("You review code.")
    # Saved on the conversation like a change by hand.
    page.locator("#settings > summary").click()
    expect(page.locator("#settings-status")).to_have_text("Saved")
    chat.refresh_from_db()
    assert (chat.model, chat.system_prompt, chat.options.get("temperature")) == (
        "fake-model-2", "You review code.", 0.3
    )  # fmt: skip

    # Enter now sends, with the preset's settings.
    box.press("End")
    box.press_sequentially(" x = 1")
    box.press("Enter")
    wait_until_handled(page, "message.done")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    body = json.loads(fake_upstream.wait_done().body)
    assert (body["model"], body["temperature"]) == ("fake-model-2", 0.3)
    assert body["messages"][0] == {"role": "system", "content": "You review code."}
    assert body["messages"][-1]["content"] == "Review this code: x = 1"


def test_the_filter_matches_text_too_and_says_when_nothing_matches(
    open_page, user, provider, presets
):
    page = open_page(user)
    page.goto("/")
    box = page.locator("#id_content")

    box.press_sequentially("/french")
    expect_titles(page, ["Translate to French"])
    box.press_sequentially("zzz")
    picker = page.locator("#preset-picker")
    expect(picker).to_contain_text("No preset matches.")
    box.press("Backspace")
    box.press("Backspace")
    box.press("Backspace")
    # A click chooses too.
    picker.get_by_role("option", name="Translate to French").click()
    expect(box).to_have_value("In French:")
    # Another user's private preset is never offered.
    box.fill("")
    box.press_sequentially("/secret")
    expect(picker).to_contain_text("No preset matches.")
    assert Conversation.objects.count() == 0


def test_the_open_picker_and_the_presets_pages_pass_axe(
    open_page,
    user,
    provider,
    presets,
    axe_source,  # noqa: F811
):
    page = open_page(user)
    page.goto("/")
    page.locator("#id_content").press("/")
    expect(page.locator("#preset-picker [role=option]")).to_have_count(3)
    assert serious_violations(page, axe_source) == []


def test_presets_are_managed_on_their_page_without_javascript(
    playwright_browser, chat_server, user, provider
):
    context = playwright_browser.new_context(base_url=chat_server.url, java_script_enabled=False)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    name, _, value = session_cookie(user).partition("=")
    context.add_cookies([{"name": name, "value": value, "url": chat_server.url}])
    page = context.new_page()
    try:
        page.goto("/presets/")
        page.get_by_role("link", name="New preset").click()
        page.get_by_label("Title").fill("Explain")
        page.get_by_label("Prompt", exact=True).fill("Explain simply:")
        page.get_by_label("Model").select_option("fake:fake-model")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#preset-list")).to_contain_text("Explain")
        page.get_by_role("link", name="Edit “Explain”").click()
        page.get_by_label("Title").fill("Explain like I'm five")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#preset-list")).to_contain_text("Explain like I'm five")
        page.get_by_role("link", name="Delete “Explain like I'm five”").click()
        page.get_by_role("button", name="Delete").click()
        expect(page.locator("#presets-empty")).to_be_visible()
    finally:
        context.close()
    assert not PromptPreset.objects.exists()
