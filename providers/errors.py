"""Typed provider failures.

Callers catch `ProviderError` only: every failure a provider can meet (HTTP status, network,
malformed stream, timeout) arrives as one of these. `code` is a stable machine code the UI maps to
its own text; the message is short, safe to show to a user and never carries a token.
"""


class ProviderError(Exception):
    code = "provider_error"
    default_message = "The provider failed."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or self.default_message)
        if code is not None:
            # An instance attribute, so a subclass keeps its class-level default for others.
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ProviderNotFoundError(ProviderError):
    code = "provider_not_found"
    default_message = "No such provider."


class ModelNotFoundError(ProviderError):
    code = "model_not_found"
    default_message = "The model is not available."


class MissingAuthError(ProviderError):
    code = "missing_auth"
    default_message = "The provider needs a valid token."


class PaymentRequiredError(ProviderError):
    code = "payment_required"
    default_message = "The provider account needs payment."


class BadRequestError(ProviderError):
    code = "bad_request"
    default_message = "The provider rejected the request."


class RateLimitError(ProviderError):
    code = "rate_limited"
    default_message = "The provider is rate limiting; try again later."


class ResponseError(ProviderError):
    code = "upstream_error"
    default_message = "The provider returned an error."


class ResponseStatusError(ResponseError):
    code = "upstream_error"


class UpstreamUnavailableError(ResponseError):
    code = "upstream_unavailable"
    default_message = "Could not connect to the provider."


class UpstreamDroppedError(ResponseError):
    code = "upstream_dropped"
    default_message = "The provider closed the connection before the answer was complete."


class MalformedResponseError(ResponseError):
    code = "malformed_response"
    default_message = "The provider sent a response that could not be read."


class ProviderTimeoutError(ProviderError, TimeoutError):
    code = "timeout"
    default_message = "The provider did not answer in time."


# What a user is told for each code: fixed sentences, because an error's own message may quote
# the upstream (its words, its host and port). Admins see the message itself (admin, logs).
_USER_SENTENCES = {
    cls.code: cls.default_message
    for cls in (
        ProviderError,
        ProviderNotFoundError,
        ModelNotFoundError,
        MissingAuthError,
        PaymentRequiredError,
        BadRequestError,
        RateLimitError,
        ResponseError,
        UpstreamUnavailableError,
        UpstreamDroppedError,
        MalformedResponseError,
        ProviderTimeoutError,
    )
}


def error_sentence(code: str) -> str | None:
    """The user-safe sentence for a provider error code; None for codes whose message is always
    our own words (`local_model_stopped`) and for codes the provider layer does not raise."""
    return _USER_SENTENCES.get(code)
