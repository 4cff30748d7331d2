"""Titles made from a conversation's first message, as plain text.

A message is Markdown: its title is what a reader sees, so "# Heading **bold**" gives
"Heading bold", not the markup (which the sidebar, the page title and the Markdown export would
all show raw).
"""

from markdown_it import MarkdownIt

TITLE_WORDS = 8
TITLE_MAX_CHARS = 80
# The first words are all a title needs: a 100 kB message is not parsed whole for eight words.
_SOURCE_CHARS = 2_000
_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_TEXT_TOKENS = {"text", "code_inline"}
_BLOCK_TEXT_TOKENS = {"fence", "code_block"}


def markdown_plain_text(markdown: str) -> str:
    """The words of `markdown` without its markup, separated by single spaces."""
    parts: list[str] = []
    for token in _PARSER.parse(markdown[:_SOURCE_CHARS]):
        if token.type == "inline":
            parts.extend(
                child.content if child.type in _TEXT_TOKENS else " "
                for child in token.children or ()
                if child.type in _TEXT_TOKENS or child.type.endswith("break")
            )
        elif token.type in _BLOCK_TEXT_TOKENS:
            parts.append(token.content)
        parts.append(" ")
    return " ".join("".join(parts).split())


def title_from_text(text: str) -> str:
    """The first words of the first message: the title when no title provider is configured."""
    words = markdown_plain_text(text).split()
    title = " ".join(words[:TITLE_WORDS])
    if len(title) > TITLE_MAX_CHARS:
        title = title[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    elif len(words) > TITLE_WORDS:
        title += "…"
    return title or "Untitled"
