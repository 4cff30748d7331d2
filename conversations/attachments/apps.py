from django.apps import AppConfig


class AttachmentsConfig(AppConfig):
    name = "conversations.attachments"
    # Its own label (tables, migrations, admin section), as when it stood alone.
    label = "attachments"
    verbose_name = "Attachments"
