"""Provider classes by name: what `ProviderConfig.provider_class` refers to.

Provider modules register their classes with `@register`; the built-in modules are imported on
first lookup. An optional module (one needing an extra library) that cannot be imported is
skipped, so its class is simply not offered.
"""

import importlib
import logging

from providers.base import BaseProvider
from providers.errors import ProviderNotFoundError

logger = logging.getLogger(__name__)

BUILTIN_MODULES = [
    "providers.openai_compatible",
    "providers.raycast",
    "providers.lockchat",
    "providers.aichat",
    "providers.ails",
]
OPTIONAL_MODULES = [
    "providers.llamacpp",
]

_providers: dict[str, type[BaseProvider]] = {}
_loaded = False


def register[P: type[BaseProvider]](cls: P) -> P:
    """Class decorator: make `cls` available under its class name."""
    existing = _providers.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise ValueError(f"Two provider classes are named {cls.__name__}")
    _providers[cls.__name__] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for module in OPTIONAL_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            logger.debug("optional provider module %s not available: %s", module, exc)


def get_provider(name: str) -> type[BaseProvider]:
    _load_builtins()
    try:
        return _providers[name]
    except KeyError:
        raise ProviderNotFoundError(f"Unknown provider class {name!r}.") from None


def all_providers() -> list[type[BaseProvider]]:
    """Every registered class, by name."""
    _load_builtins()
    return [_providers[name] for name in sorted(_providers)]


def provider_class_choices() -> list[tuple[str, str]]:
    return [(cls.__name__, cls.label or cls.__name__) for cls in all_providers()]
