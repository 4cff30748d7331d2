import pytest

from providers.base import AsyncGeneratorProvider
from providers.errors import ProviderNotFoundError
from providers.openai_compatible import OpenAICompatible
from providers.registry import all_providers, get_provider, provider_class_choices, register


def test_get_provider_finds_a_builtin_class_by_name():
    assert get_provider("OpenAICompatible") is OpenAICompatible


def test_unknown_name_raises_provider_not_found():
    with pytest.raises(ProviderNotFoundError) as caught:
        get_provider("NoSuchProvider")
    assert caught.value.code == "provider_not_found"


def test_all_providers_includes_the_seed_providers():
    names = {cls.__name__ for cls in all_providers()}
    assert {"OpenAICompatible", "Raycast", "Lockchat", "Aichat", "Ails"} <= names


def test_choices_offer_every_registered_class():
    assert ("OpenAICompatible", "OpenAI-compatible API") in provider_class_choices()


def test_two_different_classes_with_one_name_are_refused():
    class OpenAICompatible(AsyncGeneratorProvider):
        async def create_async_generator(cls, model, messages, stream=True, **kwargs):
            yield ""

    with pytest.raises(ValueError, match="OpenAICompatible"):
        register(OpenAICompatible)
