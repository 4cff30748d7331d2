"""Answers render as Markdown while they stream, and hostile Markdown stays harmless meanwhile."""

import pytest
from playwright.sync_api import expect

from tests.browser.test_safety import DANGEROUS, HOSTILE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Slow enough that several renderings of the text so far happen before the answer ends.
SLOW = 0.05
FILLER = " ".join(f"word{index}" for index in range(40))


def send(page, text: str) -> None:
    box = page.locator("#id_content")
    box.fill(text)
    box.press("Enter")


def streaming_answer_has(page, selector: str) -> None:
    """Until the answer being written shows an element matching `selector` (while streaming)."""
    page.wait_for_function(
        """(selector) => {
            const answer = [...document.querySelectorAll('.message--assistant')].pop();
            return answer && answer.dataset.status === 'streaming'
                && answer.querySelector('[data-slot=content] ' + selector) !== null;
        }""",
        arg=selector,
    )


def test_markdown_renders_while_the_answer_streams(open_page, user, provider, fake_upstream):
    reply = (
        "## Plan\n\nThe **capital** of France:\n\n| City | Country |\n|---|---|\n"
        "| Paris | France |\n\n```python\nprint('hi')\n```\n\n" + FILLER
    )
    fake_upstream.behave(reply=reply, chunk_delay=SLOW)
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    send(page, "Tell me about Paris")

    streaming_answer_has(page, "pre code")
    answer = page.locator(".message--assistant").last
    content = answer.locator("[data-slot=content]")
    expect(content.locator("h2")).to_have_text("Plan")
    expect(content.locator("strong")).to_have_text("capital")
    expect(content.locator("table td").first).to_have_text("Paris")
    # The syntax markers are gone from what is shown, not merely styled.
    assert "**" not in content.text_content() and "|---|" not in content.text_content()

    expect(answer).to_have_attribute("data-status", "complete")
    expect(content).to_contain_text("word39")
    expect(content.locator("strong")).to_have_text("capital")


# Records, on every change to the page, anything DANGEROUS finds, and whether the answer's
# Markdown was ever seen rendered before its end (so the corpus did go through the rendering).
WATCH = (
    """() => {
    const check = """
    + DANGEROUS
    + """;
    window.seenDanger = [];
    window.renderedMidStream = false;
    new MutationObserver(() => {
        window.seenDanger.push(...check());
        const answer = [...document.querySelectorAll('.message--assistant')].pop();
        if (answer && answer.dataset.status === 'streaming'
            && answer.querySelector('[data-slot=content] strong')) window.renderedMidStream = true;
    }).observe(document.body, {subtree: true, childList: true, attributes: true,
                               characterData: true});
}"""
)


def test_hostile_markdown_streamed_slowly_never_reaches_the_live_page(
    open_page, user, provider, fake_upstream, dialogs
):
    # Bold first and last, so renderings happen all the way through the hostile part.
    reply = "**Start** " + HOSTILE + "\n\n" + HOSTILE.replace("\n\n", " ") + " **end** " + FILLER
    fake_upstream.behave(reply=reply, chunk_delay=SLOW)
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    page.evaluate(WATCH)
    send(page, "Show me some HTML")

    answer = page.locator(".message--assistant").last
    # The reply is streamed slowly on purpose (seconds): wait for its end, however busy the
    # machine, not for Playwright's default five seconds.
    expect(answer).to_have_attribute("data-status", "complete", timeout=60_000)
    assert page.evaluate("window.renderedMidStream") is True
    assert page.evaluate("window.seenDanger") == []
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
