"""The pages around the chat in a real browser: history search, export, sidebar, themes, small
screens, copying, and the site without JavaScript."""

import json
import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation
from tests.conversations import page_factories as make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RICH_ANSWER = """Here is a small **Python** helper:

```python
def greet(name: str) -> str:
    # Friendly, and typed.
    return f"Hello, {name}!"
```

- It takes a `name`
- It returns a greeting

| Input | Output |
|:------|-------:|
| Ada   | Hello, Ada! |
"""


def _rich_conversation(owner):
    chat = make.conversation(owner, "Python greeting helper")
    make.chain(
        chat,
        ["How do I write a greeting function in Python?", RICH_ANSWER, "And in one line?",
         "Use a lambda: `greet = lambda name: f'Hello, {name}!'`"],
        provider="fake", model="fake-model",
    )  # fmt: skip
    for index in range(6):
        make.conversation(owner, f"Earlier chat {index}")
    # The rich one on top of the sidebar.
    Conversation.objects.filter(pk=chat.pk).update(title=chat.title)
    chat.save(update_fields=["updated_at"])
    return chat


def test_search_history_and_open_a_hit_at_its_message(open_page, user):
    chat = make.conversation(user, "Travel notes")
    rows = make.chain(chat, [f"filler message {index}" for index in range(120)])
    make.message(chat, "unrelated", parent=rows[-1])
    target = rows[5]
    target.content = "We saw a quokka on Rottnest Island."
    target.save(update_fields=["content"])
    page = open_page(user)
    page.goto("/history/")

    page.get_by_label("Search your conversations").fill("quokka")
    page.keyboard.press("Enter")

    hit = page.locator(".hit-link")
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text("quokka")
    hit.click()
    expect(page).to_have_url(re.compile(rf"/c/{chat.id}/\?m={target.id}#m-{target.id}$"))
    message = page.locator(f"#m-{target.id}")
    expect(message).to_be_in_viewport()
    expect(message).to_contain_text("quokka")


def test_search_shows_text_not_markdown_and_pages_without_javascript(
    playwright_browser, chat_server, user
):
    from django.test import Client

    chat = make.conversation(user, "Identifiers")
    make.chain(chat, [f"step {index} calls fn_12" for index in range(55)])
    make.chain(chat, ["fn_1296 is another one, and so is 1296"])
    make.chain(
        chat, ["# Notes\n\n```python\nfn_12(**options)\n```\n\n| call | **fn_12** |\n|--|--|\n"]
    )
    context = playwright_browser.new_context(base_url=chat_server.url, java_script_enabled=False)
    client = Client()
    client.force_login(user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": chat_server.url}]
    )
    page = context.new_page()
    try:
        page.goto("/history/")
        page.get_by_label("Search your conversations").fill("fn_12")
        page.get_by_role("button", name="Search").click()

        expect(page.locator(".results-count")).to_have_text("50+ results, newest first")
        snippets = page.locator(".hit-snippet")
        expect(snippets).to_have_count(50)
        expect(snippets.first).to_have_text("Notes fn_12(**options) call fn_12")
        expect(snippets.first.locator("mark")).to_have_text(["fn_12", "fn_12"])
        assert "1296" not in page.locator(".hits").inner_text()

        page.get_by_role("link", name="More results").click()
        expect(page.locator(".results-count")).to_have_text("More results, older")
        expect(snippets).to_have_count(6)
        expect(snippets.last).to_have_text("step 0 calls fn_12")
        expect(page.get_by_role("link", name="More results")).to_have_count(0)

        page.get_by_role("link", name="Newest results").click()
        expect(snippets).to_have_count(50)
        expect(snippets.first).to_have_text("Notes fn_12(**options) call fn_12")
    finally:
        context.close()


def test_older_messages_load_on_scroll_and_the_reading_position_stays(open_page, user):
    chat = make.conversation(user, "Long talk")
    rows = make.chain(chat, [f"message number {index}" for index in range(120)])
    page = open_page(user)
    page.goto(f"/c/{chat.id}/")
    messages = page.locator("#message-list .message")
    expect(messages).to_have_count(50)
    expect(page.locator(f"#m-{rows[-1].id}")).to_be_in_viewport()

    page.locator("#messages").evaluate("element => { element.scrollTop = 0; }")
    expect(messages).to_have_count(100)
    # What was on screen is still on screen: the older page went in above it.
    expect(page.locator(f"#m-{rows[70].id}")).to_be_in_viewport()
    page.locator("#messages").evaluate("element => { element.scrollTop = 0; }")
    expect(messages).to_have_count(120)
    expect(page.locator("[data-older]")).to_have_count(0)
    assert messages.first.get_attribute("id") == f"m-{rows[0].id}"


