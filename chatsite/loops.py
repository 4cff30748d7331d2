"""One object per running event loop, for things that belong to the loop that made them.

asyncio primitives, Redis connections and httpx pools are bound to the loop they first ran on: one
loop per process under Daphne, one per test under pytest, one per call of a sync bridge. Weak keys
let a finished loop take its objects with it.
"""

import asyncio
import weakref
from collections.abc import Callable


class PerLoop[T]:
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        """The running loop's object, made on first use."""
        loop = asyncio.get_running_loop()
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self._factory()
        return value

    def pop(self) -> T | None:
        """Forget the running loop's object and return it (to close it); None if none was made."""
        return self._by_loop.pop(asyncio.get_running_loop(), None)
