"""Reads for the API (sync; async code calls them through chatsite.db)."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from conversations.api.keys import KEY_PREFIX, api_key_hash
from conversations.models import ApiCall, ApiKey
from providers.errors import ModelNotFoundError, ProviderError
from providers.models import FallbackChain, ProviderConfig
from providers.selectors import provider_config_models, provider_target_get

# The model name that means the chat's default provider, as a new chat would use it.
DEFAULT_MODEL = "default"
# Longest a key may be; anything longer is not one of ours and is not even hashed.
MAX_KEY_LENGTH = 200


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The live key `key` is, with its user; None for a wrong or revoked key or an inactive
    user."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_LENGTH:
        return None
    row = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=api_key_hash(key), revoked_at__isnull=True)
        .first()
    )
    if row is None or not row.user.is_active:
        return None
    return row


def api_key_list_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user).order_by("-created_at")


def api_call_stale_cutoff() -> datetime:
    """A `running` call not refreshed since this belongs to a process that died."""
    return timezone.now() - timedelta(seconds=settings.CHAT_STALE_STREAM_SECONDS)


def api_call_list_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiCall]:
    return ApiCall.objects.filter(user=user)


def api_model_list() -> list[dict[str, Any]]:
    """Every model the API offers, as OpenAI's model objects: `config/model` for each enabled
    config's models (a config that names none: its name alone), each fallback chain by its
    name, and `default`."""
    configs = list(ProviderConfig.objects.filter(enabled=True).order_by("sort_order", "name"))
    chains = list(FallbackChain.objects.filter(enabled=True).order_by("name"))
    newest = max((row.created_at for row in [*configs, *chains]), default=None)
    models = [_model_object(DEFAULT_MODEL, "system", newest)]
    for config in configs:
        names = provider_config_models(config=config)
        ids = [f"{config.name}/{model}" for model in names] or [config.name]
        models.extend(_model_object(model_id, config.name, config.created_at) for model_id in ids)
    models.extend(_model_object(chain.name, chain.name, chain.created_at) for chain in chains)
    return models


def _model_object(model_id: str, owner: str, created: datetime | None) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(created.timestamp()) if created else 0,
        "owned_by": owner,
    }


def api_target_resolve(*, name: str) -> tuple[ProviderConfig | FallbackChain, str | None]:
    """The target and model an API model name means: `default` (the chat's default provider
    and its model), `config/model`, a chain's name, or a config's name alone (its default
    model). ModelNotFoundError for anything else, or a model its config does not offer."""
    if name == DEFAULT_MODEL:
        try:
            target = provider_target_get(name=None)
        except ProviderError:
            raise ModelNotFoundError("No provider is configured yet.") from None
        return target, None
    target_name, _, model = name.partition("/")
    try:
        target = provider_target_get(name=target_name) if target_name else None
    except ProviderError:
        target = None
    if target is None:
        raise ModelNotFoundError(f"The model {name[:200]!r} does not exist.")
    if not model:
        return target, None
    if isinstance(target, ProviderConfig):
        offered = provider_config_models(config=target)
        if offered and model not in offered:
            raise ModelNotFoundError(f"The model {name[:200]!r} does not exist.")
    return target, model
