import ast
import importlib.util
from pathlib import Path

import pytest

from providers import registry
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


def _write_package(root, name: str, modules: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(source)


SMALL_PROVIDER = """
from providers.base import AsyncProvider
from providers.registry import register


@register
class {name}(AsyncProvider):
    @classmethod
    async def create_async(cls, model, messages, **kwargs):
        return "Hello"
"""


def test_a_new_module_with_a_registered_class_is_offered_without_listing_it(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_providers", dict(registry._providers))
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(
        tmp_path,
        "newcomer_providers",
        {
            "echo": SMALL_PROVIDER.format(name="NewcomerEcho"),
            # Not a provider module: never imported by discovery, so its side effect never runs.
            "worker": "raise RuntimeError('a helper module was imported')\n",
            # An optional dependency that is not installed: skipped, not an error.
            "optional": "import a_library_that_is_not_installed\n@register\nclass X: ...\n",
        },
    )
    assert registry.provider_modules(package="newcomer_providers") == [
        "newcomer_providers.echo",
        "newcomer_providers.optional",
    ]
    registry.load_provider_modules(package="newcomer_providers")
    assert registry.get_provider("NewcomerEcho").__module__ == "newcomer_providers.echo"


def test_a_provider_module_broken_inside_the_package_is_an_error_not_a_missing_class(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(registry, "_providers", dict(registry._providers))
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(
        tmp_path,
        "broken_providers",
        {"typo": "from broken_providers.nowhere import X\n@register\nclass Y: ...\n"},
    )
    with pytest.raises(ImportError):
        registry.load_provider_modules(package="broken_providers")


def test_every_class_decorated_register_in_the_package_is_offered():
    decorated = set()
    for path in Path(registry.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list
            ):
                decorated.add((path.stem, node.name))
    offered = {cls.__name__ for cls in all_providers()}
    missing = {name for module, name in decorated if name not in offered}
    # The local model's class is offered only where its optional dependency group is installed.
    if importlib.util.find_spec("llama_cpp") is None:
        missing.discard("LlamaCpp")
    assert {"OpenAICompatible", "Raycast", "Lockchat", "Aichat", "Ails"} <= {
        n for _, n in decorated
    }
    assert missing == set()


def _readme_example() -> str:
    readme = (Path(registry.__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Adding a provider", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    return "\n".join(line.removeprefix("   ") for line in code.splitlines()) + "\n"


async def test_the_readme_example_provider_is_discovered_and_answers(
    tmp_path, monkeypatch, fake_upstream
):
    monkeypatch.setattr(registry, "_providers", dict(registry._providers))
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(tmp_path, "readme_providers", {"plain_text": _readme_example()})
    fake_upstream.behave(reply="Hello from the README")
    registry.load_provider_modules(package="readme_providers")
    provider = registry.get_provider("PlainText")
    assert ("PlainText", "Plain text API") in registry.provider_class_choices()
    answer = await provider.create_async(
        "any", [{"role": "user", "content": "Hi there"}], api_base=fake_upstream.url
    )
    assert answer == "Hello from the README"
    assert fake_upstream.requests[-1].json == {"message": "Hi there"}
