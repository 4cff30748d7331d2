"""providers/migrations/0002: Local configs that named the former packaged model (Gemma, whose
package is gone) are moved to SmolLM2; nothing else changes."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

FORMER = "gemma-3-270m-q4_k_m.gguf"
CURRENT = "SmolLM2-135M-Instruct.Q4_1.gguf"
BEFORE = [("providers", "0001_initial")]
AFTER = [("providers", "0002_local_model_smollm2")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_configs_naming_the_former_packaged_model_move_to_smollm2():
    apps = migrate(BEFORE)
    ProviderConfig = apps.get_model("providers", "ProviderConfig")
    ProviderConfig.objects.create(name="Local", provider_class="LlamaCpp", default_model=FORMER)
    ProviderConfig.objects.create(
        name="both",
        provider_class="LlamaCpp",
        default_model="/srv/models/mine.gguf",
        allowed_models=[FORMER, "/srv/models/mine.gguf", CURRENT],
    )
    ProviderConfig.objects.create(
        name="remote", provider_class="OpenAICompatible", default_model=FORMER
    )
    try:
        apps = migrate(AFTER)
        rows = apps.get_model("providers", "ProviderConfig").objects.order_by("name")
        assert [(r.name, r.default_model, r.allowed_models) for r in rows] == [
            ("Local", CURRENT, []),
            # Listed once, where the former name stood.
            ("both", "/srv/models/mine.gguf", [CURRENT, "/srv/models/mine.gguf"]),
            # Another class's model name is that upstream's business.
            ("remote", FORMER, []),
        ]
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_dropping_max_retries_keeps_a_changed_lockchat_count_in_its_options():
    apps = migrate([("providers", "0002_local_model_smollm2")])
    ProviderConfig = apps.get_model("providers", "ProviderConfig")
    ProviderConfig.objects.create(name="lock", provider_class="Lockchat", max_retries=5)
    ProviderConfig.objects.create(name="lock-default", provider_class="Lockchat", max_retries=3)
    ProviderConfig.objects.create(
        name="openai", provider_class="OpenAICompatible", max_retries=7, options={"seed": 1}
    )
    try:
        apps = migrate([("providers", "0003_drop_max_retries")])
        rows = apps.get_model("providers", "ProviderConfig").objects.order_by("name")
        assert [(r.name, r.options) for r in rows] == [
            ("lock", {"max_retries": 5}),
            ("lock-default", {}),
            ("openai", {"seed": 1}),
        ]
        assert "max_retries" not in {
            f.name for f in apps.get_model("providers", "ProviderConfig")._meta.fields
        }
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
