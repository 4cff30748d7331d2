from django.apps import AppConfig


class PresetsConfig(AppConfig):
    name = "conversations.presets"
    # Its own label (tables, migrations, admin section), as when it stood alone.
    label = "presets"
    verbose_name = "Prompt presets"
