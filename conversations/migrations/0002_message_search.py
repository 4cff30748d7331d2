"""Full-text search indexes for conversations.search, one design per database.

PostgreSQL: generated tsvector columns with GIN indexes. SQLite: FTS5 tables kept in step by
triggers; each FTS row's rowid comes from a small key table because our primary keys are UUIDs
and SQLite's implicit rowid of the message table may change on VACUUM.

Other databases get nothing here (conversations.search refuses them with a clear error).
"""

from django.db import migrations

POSTGRES_FORWARD = [
    "ALTER TABLE conversations_message ADD COLUMN search_vector tsvector"
    " GENERATED ALWAYS AS (to_tsvector('simple', coalesce(content, ''))) STORED",
    "CREATE INDEX conversations_message_search_gin"
    " ON conversations_message USING GIN (search_vector)",
    "ALTER TABLE conversations_conversation ADD COLUMN search_vector tsvector"
    " GENERATED ALWAYS AS (to_tsvector('simple', coalesce(title, ''))) STORED",
    "CREATE INDEX conversations_conversation_search_gin"
    " ON conversations_conversation USING GIN (search_vector)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS conversations_message_search_gin",
    "ALTER TABLE conversations_message DROP COLUMN IF EXISTS search_vector",
    "DROP INDEX IF EXISTS conversations_conversation_search_gin",
    "ALTER TABLE conversations_conversation DROP COLUMN IF EXISTS search_vector",
]


def _sqlite_statements(*, table: str, key: str, column: str) -> list[str]:
    """Key table, FTS5 table, triggers and backfill for one text column of `table`."""
    key_table = f"{table}_search_key"
    fts = f"{table}_fts"
    lookup = f"(SELECT id FROM {key_table} WHERE {key} = new.id)"
    return [
        f"CREATE TABLE {key_table} (id INTEGER PRIMARY KEY, {key} char(32) NOT NULL UNIQUE)",
        f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN"
        f" INSERT INTO {key_table} ({key}) VALUES (new.id);"
        f" INSERT INTO {fts} (rowid, {column}) VALUES ({lookup}, new.{column});"
        f" END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table}"
        f" WHEN old.{column} IS NOT new.{column} BEGIN"
        f" UPDATE {fts} SET {column} = new.{column} WHERE rowid = {lookup};"
        f" END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN"
        f" DELETE FROM {fts} WHERE rowid = (SELECT id FROM {key_table} WHERE {key} = old.id);"
        f" DELETE FROM {key_table} WHERE {key} = old.id;"
        f" END",
        f"INSERT INTO {key_table} ({key}) SELECT id FROM {table}",
        f"INSERT INTO {fts} (rowid, {column})"
        f" SELECT k.id, t.{column} FROM {key_table} k JOIN {table} t ON t.id = k.{key}",
    ]


SQLITE_TARGETS = [
    {"table": "conversations_message", "key": "message_id", "column": "content"},
    {"table": "conversations_conversation", "key": "conversation_id", "column": "title"},
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = POSTGRES_FORWARD
    elif vendor == "sqlite":
        statements = [s for target in SQLITE_TARGETS for s in _sqlite_statements(**target)]
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = POSTGRES_BACKWARD
    elif vendor == "sqlite":
        statements = []
        for target in SQLITE_TARGETS:
            fts = f"{target['table']}_fts"
            statements += [
                f"DROP TRIGGER IF EXISTS {fts}_{event}" for event in ("insert", "update", "delete")
            ]
            statements += [
                f"DROP TABLE IF EXISTS {fts}",
                f"DROP TABLE IF EXISTS {target['table']}_search_key",
            ]
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