def test_export_downloads_markdown_and_json(open_page, user):
    chat = _rich_conversation(user)
    page = open_page(user)
    page.goto(f"/c/{chat.id}/")

    page.get_by_label("Conversation actions").click()
    with page.expect_download() as markdown:
        page.get_by_text("Export as Markdown").click()
    page.get_by_label("Conversation actions").click()
    with page.expect_download() as exported:
        page.get_by_text("Export as JSON").click()

    assert markdown.value.suggested_filename.endswith(".md")
    text = open(markdown.value.path(), encoding="utf-8").read()
    assert text.startswith("# Python greeting helper")
    assert "How do I write a greeting function in Python?" in text and "```python" in text
    document = json.loads(open(exported.value.path(), encoding="utf-8").read())
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"] * 2


def test_sidebar_loads_more_on_scroll_renames_in_place_and_deletes_after_confirming(
    open_page, user
):
    chats = [make.conversation(user, f"chat {index:03}") for index in range(70)]
    page = open_page(user)
    page.goto("/")
    items = page.locator(".conversation-item")
    expect(items).to_have_count(50)

    page.locator(".conversation-more a").scroll_into_view_if_needed()
    expect(items).to_have_count(70)
    expect(page.locator(".conversation-group")).to_have_count(1)  # "Today", not repeated

    newest = page.locator(f'.conversation-item[data-id="{chats[-1].id}"]')
    newest.hover()
    newest.locator("summary").click()
    newest.get_by_text("Rename").click()
    page.locator(".rename-input").fill("Renamed in place")
    page.keyboard.press("Enter")
    expect(newest.locator(".conversation-link")).to_have_text("Renamed in place")
    page.wait_for_function("() => !document.querySelector('.rename-input')")
    assert Conversation.objects.get(pk=chats[-1].pk).title == "Renamed in place"

    second = page.locator(f'.conversation-item[data-id="{chats[-2].id}"]')
    second.hover()
    second.locator("summary").click()
    second.get_by_text("Delete").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("chat 068")
    dialog.get_by_role("button", name="Cancel").click()
    assert Conversation.objects.filter(pk=chats[-2].pk).exists()
    second.hover()
    second.locator("summary").click()
    second.get_by_text("Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash-item")).to_contain_text("Deleted “chat 068”.")
    assert not Conversation.objects.filter(pk=chats[-2].pk).exists()


def test_a_rename_in_place_that_fails_says_why_and_keeps_the_title(open_page, user):
    gone = make.conversation(user, "Deleted in another tab")
    page = open_page(user)
    page.goto("/")
    item = page.locator(f'.conversation-item[data-id="{gone.id}"]')
    expect(item).to_be_visible()
    gone.delete()

    item.hover()
    item.locator("summary").click()
    item.get_by_text("Rename").click()
    page.locator(".rename-input").fill("A new name")
    page.keyboard.press("Enter")

    expect(page.locator(".flash-error[role=alert]")).to_contain_text("no longer exists")
    expect(item.locator(".conversation-link")).to_have_text("Deleted in another tab")


def test_screenshots_light_and_dark_follow_the_system_theme(open_page, user, provider, results_dir):
    chat = _rich_conversation(user)
    backgrounds = {}
    for scheme in ("light", "dark"):
        page = open_page(user, color_scheme=scheme)
        page.goto(f"/c/{chat.id}/")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        expect(page.locator(".code-copy")).to_have_count(1)
        page.screenshot(path=str(results_dir / f"chat-{scheme}.png"))
        backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert backgrounds["light"] == "rgb(255, 255, 255)"
    assert backgrounds["dark"] != backgrounds["light"]


# Real model names run long; nothing on a page may push it sideways because of one.
MODEL_50 = "accounts/fireworks/models/llama-v3p1-405b-instruct"
MODEL_200 = ("accounts/fireworks/models/" + "llama_v3p1_405b_instruct_" * 8)[:200]


def sideways_overflow(page, selectors: list[str]) -> dict[str, tuple[int, int]]:
    """The elements (of `selectors`, and the document) whose content is wider than they are,
    with their scroll and client widths: each of them would scroll sideways."""
    widths = page.evaluate(
        """(selectors) => ["html", ...selectors].map((selector) => {
            const element = document.querySelector(selector);
            return [selector, element.scrollWidth, element.clientWidth];
        })""",
        selectors,
    )
    return {name: (scroll, client) for name, scroll, client in widths if scroll > client}


