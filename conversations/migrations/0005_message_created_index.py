"""An index on messages by (created_at, id), for PostgreSQL's search pages (conversations.search):
for a word in most messages, walking it backwards gives the newest matches after a page's worth
of rows, where the GIN index would hand over every match to be sorted. SQLite pages through its
full-text index's own row order and needs nothing here."""

from django.db import migrations

INDEX = "conversations_message_created_id"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON conversations_message (created_at, id)"
        )


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0004_conversation_hidden_since")]

    operations = [migrations.RunPython(forward, backward)]
