import pytest

from providers.errors import ProviderNotFoundError
from providers.models import FallbackChain, ProviderConfig
from providers.selectors import (
    provider_config_models,
    provider_target_get,
    provider_targets_for_picker,
)


def config(name, **fields):
    fields.setdefault("provider_class", "OpenAICompatible")
    return ProviderConfig.objects.create(name=name, **fields)


@pytest.mark.django_db
def test_target_by_name_finds_enabled_config_or_chain():
    c = config("one")
    chain = FallbackChain.objects.create(name="both")
    assert provider_target_get(name="one") == c
    assert provider_target_get(name="both") == chain


@pytest.mark.django_db
def test_disabled_or_unknown_name_raises_provider_not_found():
    config("off", enabled=False)
    FallbackChain.objects.create(name="off-chain", enabled=False)
    for name in ("off", "off-chain", "missing"):
        with pytest.raises(ProviderNotFoundError):
            provider_target_get(name=name)


@pytest.mark.django_db
def test_no_name_gives_the_default_config():
    config("a", sort_order=0)
    b = config("b", sort_order=5, is_default=True)
    assert provider_target_get(name=None) == b


@pytest.mark.django_db
def test_no_name_without_default_gives_first_enabled_by_sort_order():
    config("z-first", sort_order=-1, enabled=False)
    second = config("b", sort_order=1)
    config("c", sort_order=2)
    assert provider_target_get(name=None) == second


@pytest.mark.django_db
def test_no_name_and_nothing_configured_raises():
    with pytest.raises(ProviderNotFoundError):
        provider_target_get(name=None)


@pytest.mark.django_db
def test_models_are_the_allowed_list_or_the_default_model():
    assert provider_config_models(config=config("a", allowed_models=["m1", "m2"])) == ["m1", "m2"]
    assert provider_config_models(config=config("b", default_model="m3")) == ["m3"]
    assert provider_config_models(config=config("c")) == []


@pytest.mark.django_db
def test_picker_lists_enabled_configs_then_chains():
    config("a", default_model="fake-model", sort_order=2)
    config("b", allowed_models=["x", "y"], default_model="y", sort_order=1, is_default=True)
    config("off", enabled=False)
    FallbackChain.objects.create(name="safe")
    FallbackChain.objects.create(name="off-chain", enabled=False)
    assert provider_targets_for_picker() == [
        {
            "name": "b",
            "kind": "config",
            "label": "b",
            "models": ["x", "y"],
            "default_model": "y",
            "is_default": True,
        },
        {
            "name": "a",
            "kind": "config",
            "label": "a",
            "models": ["fake-model"],
            "default_model": "fake-model",
            "is_default": False,
        },
        {
            "name": "safe",
            "kind": "chain",
            "label": "safe (fallback)",
            "models": [],
            "default_model": "",
            "is_default": False,
        },
    ]


@pytest.mark.django_db
def test_the_default_is_one_query_read_afresh_each_time(django_assert_num_queries):
    """The default's query is compiled once per process and run every time: a new default, a
    disabled one and changed fields show at once, typed as the ORM types them."""
    config("a", sort_order=0)
    chosen = config("b", sort_order=5, is_default=True, allowed_models=["m1"], options={"k": 1})
    with django_assert_num_queries(1):
        found = provider_target_get(name=None)
    assert found == chosen
    assert (found.allowed_models, found.options, found.is_default) == (["m1"], {"k": 1}, True)
    ProviderConfig.objects.filter(pk=chosen.pk).update(enabled=False)
    assert provider_target_get(name=None).name == "a"
    ProviderConfig.objects.filter(pk=chosen.pk).update(enabled=True, default_model="m9")
    assert provider_target_get(name=None).default_model == "m9"
