"""Drains the queue with one anyio task group whose width is a live CapacityLimiter.

A slot is acquired *before* an event is taken, so the event taken is the best
one at that moment, not one chosen while waiting for a slot. The queue keeps
one issue's events in order and never hands out two of them at once; the
dispatcher settles each event exactly once, by how its handler ended:

- returned: ``done`` (``failed`` when it answered ``False``: a processor
  failed for good);
- ``Deferred``: back in its place, not before ``until``, the try not counted;
- ``RetryableGitHubError``: back in its place after exponential backoff with
  jitter (at least GitHub's ``retry_after``), or to the dead-letter queue with
  the last error once the attempts are spent;
- ``InstallationGone``: to the dead-letter queue, with every other queued
  event of that installation (reason ``installation_gone``);
- anything else: a bug in a handler; logged, counted, and ``done``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from github_app.errors import Deferred, InstallationGone, RetryableGitHubError
from github_app.queue.dead_letters import EXHAUSTED, INSTALLATION_GONE
from github_app.queue.event import QueuedEvent
from github_app.queue.memory import EventQueue
from github_app.queue.retry import RetryPolicy

log = logging.getLogger(__name__)

Handler = Callable[[QueuedEvent], Awaitable[bool]]
"""Processes one event; ``False``: it failed for good (the queue forgets its delivery)."""


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
    retried: int = 0
    deferred: int = 0
    exhausted: int = 0
    installations_gone: int = 0


class Dispatcher:
    """Runs ``handler`` on queued events, at most ``width`` at a time."""

    def __init__(
        self,
        queue: EventQueue,
        handler: Handler,
        width: int,
        *,
        paused: bool = False,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        gate: Gate | None = None,
    ):
        if width < 1:
            raise ValueError("width must be at least 1")
        self._queue = queue
        self._handler = handler
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock = clock  # the queue's clock: not-before times are compared with it
        self._retried = 0
        self._deferred = 0
        self._exhausted = 0
        self._gone = 0
        self._gate = gate
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
            retried=self._retried,
            deferred=self._deferred,
            exhausted=self._exhausted,
            installations_gone=self._gone,
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
                if self._gate is not None and not self._gate.allow():
                    # GitHub is failing or asked us to wait: events stay queued till the gate opens
                    closed_for = max(0.01, self._gate.wait_hint())
                else:
                    item = self._queue.take()
                    if item is not None:
                        return item
            self._wakeup = anyio.Event()
            # A retried or deferred event becomes takeable by itself when its time comes;
            # a closed gate (breaker open, retry-after pause) is looked at again when it may open.
            # While the gate is closed, only the gate matters: an overdue event cannot be taken
            # before it opens, and waiting on it would spin.
            wait: float | None
            if closed_for is not None:
                wait = closed_for
            else:
                wait = None if self._paused else self._queue.next_due_in()
            with anyio.move_on_after(wait):
                await self._wakeup.wait()

    async def _run_one(self, item: QueuedEvent, token: object) -> None:
        try:
            ok = await self._handler(item)
        except Deferred as exc:
            self._deferred += 1
            self._queue.defer(item, exc.until)
            log.info("event %s deferred: %s", item.envelope.delivery_id, exc.reason)
        except RetryableGitHubError as exc:
            self._retry_or_give_up(item, exc)
        except InstallationGone as exc:
            self._installation_gone(item, exc)
        except anyio.get_cancelled_exc_class():
            # Cut off by a shutdown timeout: it did not finish, so it counts as still queued.
            self._queue.defer(item, self._clock())
            raise
        except Exception:
            # The handler reports its own failures; this is the last line of defence.
            self._crashed += 1
            log.exception("event %s crashed its handler", item.envelope.delivery_id)
            self._queue.done(item)
        else:
            self._queue.done(item, failed=not ok)
        finally:
            self._limiter.release_on_behalf_of(token)
            self._in_flight -= 1
            self._finished += 1
            if self._in_flight == 0:
                self._idle.set()
            self.notify()

    def _retry_or_give_up(self, item: QueuedEvent, exc: RetryableGitHubError) -> None:
        delivery = item.envelope.delivery_id
        if self._retry.exhausted(item.attempts):
            self._exhausted += 1
            self._queue.dead_letter(item, EXHAUSTED, str(exc))
            log.error("event %s dead-lettered after %d attempts: %s", delivery, item.attempts, exc)
            return
        delay = self._retry.delay(item.attempts, exc.retry_after)
        self._retried += 1
        self._queue.retry(item, self._clock() + delay, str(exc))
        log.warning(
            "event %s failed (attempt %d), retrying in %.2fs: %s",
            delivery,
            item.attempts,
            delay,
            exc,
        )

    def _installation_gone(self, item: QueuedEvent, exc: InstallationGone) -> None:
        self._gone += 1
        installation = item.envelope.installation_id
        self._queue.dead_letter(item, INSTALLATION_GONE, str(exc))
        others = self._queue.dead_letter_installation(installation, INSTALLATION_GONE, str(exc))
        log.error(
            "installation %s is gone: event %s and %d queued event(s) dead-lettered: %s",
            installation,
            item.envelope.delivery_id,
            others,
            exc,
        )

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
        return self.cancel_running()

    def cancel_running(self) -> int:
        """Cancel the events still running (they go back to the queue); returns how many."""
        unfinished = self._in_flight
        if unfinished and self._cancel_scope is not None:
            self._cancel_scope.cancel()
        return unfinished
