"""The server side of the local model's worker process (providers.llamacpp_worker).

Each server process has one supervisor, `local_model`, which starts one worker on first use and
streams answers from it. The worker's protocol is in providers.llamacpp_worker's docstring.

- Requests queue in the server (first come, first served) and go to the worker one at a time.
- Two threads per worker move bytes: one writes commands to its stdin (so a long conversation
  never blocks an event loop on a full pipe), one reads its events, hands them to the waiting
  request's event loop, and watches the clock: a worker that sends nothing for
  LOCAL_MODEL_STALL_SECONDS while it has a request is killed.
- When the worker dies (a signal, an exit, or killed for stalling), its request ends with a
  ProviderError saying so, and the next request starts a fresh worker.
- A stopped request keeps the worker until the worker confirms ("end"), which it does before
  its next token: the next request then gets a worker that is really free.
- At interpreter exit the worker's stdin is closed and the worker exits; if the server dies
  without that, the pipe closes anyway and the worker exits just the same.
"""

import asyncio
import atexit
import itertools
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from providers.errors import (
    BadRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ResponseError,
)
from providers.types import Chunk, FinishReason, Usage

logger = logging.getLogger(__name__)

# The folder that holds the `providers` package: the worker runs as `python -m` from there.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# How often the reader thread looks at the clock while the worker is silent.
WATCH_INTERVAL = 0.25
# How long a closing supervisor waits for its worker to exit before killing it.
EXIT_GRACE_SECONDS = 3.0

ERRORS_BY_KIND: dict[str, type[ProviderError]] = {
    "bad_request": BadRequestError,
    "model_not_found": ModelNotFoundError,
    "upstream_error": ResponseError,
}
_END = object()


@dataclass(frozen=True)
class _Failed:
    """The worker's report that a request failed; its "end" follows."""

    error: ProviderError


_request_ids = itertools.count(1)


