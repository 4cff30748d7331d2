import pytest

from conversations.rendering import render_markdown


def test_markdown_becomes_html():
    html = render_markdown("# Title\n\nSome **bold** and *italic* text with `code`.")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "<code>code</code>" in html


def test_empty_text_renders_nothing():
    assert render_markdown("") == ""


def test_fenced_code_is_highlighted_with_classes_and_labelled():
    html = render_markdown('```python\nprint("<hi>")\n```')
    assert '<pre data-lang="python"><code>' in html
    assert '<span class="nb">print</span>' in html
    assert "&lt;hi&gt;" in html and "<hi>" not in html
    assert "style=" not in html


def test_unknown_or_hostile_fence_language_is_plain_code():
    assert '<pre data-lang="nolang"><code>z\n</code></pre>' in render_markdown("```nolang\nz\n```")
    html = render_markdown('```"><script>alert(1)</script>\nx\n```')
    assert "<script" not in html and "data-lang" not in html
    assert "<pre><code>x\n</code></pre>" in html


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "<iframe src=https://example.com></iframe>",
        "<svg onload=alert(1)>",
    ],
)
def test_raw_html_is_shown_as_text_never_as_markup(source):
    html = render_markdown(source)
    assert "<script" not in html and "<img" not in html and "<iframe" not in html
    assert "<svg" not in html and "onerror=" not in html.replace("onerror=alert", "")
    assert "&lt;" in html


@pytest.mark.parametrize(
    "source", ["[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](data:text/html,hi)"]
)
def test_dangerous_link_schemes_are_not_links(source):
    assert "<a " not in render_markdown(source)


def test_safe_links_get_rel_nofollow():
    html = render_markdown("[site](https://example.com) and <https://example.org>")
    assert 'href="https://example.com"' in html and 'href="https://example.org"' in html
    assert html.count('rel="noopener noreferrer nofollow"') == 2


def test_images_become_links_and_never_load():
    html = render_markdown("![a chart](https://example.com/c.png)")
    assert "<img" not in html
    assert '<a href="https://example.com/c.png"' in html and ">a chart</a>" in html


def test_table_alignment_uses_classes_not_inline_styles():
    html = render_markdown("|a|b|\n|-:|:-:|\n|1|2|")
    assert '<th class="align-right">a</th>' in html
    assert '<td class="align-center">2</td>' in html
    assert "style" not in html


def test_classes_outside_the_allow_list_are_dropped():
    # markdown-it never emits these, but nh3 is the last line of defence.
    from conversations.rendering import _CLEANER

    cleaned = _CLEANER.clean('<span class="k sidebar">x</span><p class="hidden">y</p>')
    assert cleaned == '<span class="k">x</span><p>y</p>'
