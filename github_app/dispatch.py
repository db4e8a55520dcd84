"""Drains the queue with one anyio task group whose width is a live CapacityLimiter.

A slot is acquired *before* an event is taken, so the event taken is the best
one at that moment, not one chosen while waiting for a slot. The queue keeps
one issue's events in order and never hands out two of them at once; the
dispatcher only has to call ``done`` when an event ends, whatever happened.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from github_app.queue import EventQueue, QueuedEvent

log = logging.getLogger(__name__)

Handler = Callable[[QueuedEvent], Awaitable[None]]


class Gate(Protocol):
    """Says whether an event may be taken now (the circuit breaker), and else for how long not."""

    def allow(self) -> bool: ...

    def wait_hint(self) -> float: ...


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

    def __init__(
        self,
        queue: EventQueue,
        handler: Handler,
        width: int,
        *,
        paused: bool = False,
        gate: Gate | None = None,
    ):
        if width < 1:
            raise ValueError("width must be at least 1")
        self._queue = queue
        self._handler = handler
        self.gate = gate  # set after construction when the gate needs the dispatcher
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
            closed_for = None
            if not self._paused and len(self._queue):
                if self.gate is not None and not self.gate.allow():
                    # GitHub is failing or asked us to wait: events stay queued till the gate opens
                    closed_for = max(0.01, self.gate.wait_hint())
                else:
                    item = self._queue.take()
                    if item is not None:
                        return item
            self._wakeup = anyio.Event()
            with anyio.move_on_after(closed_for):
                await self._wakeup.wait()

    async def _run_one(self, item: QueuedEvent, token: object) -> None:
        try:
            await self._handler(item)
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
