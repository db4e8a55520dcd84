"""What recovery remembers between rounds and restarts, and what it asks the queue.

Three facts, nothing else:

- was a delivery ever admitted? (the queue's record of delivery ids: a
  redelivery of an admitted event would be answered as a duplicate anyway,
  so asking for it only spends GitHub's budget);
- the checkpoint: the delivery-log time back to which the last round looked
  and left nothing unsettled, so the next round reads only what is newer;
- the redeliveries requested per ``guid``: how many, when last, given up or
  not, so a guid is requested at most once per window and at most
  ``RECOVERY_MAX_ATTEMPTS`` times.

Reads are synchronous (the planner runs between awaits); writes are awaited,
so a store on disk can commit them before the round goes on.
``MemoryRecoveryStore`` keeps the last two in memory and asks the queue for
the first; the spool keeps them in its database; Redis (``redis_store``) keeps
them for every replica, each reading its copy afresh when a round begins.

A round runs inside ``exclusive()``: where replicas share the store, only one
of them runs a round at a time and the others skip theirs; alone, a process
always may (``alone``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Redeliveries requested for one guid: how many, the last one's wall-clock time, and
    whether recovery gave up on it (``RECOVERY_MAX_ATTEMPTS`` requests all failed)."""

    attempts: int
    last_at: float
    given_up: bool = False


class RecoveryStore(Protocol):
    def knows(self, delivery_id: str) -> bool:
        """Was this delivery (its ``X-GitHub-Delivery``, the log's ``guid``) admitted?"""
        ...

    def checkpoint(self) -> float | None:
        """The delivery-log time (epoch) the next round reads back to; ``None`` at first."""
        ...

    def request_record(self, guid: str) -> RequestRecord | None: ...

    async def save_checkpoint(self, at: float) -> None: ...

    async def save_request(self, guid: str, record: RequestRecord) -> None: ...

    async def forget_requests(self, before: float) -> None:
        """Drop records last requested before ``before`` (GitHub no longer keeps them)."""
        ...

    async def look_up(self, guids: Collection[str]) -> None:
        """Before a round's plan: learn which of ``guids`` any replica sharing the queue
        admitted, so ``knows`` answers for them (a store of one process knows already)."""
        ...

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        """The right to run a round now: ``True`` for the block when this process has it (the
        reads above are then up to date), ``False`` when another replica is running one."""
        ...


@asynccontextmanager
async def alone() -> AsyncIterator[bool]:
    """``exclusive`` of a store no other process shares: always granted."""
    yield True


class MemoryRecoveryStore:
    """Checkpoint and requests in memory (lost on restart, or seeded from a read-only copy);
    admissions from the queue. The stores that keep them elsewhere keep this copy too (reads
    are synchronous) and write through to their storage before changing it."""

    def __init__(
        self,
        knows: Callable[[str], bool],
        *,
        checkpoint: float | None = None,
        requests: dict[str, RequestRecord] | None = None,
    ) -> None:
        self._knows = knows
        self._checkpoint = checkpoint
        self._requests: dict[str, RequestRecord] = dict(requests or {})

    def knows(self, delivery_id: str) -> bool:
        return self._knows(delivery_id)

    def checkpoint(self) -> float | None:
        return self._checkpoint

    def request_record(self, guid: str) -> RequestRecord | None:
        return self._requests.get(guid)

    async def save_checkpoint(self, at: float) -> None:
        self._checkpoint = at

    async def save_request(self, guid: str, record: RequestRecord) -> None:
        self._requests[guid] = record

    async def forget_requests(self, before: float) -> None:
        self._drop(self._older_than(before))

    def _older_than(self, before: float) -> list[str]:
        return [guid for guid, record in self._requests.items() if record.last_at < before]

    def _drop(self, guids: Collection[str]) -> None:
        for guid in guids:
            self._requests.pop(guid, None)

    async def look_up(self, guids: Collection[str]) -> None:
        """The queue of this process knows them all."""

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        return alone()

    def __len__(self) -> int:
        return len(self._requests)
