from html.parser import HTMLParser

import pytest

from conversations import rendering
from conversations.models import Message
from conversations.rendering import (
    _CLEANER,
    DEFERRED_NOTE,
    RENDER_MAX_CHARS,
    RENDER_VERSION,
    TOO_LONG_NOTE,
    VIEW_RENDER_BUDGET_CHARS,
    messages_html_for_view,
    render_markdown,
)


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """The elements of an HTML fragment as a browser's parser would see them: tag and
    attributes (with character references decoded, as they are before a URL is followed)."""
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

        handle_startendtag = handle_starttag

    collector = Collector()
    collector.feed(html)
    collector.close()
    return found


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
    # One paragraph of text: the source's tags are characters in it, not elements.
    assert _elements(html) == [("p", {})]
    assert "&lt;" in html


# What a link with a dangerous URL becomes: its text, with no href to follow.
_HREFLESS_LINK = '<a rel="noopener noreferrer nofollow">x</a>'


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ('<p>a<img src=x onerror="alert(1)">b</p>', "<p>ab</p>"),
        ('<a href="&#106;avascript:alert(1)">x</a>', _HREFLESS_LINK),
        ('<a href="jav&#x09;ascript:alert(1)">x</a>', _HREFLESS_LINK),
        ('<a href="data:text/html,hi">x</a>', _HREFLESS_LINK),
        ('<svg onload="alert(1)"><circle r="5"></circle></svg>after', "after"),
        ("<svg><script>alert(1)</script></svg>after", "after"),
        ("<style>p { color: red }</style>after", "after"),
        ('<p style="color: red" onclick="x()">y</p>', "<p>y</p>"),
        ('<iframe src="https://example.com"></iframe>after', "after"),
        ('<form action="/logout"><button>go</button></form>', "go"),
    ],
)
def test_the_cleaner_strips_markup_that_the_parser_never_makes(dirty, clean):
    """nh3 is the second line of defence: whatever reached it, only the allow-list leaves."""
    assert _CLEANER.clean(dirty) == clean


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
    cleaned = _CLEANER.clean('<span class="k sidebar">x</span><p class="hidden">y</p>')
    assert cleaned == '<span class="k">x</span><p>y</p>'


# --- Bounded rendering --------------------------------------------------------------------------


def test_markdown_too_long_to_render_quickly_is_escaped_preformatted_text_with_a_note():
    text = "**not bold** <script>x</script> " * (RENDER_MAX_CHARS // 20)

    html = render_markdown(text)

    assert html.startswith(f"<p><em>{TOO_LONG_NOTE}</em></p>")
    assert "<strong>" not in html and "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<pre>**not bold**" in html


def test_many_unmatched_brackets_are_shown_as_plain_text():
    html = render_markdown(("[" * 10 + "x ") * 500)

    assert TOO_LONG_NOTE in html
    # Well-formed links do not count against the limit.
    assert "<a href" in render_markdown("[a](https://example.com) " * 3000)


def test_one_view_renders_at_most_its_budget_and_stores_what_it_rendered(monkeypatch):
    rendered: list[int] = []
    markdown_to_html = rendering._markdown_to_html

    def counting(text: str) -> str:
        rendered.append(len(text))
        return markdown_to_html(text)

    monkeypatch.setattr(rendering, "_markdown_to_html", counting)
    messages = [
        Message(content=f"**{index}** " + "x" * 60_000, status="complete") for index in range(5)
    ]

    html_by_id, stored = messages_html_for_view(messages)

    assert sum(rendered) <= VIEW_RENDER_BUDGET_CHARS
    assert len(stored) == len(rendered) == 3
    assert all(message.content_html_version == RENDER_VERSION for message in stored)
    deferred = [html for html in html_by_id.values() if DEFERRED_NOTE in html]
    assert len(deferred) == 2
    # The next view uses the stored copies and renders the two left.
    rendered.clear()
    _, stored = messages_html_for_view(messages)
    assert len(rendered) == len(stored) == 2
