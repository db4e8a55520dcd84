"""One issue on one replica at a time, in arrival order: this replica's leases on issues.

Every admitted event of an issue is in the issue's lane in Redis (arrival
numbers, in order) until it is finished. A replica's events of an issue wait
here, parked, until it holds the issue's lease, which it may take only while
the front of the lane is one of its own events (the ``LEASE`` script): an
earlier event of the issue goes first wherever it waits. With the lease, the
replica's events from the front of the lane on enter its scheduler, in lane
order; it renews the lease while it has any there and releases it with the
last, so a replica holding the issue's next event can take it. A dead
replica's lease times out when its events may be claimed.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as redis

from github_app.envelope import IssueKey
from github_app.queue.redis_outbox import Outbox
from github_app.queue.redis_scripts import LEASE, RELEASE, RENEW, EventRecord, Keys

log = logging.getLogger(__name__)


class IssueLeases:
    """The leases this replica holds, its events parked until then, and those of each issue
    in its scheduler (the lease goes with the last of them)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, replica_id: str, timeout: float, outbox: Outbox
    ) -> None:
        self._client = client
        self._keys = keys
        self._me = replica_id
        self._milliseconds = max(100, int(timeout * 1000))
        self._outbox = outbox
        self._held: set[IssueKey] = set()
        self._parked: dict[IssueKey, dict[int, EventRecord]] = {}
        self._placed: dict[IssueKey, set[int]] = {}

    def __len__(self) -> int:
        return len(self._held)

    @property
    def parked(self) -> int:
        """Events waiting for their issue's lease (an earlier event, or another replica)."""
        return sum(len(waiting) for waiting in self._parked.values())

    def park(self, key: IssueKey, record: EventRecord) -> None:
        self._parked.setdefault(key, {})[record.seq] = record

    async def take(self) -> list[EventRecord]:
        """Ask for the leases of the parked events' issues; the events now free, in lane order."""
        wanted = list(self._parked)
        if not wanted:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key in wanted:
            ours = [*self._placed.get(key, ()), *self._parked[key]]
            pipe.eval(
                LEASE,
                2,
                self._keys.lease(key),
                self._keys.lane(key),
                self._me,
                self._milliseconds,
                self._keys.prefix,
                *ours,
            )
        answers: list[Any] = await pipe.execute()
        free: list[EventRecord] = []
        for key, (granted, lane) in zip(wanted, answers, strict=True):
            if not granted:
                continue
            self._held.add(key)
            # While the scripts ran, the parked events may have been claimed by another replica
            # (``drop``) or given back (``release_all``): read what is still here now.
            waiting = self._parked.get(key, {})
            placed = self._placed.get(key, set())
            freed = 0
            for seq in (int(member) for member in lane):
                if seq in placed:
                    continue
                record = waiting.pop(seq, None)
                if record is None:  # the next event of the issue is not here: it goes first
                    break
                free.append(record)
                freed += 1
            if not waiting:
                self._parked.pop(key, None)
            if not freed and not placed:
                # Granted for events that left meanwhile: nothing here will ever ``left`` it,
                # so it would be renewed for good and hold the issue from every other replica.
                self._held.discard(key)
                self._outbox.write(RELEASE, [self._keys.lease(key)], [self._me], "a lease")
        return free

    def placed(self, key: IssueKey, seq: int) -> None:
        self._placed.setdefault(key, set()).add(seq)

    def left(self, key: IssueKey, seq: int) -> None:
        """An event of this issue left the scheduler: with the last one goes the lease."""
        placed = self._placed.get(key)
        if placed is None:
            return
        placed.discard(seq)
        if placed:
            return
        del self._placed[key]
        if key in self._held:
            self._held.discard(key)
            self._outbox.write(RELEASE, [self._keys.lease(key)], [self._me], "a lease")

    async def renew(self) -> None:
        held = list(self._held)
        if not held:
            return
        pipe = self._client.pipeline(transaction=False)
        for key in held:
            pipe.eval(RENEW, 1, self._keys.lease(key), self._me, self._milliseconds)
        for key, kept in zip(held, await pipe.execute(), strict=True):
            if not kept:
                log.warning("the lease on issue %s#%s went to another replica", *key)

    def drop(self, seqs: set[int]) -> None:
        """Parked events another replica claimed: they wait here no more."""
        for key in list(self._parked):
            waiting = self._parked[key]
            for seq in seqs & waiting.keys():
                del waiting[seq]
            if not waiting:
                del self._parked[key]

    def release_all(self) -> None:
        """Shutdown: every lease goes (the events went back to the shared queue)."""
        for key in self._held:
            self._outbox.write(RELEASE, [self._keys.lease(key)], [self._me], "a lease")
        self._held.clear()
        self._parked.clear()
        self._placed.clear()
