"""One issue on one replica at a time: this replica's leases on issues in the shared queue.

A replica takes an issue's lease in Redis (``SET NX PX``, in the ``LEASE``
script) before any event of that issue enters its scheduler, renews it while
it holds events of the issue, and releases it when it holds none. An event
read while another replica holds its issue's lease waits here, parked, in
arrival order, until the lease is free (that replica released it, or died
and it timed out); the queue asks again every few tenths of a second.
"""

from __future__ import annotations

import logging
from collections import Counter

import redis.asyncio as redis

from github_app.envelope import IssueKey
from github_app.queue.redis_outbox import Outbox
from github_app.queue.redis_scripts import LEASE, RELEASE, EventRecord, Keys

log = logging.getLogger(__name__)


class IssueLeases:
    """The leases this replica holds, the events parked for others', and the events it holds
    per issue (the lease goes with the last of them)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, replica_id: str, timeout: float, outbox: Outbox
    ) -> None:
        self._client = client
        self._keys = keys
        self._me = replica_id
        self._milliseconds = max(100, int(timeout * 1000))
        self._outbox = outbox
        self._held: set[IssueKey] = set()
        self._parked: dict[IssueKey, list[EventRecord]] = {}
        self._holding: Counter[IssueKey] = Counter()

    def __len__(self) -> int:
        return len(self._held)

    @property
    def parked(self) -> int:
        """Events waiting for an issue another replica works on."""
        return sum(len(waiting) for waiting in self._parked.values())

    def may_place(self, key: IssueKey) -> bool:
        """May an event of this issue enter the scheduler now (behind any parked before it)?"""
        return key in self._held and key not in self._parked

    def park(self, key: IssueKey, record: EventRecord) -> None:
        self._parked.setdefault(key, []).append(record)

    async def take(self) -> list[EventRecord]:
        """Ask for the leases of the parked events' issues; the events now free, in order."""
        wanted = [key for key in self._parked if key not in self._held]
        if wanted:
            pipe = self._client.pipeline(transaction=False)
            for key in wanted:
                pipe.eval(LEASE, 1, self._keys.lease(key), self._me, self._milliseconds)
            for key, got in zip(wanted, await pipe.execute(), strict=True):
                if got:
                    self._held.add(key)
        free: list[EventRecord] = []
        for key in [key for key in self._parked if key in self._held]:
            free += self._parked.pop(key)
        return free

    def drop(self, seqs: set[int]) -> None:
        """Parked events another replica claimed: they wait here no more."""
        for key in list(self._parked):
            kept = [record for record in self._parked[key] if record.seq not in seqs]
            if kept:
                self._parked[key] = kept
            else:
                del self._parked[key]

    def placed(self, key: IssueKey | None) -> None:
        if key is not None:
            self._holding[key] += 1

    def left(self, key: IssueKey | None) -> None:
        """An event of this issue left the scheduler: with the last one goes the lease."""
        if key is None:
            return
        self._holding[key] -= 1
        if self._holding[key] > 0:
            return
        del self._holding[key]
        if key not in self._parked and key in self._held:
            self._held.discard(key)
            self._outbox.write(RELEASE, [self._keys.lease(key)], [self._me], "a lease")

    async def renew(self) -> None:
        held = list(self._held)
        if not held:
            return
        pipe = self._client.pipeline(transaction=False)
        for key in held:
            pipe.eval(LEASE, 1, self._keys.lease(key), self._me, self._milliseconds)
        for key, kept in zip(held, await pipe.execute(), strict=True):
            if not kept:
                log.warning("the lease on issue %s#%s went to another replica", *key)

    def release_all(self) -> None:
        """Shutdown: every lease goes (the events went back to the shared queue)."""
        for key in self._held:
            self._outbox.write(RELEASE, [self._keys.lease(key)], [self._me], "a lease")
        self._held.clear()
        self._parked.clear()
        self._holding.clear()