class FifoSlot:
    """One holder at a time, in order of arrival, awaitable from any event loop.

    asyncio.Lock binds itself to the first loop that waits on it, but one worker serves every loop
    of the process (a test's loop, a management command's asyncio.run), and the holder is let go
    from the worker's reader thread.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = deque()

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self, *, max_wait: float | None) -> bool:
        """Wait for the slot; False when `max_wait` seconds passed first."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max_wait):
                await waiter[1]
            return True
        except BaseException as exc:
            self._give_up(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise

    def _give_up(self, waiter: tuple) -> None:
        with self._mutex:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                return
        # It was handed the slot just as it stopped waiting: pass it on.
        self.release()

    def release(self) -> None:
        with self._mutex:
            while self._waiters:
                loop, future = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(_grant, future)
                    return
                except RuntimeError:
                    continue  # that waiter's loop is closed: it is gone
            self._held = False


def _grant(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class _Job:
    """One request, as seen from the reader thread: where to hand its chunks."""

    def __init__(self) -> None:
        self.id = next(_request_ids)
        self._loop = asyncio.get_running_loop()
        self.chunks: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self.chunks.put_nowait, item)
        except RuntimeError:
            pass  # its event loop is closed: nobody is waiting for this answer any more


class WorkerDiedError(ResponseError):
    """The worker process ended while it had a request; `cause` is the signal or exit status.

    Its own code: the message is our own words (no upstream text, no address), so users see it as
    it is, signal included; it tells them what happened and what to do."""

    code = "local_model_stopped"

    def __init__(self, cause: str) -> None:
        super().__init__(
            f"The local model stopped unexpectedly ({cause}). The next message starts it again; "
            "if this keeps happening, the server's llama.cpp build needs rebuilding."
        )
        self.cause = cause


def death_cause(returncode: int) -> str:
    """ "SIGILL" for a death by signal, "exit status 3" for an exit."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _chunk_of(event: dict[str, Any]) -> object | None:
    """What a worker event means to the request's stream (None: nothing to pass on)."""
    kind = event["event"]
    if kind == "text":
        return event["text"]
    if kind == "usage":
        prompt, completion = event["prompt"], event["completion"]
        return Usage(prompt, completion, prompt + completion)
    if kind == "finish":
        return FinishReason(event["reason"])
    if kind == "error":
        return _Failed(ERRORS_BY_KIND.get(event["kind"], ResponseError)(event["message"]))
    if kind == "end":
        return _END
    return None


class Worker:
    """One worker process and the two threads that talk to it."""

    def __init__(self, *, fault: str, on_free) -> None:
        command = [sys.executable, "-m", "providers.llamacpp_worker"]
        if fault:
            command += ["--fault", fault]
        # Its own session: a Ctrl-C in the terminal is for the server, which then closes the
        # worker's input; the worker does not print a traceback of its own.
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        self._on_free = on_free
        self._mutex = threading.Lock()
        self._job: _Job | None = None
        self._last_event = time.monotonic()
        self._stalled = False
        self.dead = False
        # Requests that ended early on a stop, rather than running to their end: for tests and
        # diagnostics.
        self.stops_honoured = 0
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._write, name="llamacpp-writer", daemon=True).start()
        threading.Thread(target=self._read, name="llamacpp-reader", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def begin(self, job: _Job, request: dict[str, Any]) -> bool:
        """Send `job`'s request; False when the worker has died meanwhile."""
        with self._mutex:
            if self.dead:
                return False
            self._job, self._last_event = job, time.monotonic()
        self._send({"op": "generate", "id": job.id, **request})
        return True

    def stop(self, job: _Job) -> None:
        with self._mutex:
            if self._job is not job:
                return
        self._send({"op": "stop", "id": job.id})

    def close(self) -> None:
        """Close its input (the worker exits), and kill it if it does not exit in time."""
        self._outbox.put(None)
        try:
            self.process.wait(timeout=EXIT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _send(self, command: dict[str, Any]) -> None:
        self._outbox.put(json.dumps(command).encode() + b"\n")

    def _write(self) -> None:
        stdin = self.process.stdin
        while (data := self._outbox.get()) is not None:
            try:
                stdin.write(data)
                stdin.flush()
            except OSError:
                break  # the worker is gone; the reader reports it
        try:
            stdin.close()
        except OSError:
            pass

    def _read(self) -> None:
        fd = self.process.stdout.fileno()
        pending = b""
        while True:
            ready, _, _ = select.select([fd], [], [], WATCH_INTERVAL)
            if not ready:
                self._kill_if_stalled()
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            *lines, pending = (pending + data).split(b"\n")
            try:
                for line in lines:
                    self._dispatch(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError):
                # Not the protocol: nothing it says can be trusted any more. Caught here, because
                # this thread is also the watchdog and the one that reports the worker's end:
                # were it to die, the local model would stay taken until the server restarts.
                logger.error("LlamaCpp: the worker (pid %s) wrote garbage; killing it", self.pid)
                self.process.kill()
        self._died(self.process.wait())

    def _dispatch(self, event: dict[str, Any]) -> None:
        chunk = _chunk_of(event)
        with self._mutex:
            job = self._job
            if job is None or event["id"] != job.id:
                return
            self._last_event = time.monotonic()
            if chunk is _END:
                self._job = None
                self.stops_honoured += bool(event.get("stopped"))
        if chunk is _END:
            # Freed first: whoever sees the end of an answer finds the worker free.
            self._on_free()
        if chunk is not None:
            job.deliver(chunk)

    def _kill_if_stalled(self) -> None:
        # Read on every look, so that a changed setting applies to a running worker too.
        limit = settings.LOCAL_MODEL_STALL_SECONDS
        with self._mutex:
            if self._job is None or time.monotonic() - self._last_event < limit:
                return
            self._stalled = True
        logger.warning(
            "LlamaCpp: the worker (pid %s) sent nothing for %gs; killing it", self.pid, limit
        )
        self.process.kill()

    def _died(self, returncode: int) -> None:
        with self._mutex:
            job, self._job, self.dead = self._job, None, True
        self._outbox.put(None)
        if job is None and returncode == 0:
            return
        if self._stalled:
            error: ProviderError = ProviderTimeoutError(
                "The local model stopped answering and was restarted; send the message again."
            )
        else:
            error = WorkerDiedError(death_cause(returncode))
            logger.error("LlamaCpp: the worker (pid %s) died: %s", self.pid, error)
        if job is not None:
            self._on_free()
            job.deliver(error)


class Supervisor:
    """The local model of one server process: its worker, started on first use, and the queue."""

    def __init__(self) -> None:
        self._slot = FifoSlot()
        self._worker: Worker | None = None
        self._mutex = threading.Lock()
        self._exit_hook = False

    @property
    def worker(self) -> Worker | None:
        """The current worker, if one was started (for tests and diagnostics)."""
        return self._worker

    @property
    def busy(self) -> bool:
        """Whether a request holds (or is being handed) the worker at this instant."""
        return self._slot.held

    async def stream(
        self, request: dict[str, Any], *, queue_timeout: float | None
    ) -> AsyncIterator[Chunk]:
        """The chunks of one generation: text, then Usage and FinishReason; errors are raised."""
        if not await self._slot.acquire(max_wait=queue_timeout):
            raise ProviderTimeoutError("The local model is busy with other requests; try again.")
        job = _Job()
        try:
            worker = self._begin(job, request)
        except BaseException:
            self._slot.release()
            raise
        over, failed = False, None
        try:
            while True:
                chunk = await job.chunks.get()
                if chunk is _END:
                    over = True
                    if failed is not None:
                        raise failed.error
                    return
                if isinstance(chunk, _Failed):
                    failed = chunk  # raised at its "end", once the worker is free again
                elif isinstance(chunk, ProviderError):
                    over = True  # the worker died: nothing more comes
                    raise chunk
                else:
                    yield chunk
        finally:
            if not over:
                # The worker stops before its next token and then frees the slot (see _dispatch).
                worker.stop(job)

    def _begin(self, job: _Job, request: dict[str, Any]) -> Worker:
        for _ in range(2):
            worker = self._running_worker()
            if worker.begin(job, request):
                return worker
        raise ResponseError("The local model could not be started.")

    def _running_worker(self) -> Worker:
        with self._mutex:
            if self._worker is None or self._worker.dead:
                if self._worker is not None:
                    self._worker.close()
                self._worker = Worker(
                    fault=settings.LOCAL_MODEL_WORKER_FAULT,
                    on_free=self._slot.release,
                )
                logger.debug("LlamaCpp: started the model worker (pid %s)", self._worker.pid)
                if not self._exit_hook:
                    atexit.register(self.close)
                    self._exit_hook = True
            return self._worker

    def close(self) -> None:
        """End the worker (if any); the next request starts a new one."""
        with self._mutex:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()


local_model = Supervisor()
