"""Taking a stored token out of text an upstream wrote, before anyone sees or stores it.

The one place that knows how: every path by which an upstream's words reach a user, a log or the
database goes through `secret_scrub` (or `error_scrub` for exceptions) first, and text is cut to
its display length only after that, never before, so a cut cannot leave the start of a token
where the exact-match rule no longer finds it.
"""

MASK = "…"
# A run this long of a token's characters is masked wherever it appears in the text: a prefix
# a cut left behind, a suffix, or a middle part an upstream quoted. Shorter runs are too likely
# to be ordinary text ("Bearer", "sk-") to mask without mangling messages.
MIN_SECRET_RUN = 8
# Longest error text kept (shown to admins, stored in `error_detail`), after scrubbing.
MAX_ERROR_TEXT = 300


def _secret_windows(secret: str) -> set[str]:
    last = len(secret) - MIN_SECRET_RUN
    return {secret[start : start + MIN_SECRET_RUN] for start in range(last + 1)}


def secret_scrub(*, text: str, secret: str | None) -> str:
    """`text` with the exact secret, and every run of MIN_SECRET_RUN or more of its consecutive
    characters, replaced by MASK. A secret shorter than that is only masked where it appears
    whole."""
    if not secret or not text:
        return text
    if len(secret) < MIN_SECRET_RUN:
        return text.replace(secret, MASK)
    windows = _secret_windows(secret)
    covered = [False] * len(text)
    for start in range(len(text) - MIN_SECRET_RUN + 1):
        if text[start : start + MIN_SECRET_RUN] in windows:
            covered[start : start + MIN_SECRET_RUN] = [True] * MIN_SECRET_RUN
    if not any(covered):
        return text
    parts: list[str] = []
    for index, character in enumerate(text):
        if not covered[index]:
            parts.append(character)
        elif index == 0 or not covered[index - 1]:
            parts.append(MASK)
    return "".join(parts)


def secret_mentioned(*, text: str, secret: str | None) -> bool:
    return bool(secret) and secret_scrub(text=text, secret=secret) != text


def exception_mentions_secret(*, exc: BaseException, secret: str | None) -> bool:
    """Whether `exc`, or any exception it was raised from, carries (part of) the secret: a
    traceback in a log would show them all."""
    if not secret:
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in (str(current), repr(current.args)):
            if secret_mentioned(text=text, secret=secret):
                return True
        current = current.__cause__ or current.__context__
    return False


def error_text_clean(*, text: str, secret: str | None) -> str:
    """An upstream's error text ready to keep: scrubbed first, then cut to MAX_ERROR_TEXT."""
    clean = secret_scrub(text=text, secret=secret)
    if len(clean) > MAX_ERROR_TEXT:
        clean = clean[: MAX_ERROR_TEXT - 1] + MASK
    return clean
