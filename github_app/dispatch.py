"""Drains the queue with one anyio task group whose width is a live CapacityLimiter.

A slot is acquired *before* an event is taken, so the event taken is the best
one at that moment, not one chosen while waiting for a slot. The queue keeps
one issue's events in order and never hands out two of them at once; the
dispatcher only has to call ``done`` when an event ends, whatever happened.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from github_app.errors import Deferred, InstallationGone, RetryableGitHubError
from github_app.queue import EventQueue, QueuedEvent

log = logging.getLogger(__name__)

Handler = Callable[[QueuedEvent], Awaitable[None]]


@dataclass(frozen=True)
class DispatchStats:
    width: int
    in_flight: int
    paused: bool
    stopping: bool
    started: int
    finished: int
    crashed: int


class Dispatcher:
    """Runs ``handler`` on queued events, at most ``width`` at a time."""

    def __init__(self, queue: EventQueue, handler: Handler, width: int, *, paused: bool = False):
        if width < 1:
            raise ValueError("width must be at least 1")
        self._queue = queue
        self._handler = handler
        self._limiter = anyio.CapacityLimiter(width)
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._paused = paused
        self._stopping = False
        self._in_flight = 0
        self._started = 0
        self._finished = 0
        self._crashed = 0
        self._cancel_scope: anyio.CancelScope | None = None

    @property
    def width(self) -> int:
        return int(self._limiter.total_tokens)

    @width.setter
    def width(self, value: int) -> None:
        """Takes effect at once: more slots admit waiting work, fewer let running work finish."""
        self._limiter.total_tokens = max(1, int(value))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def notify(self) -> None:
        """Something may have become takeable (an offer, a pause lifted)."""
        self._wakeup.set()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.notify()

    def stats(self) -> DispatchStats:
        return DispatchStats(
            width=self.width,
            in_flight=self._in_flight,
            paused=self._paused,
            stopping=self._stopping,
            started=self._started,
            finished=self._finished,
            crashed=self._crashed,
        )

    async def run(self) -> None:
        """Drain until ``stop`` is called; in-flight events are left to ``drain`` to wait for."""
        async with anyio.create_task_group() as group:
            self._cancel_scope = group.cancel_scope
            while not self._stopping:
                token = object()
                await self._limiter.acquire_on_behalf_of(token)
                item = await self._next_item()
                if item is None:
                    self._limiter.release_on_behalf_of(token)
                    break
                self._in_flight += 1
                self._started += 1
                self._idle = anyio.Event() if self._idle.is_set() else self._idle
                group.start_soon(self._run_one, item, token)

    async def _next_item(self) -> QueuedEvent | None:
        while True:
            if self._stopping:
                return None
            if not self._paused:
                item = self._queue.take()
                if item is not None:
                    return item
            self._wakeup = anyio.Event()
            with anyio.move_on_after(self._queue.seconds_until_ready()):
                await self._wakeup.wait()

    async def _run_one(self, item: QueuedEvent, token: object) -> None:
        try:
            await self._handler(item)
        # Minimal re-queueing (issue 3) to the shared contract; issue 4 owns the policy.
        except Deferred as exc:
            self._queue.defer(item, exc.until)
        except RetryableGitHubError as exc:
            backoff = min(60.0, 2.0**item.attempts) * random.uniform(0.5, 1.0)  # noqa: S311
            delay = max(backoff, exc.retry_after or 0.0)
            self._queue.retry(item, time.monotonic() + delay, str(exc))
        except InstallationGone as exc:
            self._queue.dead_letter(item, "installation_gone", str(exc))
        except Exception:
            # The handler reports its own failures; this is the last line of defence.
            self._crashed += 1
            log.exception("event %s crashed its handler", item.envelope.delivery_id)
        finally:
            self._queue.done(item)
            self._limiter.release_on_behalf_of(token)
            self._in_flight -= 1
            self._finished += 1
            if self._in_flight == 0:
                self._idle.set()
            self.notify()

    async def wait_idle(self) -> None:
        """Until no event is being processed (queued ones may remain)."""
        await self._idle.wait()

    def stop(self) -> None:
        """Take no more events; running ones go on."""
        self._stopping = True
        self.notify()

    async def drain(self, timeout: float) -> int:
        """Stop taking events and wait up to ``timeout`` s for running ones; returns those cut off.

        Events still running after the timeout are cancelled: they were not
        finished, and are logged as such by the caller.
        """
        self.stop()
        with anyio.move_on_after(timeout if math.isfinite(timeout) else None):
            await self.wait_idle()
        unfinished = self._in_flight
        if unfinished and self._cancel_scope is not None:
            self._cancel_scope.cancel()
        return unfinished
