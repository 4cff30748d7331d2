import asyncio
import io
import sys

import pytest
from django.core.management import call_command

from providers import registry
from providers.models import ProviderConfig
from providers.selectors import provider_target_get
from providers.services import stream_chat
from providers.types import FinishReason, ProviderInfo, Usage

PACKAGED_MODEL = "gemma-3-270m-q4_k_m.gguf"
HELLO = [{"role": "user", "content": "Hello"}]


def run() -> str:
    out = io.StringIO()
    call_command("ensure_local_provider", stdout=out, stderr=out)
    return out.getvalue()


async def first_chat(config: ProviderConfig) -> list:
    return [chunk async for chunk in stream_chat(config, HELLO, max_tokens=4)]


@pytest.mark.local_model
@pytest.mark.django_db
def test_first_start_prepares_the_model_and_makes_local_the_default_that_answers(
    settings, tmp_path
):
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the `local` dependency group)")
    settings.VAR_DIR = tmp_path
    model_file = tmp_path / "models" / PACKAGED_MODEL
    try:
        out = run()
        assert "Preparing the packaged local model" in out
        assert "Created the provider Local" in out
        assert model_file.stat().st_size > 200_000_000
        config = provider_target_get(name=None)
        assert (config.name, config.provider_class, config.default_model, config.is_default) == (
            "Local",
            "LlamaCpp",
            PACKAGED_MODEL,
            True,
        )
        chunks = asyncio.run(first_chat(config))
        assert chunks[0] == ProviderInfo(provider="Local", model=PACKAGED_MODEL)
        assert isinstance(chunks[-2], Usage) and isinstance(chunks[-1], FinishReason)
        # A later start finds the file ready and the provider configured: nothing to say or do.
        assert run() == ""
        assert ProviderConfig.objects.count() == 1
    finally:
        # Not left for pytest's kept temporary folders: it is a quarter of a gigabyte.
        model_file.unlink(missing_ok=True)


@pytest.mark.django_db
def test_any_existing_provider_config_is_left_alone(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    ProviderConfig.objects.create(name="work", provider_class="OpenAICompatible", enabled=False)
    assert run() == ""
    assert list(ProviderConfig.objects.values_list("name", flat=True)) == ["work"]
    assert not (tmp_path / "models").exists()


@pytest.fixture
def llama_cpp_not_installed(monkeypatch):
    """This process as it would be without the `local` dependency group: llama_cpp cannot be
    imported, and the registry has to look for provider modules afresh."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.delitem(sys.modules, "providers.llamacpp", raising=False)
    monkeypatch.setattr(registry, "_providers", {})
    monkeypatch.setattr(registry, "_loaded", False)


@pytest.mark.django_db
def test_without_llama_cpp_it_says_how_to_add_a_provider(llama_cpp_not_installed):
    out = run()
    assert out.count("\n") == 1
    assert out.startswith("No provider is configured: add one at /admin/")
    assert not ProviderConfig.objects.exists()
