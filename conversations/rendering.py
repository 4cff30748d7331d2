"""Markdown to safe HTML for finished messages.

Model output is untrusted: it is parsed by markdown-it-py with raw HTML disabled, code fences are
highlighted by Pygments into CSS classes (the CSP forbids inline styles), and the result goes
through nh3 with an explicit allow-list, so even a parser bug cannot smuggle markup through.
"""

import html
import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

from conversations.markdown_rules import use_chat_rules

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "pre": {"data-lang"},
    # Only ever "0", set by markdown_rules (raw HTML is off): scrolling regions take the focus.
    "table": {"tabindex"},
    "div": {"tabindex"},
    "span": {"tabindex"},
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
_ALIGN_CLASSES = {"align-left", "align-center", "align-right"}
# Classes are allowed per tag here, not in ALLOWED_ATTRIBUTES (nh3 wants one or the other).
ALLOWED_CLASSES = {
    # Pygments' short token classes ("k", "nf", "s2", ...): the only classes code spans carry.
    "span": {cls for cls in STANDARD_TYPES.values() if cls} | {"math-inline", "math-display"},
    "div": {"math-display"},
    "li": {"task"},
    "th": _ALIGN_CLASSES,
    "td": _ALIGN_CLASSES,
}
# Longest fence info string we keep as a language label; longer ones are junk or an attack.
_MAX_LANG = 32
_LANG_RE = re.compile(rf"^[\w+#.-]{{1,{_MAX_LANG}}}$")
_ALIGN_RE = re.compile(r"^text-align:(left|center|right)$")

_FORMATTER = HtmlFormatter(nowrap=True)
_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=ALLOWED_URL_SCHEMES,
    allowed_classes=ALLOWED_CLASSES,
    clean_content_tags={"script", "style"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def _fence(self, tokens, idx, options, env) -> str:
    """A fenced or indented code block: Pygments spans inside <pre data-lang><code>."""
    token = tokens[idx]
    lang = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    if not _LANG_RE.match(lang):
        lang = ""
    body = html.escape(token.content)
    if lang:
        try:
            lexer = get_lexer_by_name(lang)
        except ClassNotFound:
            pass
        else:
            body = highlight(token.content, lexer, _FORMATTER)
    label = f' data-lang="{html.escape(lang)}"' if lang else ""
    return f"<pre{label}><code>{body}</code></pre>\n"


def _image(self, tokens, idx, options, env) -> str:
    # Remote images would let a model make the browser fetch any URL (and the CSP blocks them);
    # an image becomes a plain link to it, labelled with its alt text.
    token = tokens[idx]
    src = html.escape(str(token.attrs.get("src", "")))
    alt = html.escape(self.renderInlineAsText(token.children or [], options, env)) or src
    return f'<a href="{src}">{alt}</a>'


def _table_alignment_to_classes(state) -> None:
    # markdown-it aligns table cells with style="text-align:..."; the CSP blocks inline styles,
    # so the alignment travels as a class that our stylesheet knows.
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style"):
            match = _ALIGN_RE.match(str(token.attrs.pop("style")))
            if match:
                token.attrs["class"] = f"align-{match.group(1)}"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # "js-default": CommonMark plus tables and strikethrough, raw HTML off; math, task lists and
    # bare URLs from markdown_rules.
    parser = MarkdownIt("js-default")
    use_chat_rules(parser)
    parser.add_render_rule("fence", _fence)
    parser.add_render_rule("code_block", _fence)
    parser.add_render_rule("image", _image)
    parser.core.ruler.push("table_alignment_classes", _table_alignment_to_classes)
    return parser


# Measured with markdown-it-py (docs/reliability.md): ordinary Markdown renders at 1-2.5 ms per
# 1,000 characters, so a message longer than this (chat accepts 100 kB from a user; imports and
# answers may be longer) would take more than about a quarter of a second and is shown as
# escaped, preformatted text with a note instead.
RENDER_MAX_CHARS = 100_000
# Unmatched `[` cost time quadratic in their number within a paragraph (50,000 of them in 60 kB:
# 3.4 s): past this many more `[` than `](`, a message is shown as plain text too.
RENDER_MAX_UNMATCHED_BRACKETS = 2_000
# The most Markdown one page view renders, in characters (about half a second). Messages past it
# that have no stored HTML are shown as plain text this time; a later view renders them.
VIEW_RENDER_BUDGET_CHARS = 200_000
TOO_LONG_NOTE = "Shown as plain text: this message is too long to format quickly."
DEFERRED_NOTE = "Shown as plain text for now: it will be formatted the next time you open this."


def too_costly_to_render(text: str) -> bool:
    return (
        len(text) > RENDER_MAX_CHARS
        or text.count("[") - text.count("](") > RENDER_MAX_UNMATCHED_BRACKETS
    )


def plain_text_html(text: str, *, note: str) -> str:
    """The text as it is, escaped and preformatted, under a one-line note saying why."""
    return f"<p><em>{note}</em></p>\n<pre>{html.escape(text)}</pre>\n"


def _markdown_to_html(text: str) -> str:
    return _CLEANER.clean(_parser().render(text))


def render_markdown(text: str) -> str:
    """Safe HTML for a message's Markdown; the `html` of `message.done` and of the pages."""
    if not text:
        return ""
    if too_costly_to_render(text):
        return plain_text_html(text, note=TOO_LONG_NOTE)
    return _markdown_to_html(text)


# Bump when the rendering changes (allowed tags, highlighting, ...): HTML stored with an older
# version is rendered again instead of being shown.
RENDER_VERSION = 2


def _stored_html(message) -> str | None:
    if message.content_html_version == RENDER_VERSION and message.content_html is not None:
        return message.content_html
    return None


def message_html(message) -> str:
    """A finished message's HTML: the copy saved when its answer ended, when it was made by this
    rendering, else rendered now (imported, interrupted and older messages). Rendering a long
    answer with code costs tens of milliseconds; a page of fifty should not pay it every view."""
    stored = _stored_html(message)
    return render_markdown(message.content) if stored is None else stored


def messages_html_for_view(
    messages: list, *, budget: int = VIEW_RENDER_BUDGET_CHARS
) -> tuple[dict, list]:
    """The HTML of one view's finished messages, by message id, rendering at most `budget`
    characters of Markdown: stored copies as they are, others rendered while the budget lasts,
    the rest as plain text for now. Also returns the messages rendered here, with their new
    `content_html` set, for the caller to store (so the next view does not pay again)."""
    html_by_id = {}
    rendered = []
    for message in messages:
        stored = _stored_html(message)
        if stored is not None:
            html_by_id[message.pk] = stored
            continue
        costly = too_costly_to_render(message.content)
        if not costly and len(message.content) > budget:
            html_by_id[message.pk] = plain_text_html(message.content, note=DEFERRED_NOTE)
            continue
        if not costly:
            budget -= len(message.content)
        message.content_html = render_markdown(message.content)
        message.content_html_version = RENDER_VERSION
        html_by_id[message.pk] = message.content_html
        rendered.append(message)
    return html_by_id, rendered
