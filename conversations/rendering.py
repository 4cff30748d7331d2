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

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
    "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "pre": {"data-lang"},
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
_ALIGN_CLASSES = {"align-left", "align-center", "align-right"}
# Classes are allowed per tag here, not in ALLOWED_ATTRIBUTES (nh3 wants one or the other).
ALLOWED_CLASSES = {
    # Pygments' short token classes ("k", "nf", "s2", ...): the only classes code spans carry.
    "span": {cls for cls in STANDARD_TYPES.values() if cls},
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
    # "js-default": CommonMark plus tables and strikethrough, raw HTML off, no linkify.
    parser = MarkdownIt("js-default")
    parser.add_render_rule("fence", _fence)
    parser.add_render_rule("code_block", _fence)
    parser.add_render_rule("image", _image)
    parser.core.ruler.push("table_alignment_classes", _table_alignment_to_classes)
    return parser


def render_markdown(text: str) -> str:
    """Safe HTML for a message's Markdown; the `html` of `message.done` and of the pages."""
    if not text:
        return ""
    return _CLEANER.clean(_parser().render(text))


# Bump when the rendering changes (allowed tags, highlighting, ...): HTML stored with an older
# version is rendered again instead of being shown.
RENDER_VERSION = 1


def message_html(message) -> str:
    """A finished message's HTML: the copy saved when its answer ended, when it was made by this
    rendering, else rendered now (imported, interrupted and older messages). Rendering a long
    answer with code costs tens of milliseconds; a page of fifty should not pay it every view."""
    if message.content_html_version == RENDER_VERSION and message.content_html is not None:
        return message.content_html
    return render_markdown(message.content)
