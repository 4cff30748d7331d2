"""Provider classes by name: what `ProviderConfig.provider_class` refers to.

A provider is a module in this package with a class decorated `@register`; nothing else lists it.
On first lookup every module of the package whose source has a line starting with `@register` is
imported (the others, such as the local model's worker, are never imported here, so their side
effects stay where they belong). A module that cannot be imported because a library outside this
package is missing (an optional dependency group) is skipped, so its class is simply not offered;
any other import error is raised, so a broken provider never disappears silently.
"""

import importlib
import importlib.util
import logging
import pkgutil
import re
from pathlib import Path

from providers.base import BaseProvider
from providers.errors import ProviderNotFoundError

logger = logging.getLogger(__name__)

_REGISTERS = re.compile(r"^@register\b", re.MULTILINE)

_providers: dict[str, type[BaseProvider]] = {}
_loaded = False


def register[P: type[BaseProvider]](cls: P) -> P:
    """Class decorator: make `cls` available under its class name."""
    existing = _providers.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise ValueError(f"Two provider classes are named {cls.__name__}")
    _providers[cls.__name__] = cls
    return cls


def provider_modules(*, package: str = "providers") -> list[str]:
    """The modules of `package` that register a provider class, found by reading their source."""
    found = []
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        spec = importlib.util.find_spec(f"{package}.{info.name}")
        if info.ispkg or spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        if _REGISTERS.search(Path(spec.origin).read_text(encoding="utf-8")):
            found.append(f"{package}.{info.name}")
    return sorted(found)


def _is_missing_extra(exc: ImportError, *, package: str) -> bool:
    """A missing library from outside the package (or a module's own "not installed" signal)."""
    return exc.name is None or not (exc.name == package or exc.name.startswith(f"{package}."))


def load_provider_modules(*, package: str = "providers") -> None:
    for module in provider_modules(package=package):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            if not _is_missing_extra(exc, package=package):
                raise
            logger.debug("optional provider module %s not available: %s", module, exc)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    load_provider_modules()


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
