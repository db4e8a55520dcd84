"""Turns the queue's changes into spool writes that need no answer (they ride the next group).

The queue, the delivery memory and the record of succeeded processors each
tell their changes to one ``SpoolJournal``; it writes them in the order they
happened. The queue's times are its own monotonic clock; the spool keeps
wall-clock times, which still mean something after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from github_app.queue.dead_letters import DeadLetter
from github_app.queue.event import QueuedEvent
from github_app.queue.spool import (
    GroupCommitter,
    clear_succeeded,
    delete_event,
    forget_delivery,
    mark_dead,
    record_succeeded,
    redrive_event,
    remember_delivery,
    update_attempts,
)


class SpoolJournal:
    """``QueueJournal``, ``DeliveryJournal`` and ``SucceededJournal`` onto one spool."""

    def __init__(
        self,
        committer: GroupCommitter,
        *,
        queue_clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._committer = committer
        self._queue_clock = queue_clock
        self._wall_clock = wall_clock

    def _wall(self, queue_time: float) -> float:
        if queue_time <= 0:
            return 0.0
        return self._wall_clock() + (queue_time - self._queue_clock())

    def _attempts(self, item: QueuedEvent) -> None:
        self._committer.write(
            [update_attempts(item.seq, item.attempts, self._wall(item.not_before), item.last_error)]
        )

    # QueueJournal

    def taken(self, item: QueuedEvent) -> None:
        self._attempts(item)

    def requeued(self, item: QueuedEvent) -> None:
        self._attempts(item)

    def finished(self, item: QueuedEvent) -> None:
        self._committer.write(delete_event(item.seq))

    def dead_lettered(self, entry: DeadLetter) -> None:
        item = entry.item
        op = mark_dead(
            item.seq, entry.reason, entry.dead_lettered_at, item.attempts, entry.last_error
        )
        self._committer.write([op])

    def redriven(self, old_seq: int, item: QueuedEvent) -> None:
        self._committer.write(redrive_event(old_seq, item.seq))

    def dropped(self, entries: Iterable[DeadLetter]) -> None:
        for entry in entries:
            self._committer.write(delete_event(entry.item.seq))

    # DeliveryJournal

    def remembered(self, delivery_id: str, at: float) -> None:
        self._committer.write([remember_delivery(delivery_id, at)])

    def forgotten(self, delivery_id: str) -> None:
        self._committer.write([forget_delivery(delivery_id, self._wall_clock())])

    # SucceededJournal

    def succeeded(self, delivery_id: str, processors: tuple[str, ...], at: float) -> None:
        self._committer.write([record_succeeded(delivery_id, processors, at)])

    def cleared(self, delivery_id: str) -> None:
        self._committer.write([clear_succeeded(delivery_id)])
