"""The one error type of the chat engine: a machine code plus a short, user-safe detail.

The consumer turns it into an `error` frame and the no-JavaScript form into a form error; the
codes are listed in docs/protocol.md.
"""


class ChatError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def error_detail_for_user(*, code: str, detail: str) -> str:
    """An answer's error as its user sees it (frames, pages, exports): a fixed sentence for
    anything a provider reported, the engine's own words otherwise."""
    from providers.errors import error_sentence

    return error_sentence(code) or detail
