"""Math, task lists and bare URLs in answers, as the server renders them (KaTeX typesets the
math elements in the browser; see tests/browser/test_math.py)."""

import pytest

from conversations.rendering import render_markdown


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$E=mc^2$", '<span class="math-inline">E=mc^2</span>'),
        ("\\(a^2+b^2=c^2\\)", '<span class="math-inline">a^2+b^2=c^2</span>'),
        ("see \\[x_1\\] here", '<span class="math-display" tabindex="0">x_1</span>'),
        ("$$\\int_0^1 x\\,dx$$", '<div class="math-display" tabindex="0">\\int_0^1 x\\,dx</div>'),
        (
            "$$\na_1 * b_2 * c\n\n- d\n$$",
            '<div class="math-display" tabindex="0">a_1 * b_2 * c\n\n- d</div>',
        ),
        ("\\[\n\\frac{1}{2}\n\\]", '<div class="math-display" tabindex="0">\\frac{1}{2}</div>'),
    ],
)
def test_math_keeps_its_tex_source_untouched_by_markdown(source, expected):
    assert expected in render_markdown(source)


@pytest.mark.parametrize(
    "source", ["It costs $5 and $10.", "\\$x\\$", "$ spaced $", "$$ not closed", "`$x$`"]
)
def test_dollars_that_are_not_math_stay_text(source):
    assert "math-" not in render_markdown(source)


def test_tex_in_math_is_text_not_markup():
    html = render_markdown("$<img src=x onerror=alert(1)>$")
    assert '<span class="math-inline">&lt;img src=x onerror=alert(1)&gt;</span>' in html


def test_task_lists_show_boxes_instead_of_brackets():
    html = render_markdown("- [ ] write\n- [x] **test**\n- plain [ ] item")
    assert '<li class="task">☐ write</li>' in html
    assert '<li class="task">☑ <strong>test</strong></li>' in html
    assert "<li>plain [ ] item</li>" in html


def test_bare_urls_become_links_but_not_in_code_or_links_or_attributes():
    html = render_markdown(
        "See https://example.com/a_b?c=1. Or (http://example.org/x) [named](https://e.com) "
        "`https://code.example` <a href=https://attr.example>"
    )
    assert '<a href="https://example.com/a_b?c=1" rel="noopener noreferrer nofollow">' in html
    assert '<a href="http://example.org/x" rel="noopener noreferrer nofollow">' in html
    assert html.count("<a ") == 3
    assert "<code>https://code.example</code>" in html


def test_bare_javascript_urls_stay_text():
    assert "<a " not in render_markdown("javascript:alert(1) and data:text/html,x")


def test_tables_and_display_math_take_the_focus_so_keyboards_can_scroll_them():
    html = render_markdown("| a |\n|---|\n| b |\n\n$$x$$\n\n$y$")
    assert '<table tabindex="0">' in html
    assert '<div class="math-display" tabindex="0">x</div>' in html
    assert '<span class="math-inline">y</span>' in html
