"""Titles from the first message: its first words, as a reader sees them (no Markdown)."""

import pytest

from conversations.titles import title_from_text


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("hello", "hello"),
        ("  spaced\n\nout  words ", "spaced out words"),
        (
            "one two three four five six seven eight nine",
            "one two three four five six seven eight…",
        ),
        ("x" * 200, "x" * 79 + "…"),
        ("   ", "Untitled"),
        ("# Heading one\n\nSome **bold** and `code`", "Heading one Some bold and code"),
        ("- [a link](https://example.com)\n- *two*", "a link two"),
        ("```python\nprint('hi')\n```", "print('hi')"),
        ("| Input | Output |\n|---|---|\n| Ada | Hi |", "Input Output Ada Hi"),
        ("> quoted ~~old~~ text", "quoted old text"),
        ("<b>raw html</b> stays text", "<b>raw html</b> stays text"),
    ],
)
def test_title_from_text(text, title):
    assert title_from_text(text) == title


def test_a_long_message_is_not_parsed_whole():
    # Ten thousand headings would take seconds to parse; only the start is read.
    assert title_from_text("# Start here\n\n" + "# heading\n\n" * 10_000) == (
        "Start here heading heading heading heading heading heading…"
    )
