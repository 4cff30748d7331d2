"""Model output is untrusted: an answer full of markup must run nothing, live or reloaded."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = (
    "Look: <script>window.pwned = 'script'; alert('script')</script>\n\n"
    "<img src=x onerror=\"window.pwned = 'img'; alert('img')\">\n\n"
    "[click me](javascript:window.pwned='link';alert('link'))\n\n"
    "<a href=\"javascript:alert('raw')\">raw link</a> <svg onload=\"alert('svg')\"></svg>\n\n"
    "<iframe src=\"javascript:alert('frame')\"></iframe> **still bold**"
)

# Anything that could run code or load something: elements inside the messages' text (our own
# icons are SVG, so elements are looked for there), handlers and javascript: URLs anywhere.
DANGEROUS = """() => {
    const found = [];
    const tags = 'script, img, svg, iframe, object, embed, style, a[href]';
    for (const body of document.querySelectorAll('[data-slot=content], [data-slot=text]')) {
        for (const el of body.querySelectorAll(tags)) found.push(el.outerHTML);
    }
    for (const el of document.querySelectorAll('*')) {
        for (const attr of el.attributes) {
            if (attr.name.startsWith('on') || /^\\s*javascript:/i.test(attr.value)) {
                found.push(el.tagName + ' ' + attr.name);
            }
        }
    }
    return found;
}"""


def test_hostile_answer_executes_nothing_while_streaming_or_after(
    open_page, user, provider, fake_upstream, dialogs
):
    fake_upstream.behave(reply=HOSTILE, chunk_delay=0.01)
    page = open_page(user)
    page.goto("/")
    box = page.locator("#id_content")
    box.fill("Show me some HTML")
    box.press("Enter")

    answer = page.locator(".message--assistant").last
    expect(answer).to_have_attribute("data-status", "complete")
    content = answer.locator("[data-slot=content]")
    # The markup is shown as text; the Markdown around it still renders.
    expect(content).to_contain_text("<script>window.pwned")
    expect(content).to_contain_text("[click me](javascript:")
    expect(content.locator("strong")).to_have_text("still bold")
    content.get_by_text("raw link").click()
    assert page.evaluate(DANGEROUS) == []

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect(page.locator(".message--assistant [data-slot=content]")).to_contain_text("<img src=x")
    assert page.evaluate(DANGEROUS) == []

    assert page.evaluate("window.pwned") is None
    assert dialogs == []