def test_small_screen_of_360px_has_no_sideways_scroll_and_a_sidebar_on_demand(
    open_page, user, provider, results_dir
):
    chat = _rich_conversation(user)
    long_named = make.conversation(user, "Long model name")
    make.chain(long_named, ["Which model are you?", "A long-named one."], model=MODEL_200)
    page = open_page(user, viewport={"width": 360, "height": 740})
    page.goto(f"/c/{long_named.id}/")
    expect(page.locator(".message-meta")).to_have_text(MODEL_200)
    assert sideways_overflow(page, ["#messages", ".composer-wrap"]) == {}
    page.goto(f"/c/{chat.id}/")

    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    assert sideways_overflow(page, ["#messages", ".composer-wrap"]) == {}
    expect(page.locator("#id_content")).to_be_in_viewport()
    page.screenshot(path=str(results_dir / "chat-360px.png"))
    page.get_by_label("Show conversations").click()
    expect(page.locator("#sidebar")).to_be_in_viewport()
    # Slid fully in (the screenshot should not catch it mid-way).
    page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().left >= 0"
    )
    expect(page.locator(".conversation-item.is-current")).to_be_visible()
    page.screenshot(path=str(results_dir / "chat-360px-sidebar.png"))


def test_history_at_360px_has_no_sideways_scroll_with_long_model_names(
    open_page, user, results_dir
):
    chat = make.conversation(user, "A conversation with quite a long title about llamas")
    make.chain(chat, ["Tell me about llamas", "Llamas are camelids."], model=MODEL_50)
    page = open_page(user, viewport={"width": 360, "height": 740})
    page.goto("/history/?q=llamas")

    expect(page.locator(".hit-meta", has_text=MODEL_50)).to_have_count(1)
    assert sideways_overflow(page, [".page", ".hits"]) == {}
    # The date stays readable: the model's name is what gives way.
    expect(page.locator(".hit-when time").last).to_be_in_viewport(ratio=1)
    page.screenshot(path=str(results_dir / "history-360px.png"))


def test_the_focused_composer_has_the_accent_focus_ring_of_other_fields(open_page, user, provider):
    page = open_page(user)
    page.goto("/")
    accent = page.evaluate("""() => {
        const probe = document.createElement("span");
        probe.style.color = "var(--accent)";
        document.body.append(probe);
        const color = getComputedStyle(probe).color;
        probe.remove();
        return color;
    }""")
    box = page.locator(".composer-box")

    page.locator("#id_content").focus()

    expect(box).to_have_css("border-top-color", accent)
    expect(box).to_have_css("outline-style", "solid")
    expect(box).to_have_css("outline-width", "2px")
    page.locator("#id_content").blur()
    expect(box).to_have_css("outline-style", "none")


def test_copy_buttons_copy_the_answer_and_the_code(open_page, user, playwright_browser):
    chat = _rich_conversation(user)
    page = open_page(user)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"/c/{chat.id}/")
    rich = page.locator(".message--assistant").first

    rich.locator(".code-copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == (
        'def greet(name: str) -> str:\n    # Friendly, and typed.\n    return f"Hello, {name}!"\n'
    )
    rich.hover()
    rich.get_by_label("Copy message").click()
    assert page.evaluate("navigator.clipboard.readText()") == RICH_ANSWER


def test_without_javascript_the_chat_reads_and_sends_with_a_form(
    playwright_browser, chat_server, user, provider, fake_upstream
):
    from django.test import Client

    fake_upstream.behave(reply="Plain **HTML** works.")
    context = playwright_browser.new_context(base_url=chat_server.url, java_script_enabled=False)
    client = Client()
    client.force_login(user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": chat_server.url}]
    )
    page = context.new_page()
    try:
        page.goto("/")
        expect(page.locator("html")).to_have_class("no-js")
        page.fill("#id_content", "Does this work without scripts?")
        page.get_by_label("Send message").click()

        expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]{36}/#m-[0-9a-f-]{36}$"))
        answer = page.locator(".message--assistant")
        expect(answer.locator("strong")).to_have_text("HTML")
        expect(page.locator(".message--user")).to_contain_text("Does this work without scripts?")
        expect(page.locator("[data-action=copy]").first).to_be_hidden()

        page.fill("#id_content", "And a follow-up?")
        page.get_by_label("Send message").click()
        expect(page.locator(".message--user")).to_have_count(2)
    finally:
        context.close()
