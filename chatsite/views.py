import asyncio
import logging
import sys

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)

# A health check that hangs is as bad as one that fails: a load balancer needs an answer.
CHECK_TIMEOUT = 3.0


def _database_status() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "down"; the reason goes to the log only
        logger.warning("healthz: database check failed: %s", type(exc).__name__)
        return {"ok": False, "backend": connection.vendor}
    finally:
        connection.close_if_unusable_or_obsolete()
    return {"ok": True, "backend": connection.vendor}


async def _channel_layer_status() -> dict:
    layer = get_channel_layer()
    backend = type(layer).__name__
    try:
        # A round trip through the layer proves both directions work, for any backend.
        channel = await layer.new_channel("healthz.")
        await asyncio.wait_for(layer.send(channel, {"type": "healthz.ping"}), CHECK_TIMEOUT)
        message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT)
        ok = message.get("type") == "healthz.ping"
    except Exception as exc:
        logger.warning("healthz: channel layer check failed: %s", type(exc).__name__)
        ok = False
    return {"ok": ok, "backend": backend}


@login_not_required
@never_cache
async def healthz(request):
    database = await sync_to_async(_database_status)()
    channel_layer = await _channel_layer_status()
    ok = database["ok"] and channel_layer["ok"]
    return JsonResponse(
        {"status": "ok" if ok else "down", "database": database, "channel_layer": channel_layer},
        status=200 if ok else 503,
    )


def server_error(request):
    """Django's 500 handler, except that a database that cannot be reached is a 503: the site is
    fine and the request can be tried again in a moment. Rendered without the request's context,
    whose processors (the signed-in user) would need the database again."""
    if isinstance(sys.exc_info()[1], DatabaseError):
        response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = "5"
        return response
    return defaults.server_error(request)
