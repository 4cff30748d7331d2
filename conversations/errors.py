"""The one error type of the chat engine: a machine code plus a short, user-safe detail.

The consumer turns it into an `error` frame and the no-JavaScript form into a form error; the
codes are listed in docs/protocol.md.
"""


class ChatError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
