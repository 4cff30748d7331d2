"""`max_retries` leaves ProviderConfig: only Lockchat ever read it.

Lockchat's retry is a quirk of its wire format (a spurious "model does not exist" answer that
works when asked again), not a policy for every upstream, and a failing upstream is already
covered by fallback chains. A Lockchat config whose admin changed the count keeps it, moved into
its options (which are passed to the class as keyword arguments); every other value is dropped.
"""

from django.db import migrations

LOCKCHAT_DEFAULT_RETRIES = 3


def move_lockchat_retries_to_options(apps, schema_editor):
    ProviderConfig = apps.get_model("providers", "ProviderConfig")
    changed = ProviderConfig.objects.filter(provider_class="Lockchat").exclude(
        max_retries=LOCKCHAT_DEFAULT_RETRIES
    )
    for config in changed:
        options = dict(config.options or {})
        options.setdefault("max_retries", config.max_retries)
        config.options = options
        config.save(update_fields=["options"])


def move_lockchat_retries_back(apps, schema_editor):
    ProviderConfig = apps.get_model("providers", "ProviderConfig")
    for config in ProviderConfig.objects.filter(provider_class="Lockchat"):
        options = dict(config.options or {})
        if "max_retries" in options:
            config.max_retries = int(options.pop("max_retries"))
            config.options = options
            config.save(update_fields=["max_retries", "options"])


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0002_local_model_smollm2"),
    ]

    operations = [
        migrations.RunPython(move_lockchat_retries_to_options, move_lockchat_retries_back),
        migrations.RemoveField(model_name="providerconfig", name="max_retries"),
    ]
