"""Math (KaTeX), task lists, bare links and wide tables in answers, live and after a reload."""

import pytest
from playwright.sync_api import expect

from tests.browser.test_streaming import FILLER, SLOW, send, streaming_answer_has

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MATH = (
    "Energy: $E=mc^2$ and \\(a^2+b^2=c^2\\), for $5 only.\n\n"
    "$$\n\\int_0^1 x\\,dx = \\frac{1}{2}\n$$\n\n"
    "\\[\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = \\frac{\\pi^2}{6}\\]\n\n"
    "- [x] typeset\n- [ ] tested\n\nDocs: https://example.com/katex_guide.\n\n"
)


def test_math_typesets_while_streaming_and_stays_after_reload(
    open_page, user, provider, fake_upstream
):
    fake_upstream.behave(reply=MATH + FILLER, chunk_delay=SLOW)
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    send(page, "Some maths please")

    streaming_answer_has(page, ".katex-display")
    answer = page.locator(".message--assistant").last
    expect(answer).to_have_attribute("data-status", "complete")
    for _ in range(2):
        content = page.locator(".message--assistant [data-slot=content]").last
        expect(content.locator(".katex")).to_have_count(4)
        expect(content.locator(".katex-display")).to_have_count(2)
        # KaTeX's MathML copy is what screen readers read.
        expect(content.locator("math").first).to_have_attribute(
            "xmlns", "http://www.w3.org/1998/Math/MathML"
        )
        shown = content.inner_text()
        assert (
            "$E" not in shown and "\\(" not in shown and "$$" not in shown and "\\frac" not in shown
        )
        assert "for $5 only" in shown
        expect(content.locator("li.task")).to_have_text(["☑ typeset", "☐ tested"])
        expect(
            content.get_by_role("link", name="https://example.com/katex_guide")
        ).to_have_attribute("href", "https://example.com/katex_guide")
        page.reload()
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")


def test_bad_tex_shows_its_source(open_page, user, provider, fake_upstream):
    fake_upstream.behave(reply="Broken: $\\frac{1}{$ then $x^2$ fine.")
    page = open_page(user)
    page.goto("/")
    send(page, "Broken maths")
    content = page.locator(".message--assistant [data-slot=content]").last
    expect(content.locator(".katex")).to_have_count(1)
    expect(content.locator(".math-error")).to_have_text("\\frac{1}{")


def test_a_wide_table_scrolls_sideways_instead_of_breaking_words(
    open_page, user, provider, fake_upstream
):
    header = " | ".join(f"Contextwindow{index}" for index in range(8))
    reply = f"| {header} |\n|{'---|' * 8}\n| {' | '.join(['Modelname'] * 8)} |\n"
    fake_upstream.behave(reply=reply)
    page = open_page(user, viewport={"width": 390, "height": 844})
    page.goto("/")
    send(page, "A wide table")
    table = page.locator(".message--assistant [data-slot=content] table").last
    expect(table).to_be_visible()
    sizes = table.evaluate(
        """(table) => ({
            scroll: table.scrollWidth, client: table.clientWidth,
            cells: [...table.querySelectorAll('th, td')].map((cell) => {
                const range = document.createRange();
                range.selectNodeContents(cell);
                return range.getClientRects().length;
            }),
        })"""
    )
    assert sizes["scroll"] > sizes["client"]  # it scrolls ...
    assert set(sizes["cells"]) == {1}  # ... and every cell's text is on one line
