"""The provider side: which configs may receive images, and the local model's text-only rule."""

import pytest

from providers.errors import BadRequestError
from providers.llamacpp import text_only
from providers.models import ProviderConfig
from providers.selectors import provider_target_accepts_images


def test_the_local_model_reads_text_parts_and_refuses_images():
    text = [{"role": "user", "content": [{"type": "text", "text": "<file>…</file>\n\nHi"}]}]
    assert text_only(text) == [{"role": "user", "content": "<file>…</file>\n\nHi"}]
    image = [{"role": "user", "content": [
        {"type": "text", "text": "Hi"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]  # fmt: skip
    with pytest.raises(BadRequestError) as caught:
        text_only(image)
    assert str(caught.value) == "The local model reads text only; it cannot see images."


@pytest.mark.django_db
def test_only_a_vision_config_of_a_class_that_supports_images_accepts_them():
    plain = ProviderConfig.objects.create(name="plain", provider_class="OpenAICompatible")
    vision = ProviderConfig.objects.create(
        name="vision", provider_class="OpenAICompatible", vision=True
    )
    local = ProviderConfig.objects.create(name="local", provider_class="LlamaCpp", vision=True)

    assert provider_target_accepts_images(target=vision)
    assert not provider_target_accepts_images(target=plain)
    assert not provider_target_accepts_images(target=local)
