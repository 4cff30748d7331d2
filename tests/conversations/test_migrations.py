"""The full-text index must survive every migration of the tables it watches."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite keeps the index with triggers")
def test_full_text_triggers_survive_all_migrations():
    """Django rebuilds a SQLite table for most new columns, silently dropping its triggers; a
    later migration that did so would leave search blind to every new message."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        triggers = {row[0] for row in cursor.fetchall()}
    for table in ("conversations_message", "conversations_conversation"):
        for event in ("insert", "update", "delete"):
            assert f"{table}_fts_{event}" in triggers
