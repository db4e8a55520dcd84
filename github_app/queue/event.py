"""One admitted event and where it is: the record shared by the queue and its dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from github_app.envelope import Envelope
from github_app.queue.priority import Priority


class State(IntEnum):
    """Where an admitted event is."""

    LANE = 0  # behind an earlier event of its issue
    DELAYED = 1  # waiting for its not-before time (retry backoff, deferral)
    READY = 2  # eligible for ``take``
    IN_FLIGHT = 3  # taken, not settled yet
    FINISHED = 4  # processed or dead-lettered: the queue holds it no more


@dataclass(slots=True, eq=False)
class QueuedEvent:
    """An admitted envelope and the queue's bookkeeping about it.

    ``seq`` is its arrival order and its key in a durable backend; ``size`` is
    its compressed payload's length (what admission counts), kept apart from the
    payload because a spooled event's payload waits on disk, not in
    ``envelope.payload``. ``attempts`` counts the tries made (a deferral does not
    count). Which processors already succeeded is not kept here but per delivery
    (``queue.succeeded``), the one memory of it.
    """

    envelope: Envelope
    priority: Priority
    seq: int
    enqueued_at: float
    size: int
    attempts: int = 0
    not_before: float = 0.0
    last_error: str | None = None
    state: State = State.LANE
    gen: int = 0
    ready_since: float = 0.0
    age_entries: int = 0  # its entries in its level's ready-order queue (``memory._Level``)

    def __lt__(self, other: QueuedEvent) -> bool:
        return self.seq < other.seq
