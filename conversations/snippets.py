"""Search snippets: a few lines of a message as a reader sees it, with the matched words marked.

Messages are Markdown, and the databases' own snippet functions (FTS5's snippet(), PostgreSQL's
ts_headline) cut the stored text, so a hit showed code fences, `**` and table pipes. Here the
text around the first match goes through the Markdown parser that makes titles
(titles.markdown_plain_text) and is cut and marked in Python, the same way for both databases.
Only a window of the message is parsed, so a page of 50 long messages stays cheap.
"""

import html
import re
import unicodedata
from functools import lru_cache

from conversations.titles import markdown_plain_text

# What the search indexes call a word (SQLite's unicode61 tokenizer; PostgreSQL's parser splits
# the same text into these or into longer tokens such as `file.py`, which hold them).
WORD_RE = re.compile(r"[^\W_]+")
# How much Markdown around the first match is parsed, and how much text is shown.
_SOURCE_BEFORE = 300
_SOURCE_CHARS = 900
_SHOWN_BEFORE = 60
_SHOWN_CHARS = 240


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    """`char` lowercased without its accents, still one character (so positions in the folded
    text are positions in the original)."""
    folded = "".join(
        c for c in unicodedata.normalize("NFD", char.lower()) if not unicodedata.combining(c)
    )
    return folded if len(folded) == 1 else char


def _fold(text: str) -> str:
    # Both indexes ignore case and SQLite's ignores accents: "cafe" finds "Café".
    if text.isascii():
        return text.lower()
    return "".join(map(_fold_char, text))


def terms_pattern(terms: list[str]) -> re.Pattern[str] | None:
    """A pattern for where any of `terms` (search_terms's output) occurs in folded text: each
    term's words in order with only separators between them (an identifier's own separators),
    none of them part of a longer word."""
    alternatives = []
    for term in terms:
        folded = _fold(term)
        words = WORD_RE.findall(folded)
        if " " not in folded and len(words) > 1:
            # An identifier (`fn_12`) matches only as written (search._written_sql).
            alternatives.append(re.escape(folded))
        elif words:
            alternatives.append(r"[\W_]+".join(re.escape(word) for word in words))
    if not alternatives:
        return None
    # Longest first, so a phrase wins over one of its own words.
    alternatives.sort(key=len, reverse=True)
    return re.compile(rf"(?<![^\W_])(?:{'|'.join(alternatives)})(?![^\W_])")


def _source_window(markdown: str, pattern: re.Pattern[str] | None) -> tuple[str, bool, bool]:
    """The part of `markdown` around its first match, from the start of a line where one is
    near; and whether text before it, and after it, was left out."""
    found = pattern.search(_fold(markdown)) if pattern else None
    start = 0
    if found is not None and found.start() > _SOURCE_BEFORE:
        start = found.start() - _SOURCE_BEFORE
        # Block syntax (fences, headings, tables) is read right only from a line's start.
        line_start = markdown.rfind("\n", 0, start) + 1
        if start - line_start < _SOURCE_BEFORE:
            start = line_start
    end = start + _SOURCE_CHARS
    return markdown[start:end], start > 0, end < len(markdown)


def _marked(text: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return html.escape(text)
    out, position = [], 0
    for found in pattern.finditer(_fold(text)):
        out.append(html.escape(text[position : found.start()]))
        out.append(f"<mark>{html.escape(text[found.start() : found.end()])}</mark>")
        position = found.end()
    out.append(html.escape(text[position:]))
    return "".join(out)


def snippet_html(*, markdown: str, terms: list[str]) -> str:
    """Escaped HTML: the plain text of `markdown` around the first match of `terms`, with <mark>
    around every match shown, and "…" where text is left out."""
    pattern = terms_pattern(terms)
    source, cut_before, cut_after = _source_window(markdown, pattern)
    text = markdown_plain_text(source)
    found = pattern.search(_fold(text)) if pattern else None
    start = 0
    if found is not None and found.start() > _SHOWN_BEFORE:
        start = text.find(" ", found.start() - _SHOWN_BEFORE, found.start()) + 1
        start = start or found.start() - _SHOWN_BEFORE
    end = len(text)
    if end - start > _SHOWN_CHARS:
        end = text.rfind(" ", start, start + _SHOWN_CHARS)
        if found is not None and end < found.end():
            end = max(found.end(), start + _SHOWN_CHARS)
    cut_after = cut_after or end < len(text)
    shown = text[start:end].strip()
    return (
        ("…" if cut_before or start > 0 else "")
        + _marked(shown, pattern)
        + ("…" if cut_after else "")
    )
