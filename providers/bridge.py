"""Running provider coroutines from synchronous code.

The sync entry points (`create_completion`, `on_auth`, ...) must work from plain sync code, from a
worker thread, and from code that is itself called inside a running event loop, where
`asyncio.run` refuses to start and nesting loops (nest_asyncio) corrupts the outer one. So every
bridge runs its coroutines on a private loop in a helper thread and waits for each step; the
calling thread never runs a second loop.
"""

import asyncio
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any

from providers.transport import close_shared_clients

logger = logging.getLogger(__name__)


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="provider-sync-bridge", daemon=True
        )
        self.thread.start()

    def run[T](self, coro: Coroutine[Any, Any, T]) -> T:
        # The step runs in a fresh context, not a copy of the caller's: inherited asgiref state
        # would send the step's database calls (database_sync_to_async) to the executor of the
        # caller's request, which is the very thread now blocked here waiting (a deadlock, e.g.
        # for an admin action under ASGI).
        future: Future[T] = contextvars.Context().run(
            asyncio.run_coroutine_threadsafe, coro, self.loop
        )
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt or the like in the waiting thread: stop the step too.
            future.cancel()
            raise

    def close(self) -> None:
        try:
            self.run(close_shared_clients())
            self.run(self.loop.shutdown_asyncgens())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


def run_sync[T](make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one coroutine to completion from sync code and return its result."""
    bridge = _LoopThread()
    try:
        return bridge.run(make_coro())
    finally:
        bridge.close()


def iter_sync[T](make_agen: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Drive an async generator from sync code, one item per step.

    Closing the returned generator (or abandoning it) closes the async one, which closes its
    upstream response.
    """
    bridge = _LoopThread()
    agen = make_agen()
    try:
        while True:
            try:
                item = bridge.run(anext(agen))
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(agen, "aclose", None)
        try:
            if aclose is not None:
                bridge.run(aclose())
        except RuntimeError:
            # The generator was still running a step we cancelled; the loop's shutdown closes it.
            logger.debug("async generator was busy while closing", exc_info=True)
        finally:
            bridge.close()
