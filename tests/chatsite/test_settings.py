"""Environment → settings, checked in a fresh interpreter per case so nothing leaks between them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

DUMP = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "options": db.get("OPTIONS", {}),
    "conn_max_age": db.get("CONN_MAX_AGE"), "layer": settings.CHANNEL_LAYERS["default"],
    "debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS,
    "keys": len(settings.FIELD_ENCRYPTION_KEYS),
    "port": settings.PORT, "log_level": settings.LOG_LEVEL, "csrf": settings.CSRF_TRUSTED_ORIGINS,
}, default=str))
"""


def run_settings(**env: str) -> subprocess.CompletedProcess:
    base = {
        key: value
        for key, value in os.environ.items()
        if key in {"PATH", "HOME", "LANG", "PYTHONPATH", "SYSTEMROOT"}
    }
    base.update({"DJANGO_SETTINGS_MODULE": "chatsite.settings", "ENV_FILE": ""}, **env)
    return subprocess.run(
        [sys.executable, "-c", DUMP], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


KEYS = {"SECRET_KEY": "s" * 50, "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode()}


def parsed(**env: str) -> dict:
    result = run_settings(**{**KEYS, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"])
def test_start_up_refuses_without_key_when_debug_is_off(missing):
    env = {name: value for name, value in KEYS.items() if name != missing}
    result = run_settings(**env)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"{missing} is not set" in last_line
    assert "make run" in last_line


def test_debug_starts_without_keys():
    result = run_settings(DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["debug"] is True


def test_default_database_is_sqlite_in_wal_mode_with_immediate_transactions():
    config = parsed()
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["name"].endswith(os.path.join("var", "chat.sqlite3"))
    assert config["options"]["transaction_mode"] == "IMMEDIATE"
    assert config["options"]["timeout"] >= 5
    assert "journal_mode=WAL" in config["options"]["init_command"]


def test_postgres_url_uses_psycopg_pool_without_persistent_connections():
    config = parsed(DATABASE_URL="postgres://chat:pw@db.internal:5433/chat")
    assert config["engine"] == "django.db.backends.postgresql"
    assert config["name"] == "chat"
    assert config["conn_max_age"] == 0
    assert config["options"]["pool"]["max_size"] >= 1


def test_channel_layer_is_in_memory_without_redis_url():
    assert parsed()["layer"]["BACKEND"] == "chatsite.channel_layer.InMemoryChannelLayer"


def test_redis_url_selects_channels_redis():
    layer = parsed(REDIS_URL="redis://cache.internal:6380/2", CHAT_REDIS_CHANNEL_CONNECTIONS="7")[
        "layer"
    ]
    # channels-redis, with a pool that waits when all its connections are busy.
    assert layer["BACKEND"] == "chatsite.channel_layer.RedisChannelLayer"
    [host] = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://cache.internal:6380/2"
    # Longer than channels-redis's 5 s blocking read (see test_channel_layer).
    assert host["socket_timeout"] > 5
    assert host["max_connections"] == 7


def test_lists_and_scalars_are_parsed():
    config = parsed(
        ALLOWED_HOSTS="chat.example.org,.example.net",
        CSRF_TRUSTED_ORIGINS="https://chat.example.org",
        FIELD_ENCRYPTION_KEYS=f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
        PORT="9001",
        LOG_LEVEL="debug",
    )
    assert config["hosts"] == ["chat.example.org", ".example.net"]
    assert config["csrf"] == ["https://chat.example.org"]
    assert config["keys"] == 2
    assert config["port"] == 9001
    assert config["log_level"] == "DEBUG"


def test_env_file_is_read_but_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"SECRET_KEY={'f' * 50}\nFIELD_ENCRYPTION_KEYS={KEYS['FIELD_ENCRYPTION_KEYS']}\nPORT=7000\n"
    )
    result = run_settings(ENV_FILE=str(env_file), PORT="7100")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["port"] == 7100
    result = run_settings(ENV_FILE=str(env_file))
    assert json.loads(result.stdout)["port"] == 7000


def test_sqlite_connections_stay_open():
    # Opening one (and running its PRAGMAs) cost a quarter of every database call.
    assert parsed()["conn_max_age"] is None


def test_postgres_pool_is_sized_by_its_setting_and_larger_than_the_database_threads():
    config = parsed(
        DATABASE_URL="postgres://chat:pw@db.internal/chat",
        DATABASE_THREADS="6",
        DATABASE_POOL_SIZE="20",
    )
    assert config["options"]["pool"]["max_size"] == 20

    result = run_settings(
        **KEYS,
        DATABASE_URL="postgres://chat:pw@db.internal/chat",
        DATABASE_THREADS="8",
        DATABASE_POOL_SIZE="8",
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "DATABASE_POOL_SIZE (8) must be larger than DATABASE_THREADS (8)" in last_line


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_URL": "redis://cache.internal:6379/0"},  # SQLite
        {"DATABASE_URL": "postgres://chat:pw@db.internal/chat"},  # no Redis
    ],
    ids=["sqlite", "no-redis"],
)
def test_several_server_processes_need_scale_mode(env):
    result = run_settings(**KEYS, **env, SERVER_PROCESSES="2")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "SERVER_PROCESSES above 1 needs scale mode" in last_line

    scale_mode = {
        "DATABASE_URL": "postgres://chat:pw@db.internal/chat",
        "REDIS_URL": "redis://cache.internal:6379/0",
    }
    assert run_settings(**KEYS, **scale_mode, SERVER_PROCESSES="2").returncode == 0
    result = run_settings(**KEYS, **scale_mode, SERVER_PROCESSES="0")
    assert "SERVER_PROCESSES must be at least 1" in result.stderr


def test_an_empty_database_url_means_the_default_and_a_strange_one_is_named():
    assert parsed(DATABASE_URL="")["engine"] == "django.db.backends.sqlite3"

    result = run_settings(**KEYS, DATABASE_URL="chat.sqlite3")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "DATABASE_URL is not a database URL this site knows" in last_line
