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

PACKAGED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
HELLO = [{"role": "user", "content": "Hello"}]


def run() -> str:
    out = io.StringIO()
    call_command("ensure_local_provider", stdout=out, stderr=out)
    return out.getvalue()


async def first_chat(config: ProviderConfig) -> list:
    return [chunk async for chunk in stream_chat(config, HELLO, max_tokens=4)]


@pytest.fixture
def local_model_installed():
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the `local` dependency group)")


@pytest.mark.local_model
@pytest.mark.django_db
def test_first_start_checks_the_model_and_makes_local_the_default_that_answers(
    local_model_installed,
):
    out = run()
    assert out.startswith("Created the provider Local, the default")
    assert "SmolLM2-135M-Instruct" in out
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
    # A later start checks the model again, finds it working: nothing to say or do.
    assert run() == ""
    assert list(ProviderConfig.objects.values_list("name", "enabled", "is_default")) == [
        ("Local", True, True)
    ]


@pytest.mark.local_model
@pytest.mark.django_db
def test_a_worker_that_crashes_on_first_start_leaves_no_local_default(
    local_model_installed, settings
):
    # A real death by SIGILL, as a llama.cpp build for the wrong CPU dies on its first token.
    settings.LOCAL_MODEL_WORKER_FAULT = "SIGILL"
    out = run()
    assert out.count("\n") == 1, out  # one paragraph
    assert out.startswith("The local model failed its start-up check:")
    assert "worker process died (SIGILL)" in out
    assert "The Local provider was not created" in out
    assert "`make clean && make run`" in out
    assert "LOCAL_NATIVE=1" in out
    assert not ProviderConfig.objects.exists()
    # Rebuilt (here: the fault removed), the next start creates Local.
    settings.LOCAL_MODEL_WORKER_FAULT = ""
    assert run().startswith("Created the provider Local")


@pytest.mark.local_model
@pytest.mark.django_db
def test_a_local_default_that_crashes_at_a_later_start_is_disabled(local_model_installed, settings):
    ProviderConfig.objects.create(
        name="Local", provider_class="LlamaCpp", default_model=PACKAGED_MODEL, is_default=True
    )
    other = ProviderConfig.objects.create(name="work", provider_class="OpenAICompatible")
    settings.LOCAL_MODEL_WORKER_FAULT = "SIGSEGV"
    out = run()
    assert "worker process died (SIGSEGV)" in out
    assert "The provider Local was disabled" in out
    local = ProviderConfig.objects.get(name="Local")
    assert (local.enabled, local.is_default) == (False, False)
    # Chats now go to the remaining provider, not to the broken one.
    assert provider_target_get(name=None) == other


@pytest.mark.local_model
@pytest.mark.django_db
def test_a_local_default_whose_file_is_not_a_model_is_reported_without_rebuild_advice(
    local_model_installed, tmp_path
):
    notes = tmp_path / "notes.gguf"
    notes.write_bytes(b"GGUF" + b"\0" * 64)
    ProviderConfig.objects.create(
        name="mine", provider_class="LlamaCpp", options={"model_path": str(notes)}, is_default=True
    )
    out = run()
    assert out.startswith("The local model failed its start-up check: The model file 'notes.gguf'")
    assert "could not be loaded" in out
    assert "The provider mine was disabled" in out
    assert "make clean" not in out  # the build is fine: only the file is wrong
    assert not ProviderConfig.objects.get(name="mine").enabled


@pytest.mark.django_db
def test_any_existing_provider_config_is_left_alone():
    ProviderConfig.objects.create(name="work", provider_class="OpenAICompatible", enabled=False)
    assert run() == ""
    assert list(ProviderConfig.objects.values_list("name", flat=True)) == ["work"]


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
