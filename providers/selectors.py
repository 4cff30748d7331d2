"""Reads of provider configuration (sync; async code calls them through chatsite.db)."""

from functools import cache
from typing import Any

from providers.errors import ProviderError, ProviderNotFoundError
from providers.models import FallbackChain, ProviderConfig
from providers.registry import get_provider


def provider_target_get(*, name: str | None) -> ProviderConfig | FallbackChain:
    """The enabled config or chain called `name`; with no name, the default config (or else the
    first enabled one)."""
    if name:
        config = ProviderConfig.objects.filter(name=name, enabled=True).first()
        if config is not None:
            return config
        chain = FallbackChain.objects.filter(name=name, enabled=True).first()
        if chain is not None:
            return chain
        raise ProviderNotFoundError(f"No enabled provider called {name!r}.")
    sql, params = _default_config_query()
    config = next(iter(ProviderConfig.objects.raw(sql, params)), None)
    if config is None:
        raise ProviderNotFoundError("No provider is configured yet.")
    return config


@cache
def _default_config_query() -> tuple[str, tuple[Any, ...]]:
    """The default config's query (the default if enabled, else the first enabled one), compiled
    once: every new conversation's `chat.send` asks it, and the ORM took 0.6 ms of the 0.85 ms
    it cost compiling the same SQL again (time on the database threads, holding the GIL the
    event loop streams with). Only the SQL is kept, never a result."""
    enabled = ProviderConfig.objects.filter(enabled=True)
    return enabled.order_by("-is_default", "sort_order", "name")[:1].query.sql_with_params()


def provider_config_models(*, config: ProviderConfig) -> list[str]:
    """The models users may pick for `config`: its allowed list, else its default model."""
    if config.allowed_models:
        return [str(model) for model in config.allowed_models]
    default = provider_config_default_model(config=config)
    return [default] if default else []


def provider_config_default_model(*, config: ProviderConfig) -> str:
    if config.default_model:
        return config.default_model
    if config.allowed_models:
        return str(config.allowed_models[0])
    try:
        return getattr(get_provider(config.provider_class), "default_model", None) or ""
    except ProviderError:
        return ""


def fallback_chain_members(*, chain: FallbackChain) -> list[ProviderConfig]:
    """The chain's enabled configs, in order."""
    return [
        link.config
        for link in chain.links.select_related("config").order_by("position", "pk")
        if link.config.enabled
    ]


def provider_target_accepts_images(*, target: ProviderConfig | FallbackChain) -> bool:
    """Whether images may go to `target`: a config with `vision` whose class supports it; a
    chain only when every enabled member does (any of them may end up answering)."""
    configs = (
        [target] if isinstance(target, ProviderConfig) else fallback_chain_members(chain=target)
    )
    if not configs:
        return False
    for config in configs:
        try:
            supports = get_provider(config.provider_class).supports_vision
        except ProviderError:
            return False
        if not (config.vision and supports):
            return False
    return True


def provider_targets_for_picker() -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    configs = list(ProviderConfig.objects.filter(enabled=True).order_by("sort_order", "name"))
    has_default = any(config.is_default for config in configs)
    for index, config in enumerate(configs):
        targets.append(
            {
                "name": config.name,
                "kind": "config",
                "label": config.name,
                "models": provider_config_models(config=config),
                "default_model": provider_config_default_model(config=config),
                # Mirrors provider_target_get(name=None): the flagged one, else the first.
                "is_default": config.is_default or (not has_default and index == 0),
            }
        )
    for chain in FallbackChain.objects.filter(enabled=True).order_by("name"):
        targets.append(
            {
                "name": chain.name,
                # Each member answers with its own model, so a chain offers no model choice.
                "kind": "chain",
                "label": f"{chain.name} (fallback)",
                "models": [],
                "default_model": "",
                "is_default": False,
            }
        )
    return targets
