from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "conversations.usage"
    # Its own label (tables, migrations, admin section), as when it stood alone.
    label = "usage"
    verbose_name = "Usage and prices"
