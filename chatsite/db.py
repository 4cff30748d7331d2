"""Database calls from async code, on a bounded pool of threads that keep their connections.

channels' `database_sync_to_async` runs every call on asgiref's one thread-sensitive thread per
process, so every socket's database work queued behind every other's. `db_call` runs it on
DATABASE_THREADS threads instead. Each thread keeps its connection between calls: SQLite's stays
open (CONN_MAX_AGE=None, health-checked after an error), PostgreSQL's goes back to psycopg's pool
(DATABASE_POOL_SIZE, which must leave room for these threads and the HTTP views).

SQLite admits one writer at a time, and writers in several threads would wait for each other in
SQLite's busy handler, which sleeps between tries (1 ms growing to 100 ms) however soon the lock is
free. So on SQLite, calls that write run on one thread of their own, in arrival order; reads run
on the others in parallel (WAL). PostgreSQL has row locks: every call shares the pool of threads.
"""

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection


@cache
def _readers() -> ThreadPoolExecutor:
    if connection.vendor == "postgresql":
        # Django makes psycopg's pool on first use, without a lock: threads racing to it would
        # each make one, and all but one would stay open, unused, until the process ends.
        assert connection.pool is not None
    return ThreadPoolExecutor(max_workers=settings.DATABASE_THREADS, thread_name_prefix="db")


@cache
def _is_sqlite() -> bool:
    # From the settings, not from `connection`: that would make a connection object for every
    # task that asks, in the event loop's thread, where none is ever used.
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


@cache
def _writer() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")


def db_call[**P, R](func: Callable[P, R], *, writes: bool = False) -> Callable[P, Awaitable[R]]:
    """`func` as an awaitable, run on a database thread (see the module's docstring); `writes`
    for a call that may write."""
    executor = _writer() if writes and _is_sqlite() else _readers()
    return sync_to_async(_tidy_connections(func), thread_sensitive=False, executor=executor)


def _tidy_connections[**P, R](func: Callable[P, R]) -> Callable[P, R]:
    """Drop a connection that broke or outlived CONN_MAX_AGE before and after `func`, as a
    request does (on PostgreSQL, with CONN_MAX_AGE=0, that returns it to the pool). Inside the
    call, not around it as channels' wrapper does: asgiref runs `func` in a copy of the caller's
    context, where the thread may see other connection objects than outside it."""

    @wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return call
