"""markdown-it-py rules for what chat answers use beyond CommonMark: math, task lists, bare URLs.

Written here because the plugins that do this (mdit-py-plugins, linkify-it-py) are not among
this project's dependencies, and each rule is short. Math is not typeset on the server: it
becomes an element holding the TeX source as text (`math-inline` or `math-display`), which the
page's script typesets with KaTeX; without the script the TeX stays readable.
"""

import html
import re

from markdown_it.token import Token

# Inline math: `\(...\)`, `\[...\]` and `$$...$$` (shown as a block), and `$...$` when the
# opening `$` is not followed and the closing one not preceded by a space, and no digit follows
# the closing one: so "$5 and $10" stays money.
_DOLLAR_INLINE = re.compile(r"\$(?=\S)((?:[^$\\\n]|\\.)+?)(?<=\S)\$(?!\d)")
_INLINE_PAIRS = (("\\(", "\\)", False), ("\\[", "\\]", True), ("$$", "$$", True))
# Block math: a line starting with `$$` or `\[`, up to a line ending with the matching closer.
_BLOCK_CLOSERS = {"$$": "$$", "\\[": "\\]"}
# Bare http(s) URLs, standing alone (after a space or "(", not inside something like an
# attribute), without trailing punctuation that more likely ends the sentence.
_BARE_URL = re.compile(r"(?<![^\s(])https?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]]")
_TASK = re.compile(r"^\[([ xX])\] ")


def _math_at(src: str, pos: int) -> tuple[str, int, bool] | None:
    """The TeX, the end and whether it is display math, for inline math starting at `pos`."""
    for opener, closer, display in _INLINE_PAIRS:
        if src.startswith(opener, pos):
            end = src.find(closer, pos + len(opener))
            if end <= pos + len(opener):
                return None
            return src[pos + len(opener) : end], end + len(closer), display
    match = _DOLLAR_INLINE.match(src, pos) if src.startswith("$", pos) else None
    return (match.group(1), match.end(), False) if match else None


def _inline_math(state, silent: bool) -> bool:
    found = _math_at(state.src, state.pos)
    if found is None:
        return False
    tex, after, display = found
    if not silent:
        token = state.push("math_inline", "span", 0)
        token.content = tex
        token.meta = {"display": display}
    state.pos = after
    return True


def _line(state, line: int) -> str:
    return state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]


def _block_math(state, start_line: int, end_line: int, silent: bool) -> bool:
    if state.sCount[start_line] - state.blkIndent >= 4:
        return False
    first = _line(state, start_line)
    opener = next((o for o in _BLOCK_CLOSERS if first.startswith(o)), None)
    if opener is None:
        return False
    closer = _BLOCK_CLOSERS[opener]
    rest = first[len(opener) :].rstrip()
    lines, line = [], start_line
    if rest.endswith(closer) and len(rest) >= len(closer):
        lines.append(rest[: -len(closer)])
    else:
        lines.append(rest)
        line += 1
        while line < end_line:
            text = _line(state, line).rstrip()
            if text.endswith(closer):
                lines.append(text[: -len(closer)])
                break
            lines.append(text)
            line += 1
        else:
            return False  # not closed (yet, while streaming): shown as written
    if silent:
        return True
    token = state.push("math_block", "div", 0)
    token.block = True
    token.content = "\n".join(lines).strip()
    token.map = [start_line, line + 1]
    state.line = line + 1
    return True


# A table or a display formula wider than the column scrolls sideways; keyboard users scroll it
# once it can take the focus (WCAG 2.1.1; axe's scrollable-region-focusable).
_FOCUSABLE = ' tabindex="0"'


def _render_math_inline(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    if token.meta.get("display"):
        return f'<span class="math-display"{_FOCUSABLE}>{html.escape(token.content)}</span>'
    return f'<span class="math-inline">{html.escape(token.content)}</span>'


def _render_math_block(self, tokens, idx, options, env) -> str:
    return f'<div class="math-display"{_FOCUSABLE}>{html.escape(tokens[idx].content)}</div>\n'


def _focusable_tables(state) -> None:
    for token in state.tokens:
        if token.type == "table_open":
            token.attrs["tabindex"] = "0"


def _task_lists(state) -> None:
    """`- [ ] todo` and `- [x] done`: a ballot box character instead of the brackets."""
    tokens = state.tokens
    for index, token in enumerate(tokens[:-2]):
        if token.type != "list_item_open" or tokens[index + 2].type != "inline":
            continue
        inline = tokens[index + 2]
        first = inline.children[0] if inline.children else None
        match = _TASK.match(first.content) if first is not None and first.type == "text" else None
        if match is None:
            continue
        box = "☐ " if match.group(1) == " " else "☑ "
        first.content = box + first.content[match.end() :]
        token.attrs["class"] = "task"


def _link_tokens(url: str) -> list[Token]:
    link_open = Token("link_open", "a", 1, attrs={"href": url})
    text = Token("text", "", 0, content=url)
    return [link_open, text, Token("link_close", "a", -1)]


def _linkify(state) -> None:
    """Bare http(s) URLs in text become links (not inside links or code)."""
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children, inside_link = [], 0
        for child in block.children:
            inside_link += child.type == "link_open"
            inside_link -= child.type == "link_close"
            if child.type != "text" or inside_link or "://" not in child.content:
                children.append(child)
                continue
            last = 0
            for match in _BARE_URL.finditer(child.content):
                if match.start() > last:
                    before = child.content[last : match.start()]
                    children.append(Token("text", "", 0, content=before))
                children.extend(_link_tokens(match.group(0)))
                last = match.end()
            if last < len(child.content):
                children.append(Token("text", "", 0, content=child.content[last:]))
        block.children = children


def use_chat_rules(parser) -> None:
    parser.inline.ruler.before("escape", "math_inline", _inline_math)
    parser.block.ruler.before(
        "fence", "math_block", _block_math, {"alt": ["paragraph", "reference", "blockquote"]}
    )
    parser.add_render_rule("math_inline", _render_math_inline)
    parser.add_render_rule("math_block", _render_math_block)
    parser.core.ruler.push("task_lists", _task_lists)
    parser.core.ruler.push("focusable_tables", _focusable_tables)
    parser.core.ruler.push("bare_urls", _linkify)
