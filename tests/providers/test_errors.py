import pytest

from providers import errors


@pytest.mark.parametrize(
    "error",
    [
        errors.ProviderNotFoundError,
        errors.ModelNotFoundError,
        errors.MissingAuthError,
        errors.PaymentRequiredError,
        errors.BadRequestError,
        errors.RateLimitError,
        errors.ResponseError,
        errors.ResponseStatusError,
        errors.ProviderTimeoutError,
    ],
)
def test_every_provider_failure_is_one_catchable_type_with_a_default_message(error):
    assert issubclass(error, errors.ProviderError)
    assert str(error()) == error.default_message


def test_status_errors_are_response_errors_and_timeouts_are_builtin_timeouts():
    assert issubclass(errors.ResponseStatusError, errors.ResponseError)
    assert issubclass(errors.ProviderTimeoutError, TimeoutError)
    with pytest.raises(TimeoutError):
        raise errors.ProviderTimeoutError()


def test_an_instance_code_does_not_change_the_class_default():
    assert errors.ResponseError(code="malformed_response").code == "malformed_response"
    assert errors.ResponseError().code == "upstream_error"
