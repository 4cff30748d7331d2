import pytest
from django.conf import settings
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_reports_database_and_channel_layer_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    engine = settings.DATABASES["default"]["ENGINE"]
    expected_db = "postgresql" if engine.endswith("postgresql") else "sqlite"
    assert body["database"] == {"ok": True, "backend": expected_db}
    expected_layer = "RedisChannelLayer" if settings.REDIS_URL else "InMemoryChannelLayer"
    assert body["channel_layer"] == {"ok": True, "backend": expected_layer}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.postgres
@pytest.mark.redis
def test_services_mode_reports_postgres_and_redis(client):
    body = client.get("/healthz").json()
    assert body["database"]["backend"] == "postgresql"
    assert body["channel_layer"]["backend"] == "RedisChannelLayer"


def test_unreachable_channel_layer_answers_503(client, unused_tcp_port):
    # A real connection attempt to a port nobody listens on: what a dead Redis looks like.
    dead = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{unused_tcp_port}/0"]},
        }
    }
    from channels.layers import channel_layers

    with override_settings(CHANNEL_LAYERS=dead):
        channel_layers.backends.clear()
        try:
            response = client.get("/healthz")
        finally:
            channel_layers.backends.clear()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["channel_layer"] == {"ok": False, "backend": "RedisChannelLayer"}
    assert body["database"]["ok"] is True
