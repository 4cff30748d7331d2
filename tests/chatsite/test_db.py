"""chatsite.db: database calls from async code run on several threads that keep their
connections; on SQLite, writes queue on one thread of their own."""

import asyncio
import threading

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.backends.signals import connection_created

from chatsite.db import db_call

pytestmark = pytest.mark.django_db(transaction=True)


def _current_thread() -> int:
    return threading.get_ident()


def _count_users() -> int:
    return get_user_model().objects.count()


def _physical_connections() -> int:
    """Connections actually opened to the server: Django's connection_created fires on every
    checkout from psycopg's pool, so on PostgreSQL the pool's own count is what matters."""
    if connection.vendor == "postgresql":
        return connection.pool.get_stats().get("connections_num", 0)
    return 0


async def test_calls_reuse_their_threads_connections():
    opened = []

    def record(sender, connection, **kwargs):
        opened.append(connection.alias)

    # Every database thread opens its connection once (all of them busy at the same time).
    barrier = threading.Barrier(settings.DATABASE_THREADS, timeout=10)

    def warm_up() -> None:
        _count_users()
        barrier.wait()

    await asyncio.gather(*(db_call(warm_up)() for _ in range(settings.DATABASE_THREADS)))
    await db_call(_count_users, writes=True)()
    before = _physical_connections()
    connection_created.connect(record)
    try:
        for _ in range(20):
            await db_call(_count_users)()
            await db_call(_count_users, writes=True)()
    finally:
        connection_created.disconnect(record)

    assert _physical_connections() == before
    if connection.vendor == "sqlite":
        # PostgreSQL checks a connection out of the pool per call; SQLite keeps it open.
        assert opened == []


async def test_calls_run_on_several_threads_at_once():
    threads = settings.DATABASE_THREADS
    assert threads >= 2
    # Each call waits for all the others: on a single database thread this could never finish.
    barrier = threading.Barrier(threads, timeout=10)

    def meet() -> int:
        barrier.wait()
        return threading.get_ident()

    idents = await asyncio.gather(*(db_call(meet)() for _ in range(threads)))

    assert len(set(idents)) == threads
    assert threading.get_ident() not in idents


async def test_sqlite_writes_queue_on_one_thread_in_order():
    idents = {await db_call(_current_thread, writes=True)() for _ in range(5)}
    readers = {await db_call(_current_thread)() for _ in range(5)}
    if connection.vendor == "sqlite":
        assert len(idents) == 1
        assert idents.isdisjoint(readers)
    else:
        # PostgreSQL locks rows, not the database: writes share the threads.
        assert not idents <= {threading.get_ident()}
