"""Which events to ask GitHub to redeliver, given the delivery log and what is remembered.

Pure and synchronous, clock passed in: the loop reads the log and the store,
this module decides, and every guid not requested carries its reason.

Per ``guid`` (one event; its attempts are the original delivery and any
redeliveries), in this order:

1. an attempt got a 2xx: delivered, nothing to do (``delivered``);
2. ``--event`` asked for other events (``other event``);
3. the queue admitted it (a 2xx GitHub did not see, e.g. a slow answer):
   ``already admitted``;
4. given up before (``given up``); requested ``max_attempts`` times and the
   last window is over: given up now (logged once, remembered);
5. requested less than a window ago, or less than ``REDELIVERY_GRACE`` ago
   with no attempt logged since: its redelivery may still be on its way
   (``requested this window``);
6. otherwise it is requested, oldest first (events of one issue come back in
   their order), up to the round's cap (``over this round's cap``).

The checkpoint moves to the newest attempt seen (less a small overlap, since
GitHub may log an attempt a moment late), but never past a failed guid left
waiting (5, 6 past the cap, or a request that could not be sent or was
refused): the next round must see it again. A guid requested now needs no hold: its redelivery
is logged as a newer attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from github_app.github.hook_deliveries import LoggedDelivery
from github_app.recovery.store import RequestRecord

CHECKPOINT_OVERLAP = 60.0  # seconds of the log read twice, for attempts logged a moment late
# GitHub redelivers within seconds of a request; until an attempt is logged after it, a request
# is not repeated for this long even when the window is shorter (a short RECOVERY_INTERVAL)
REDELIVERY_GRACE = 60.0


class Skip(StrEnum):
    """Why a guid seen in the log is not requested now."""

    DELIVERED = "delivered"
    OTHER_EVENT = "other event"
    ADMITTED = "already admitted"
    GIVEN_UP = "given up"
    REQUESTED = "requested this window"
    OVER_CAP = "over this round's cap"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A failed event: the attempt to redeliver (its newest), and what the log says of it."""

    guid: str
    delivery_id: int
    event: str
    action: str | None
    first_at: float  # its oldest attempt seen
    last_at: float  # its newest attempt seen
    attempts: int  # redeliveries requested before this round

    @property
    def name(self) -> str:
        return f"{self.event}.{self.action}" if self.action else self.event


@dataclass(frozen=True)
class Plan:
    """The decision for one round."""

    seen: int  # attempts read
    guids: int  # distinct events among them
    failed: int  # events no attempt delivered
    to_request: tuple[Candidate, ...]
    give_up: tuple[Candidate, ...]  # reached the attempt limit in this round
    waiting: tuple[Candidate, ...]  # failed, unsettled, not requested now: hold the checkpoint
    skipped: Mapping[Skip, int] = field(default_factory=dict)
    newest: float | None = None  # newest attempt seen

    def checkpoint(
        self, previous: float | None, unrequested: Iterable[Candidate] = ()
    ) -> float | None:
        """Where the next round may start reading, if ``unrequested`` (of ``to_request``) were
        not sent; never earlier than ``previous``."""
        if self.newest is None:
            return previous
        at = self.newest - CHECKPOINT_OVERLAP
        holds = [c.last_at for c in (*self.waiting, *unrequested)]
        if holds:
            at = min(at, min(holds))
        return at if previous is None else max(previous, at)


def plan_round(
    deliveries: Iterable[LoggedDelivery],
    *,
    knows: Callable[[str], bool],
    record: Callable[[str], RequestRecord | None],
    now: float,
    window: float,
    max_attempts: int,
    max_requests: int,
    event: str | None = None,
) -> Plan:
    """Group ``deliveries`` (one round's attempts) by guid and decide each; see the module."""
    groups: dict[str, list[LoggedDelivery]] = {}
    seen = 0
    newest: float | None = None
    for delivery in deliveries:
        seen += 1
        groups.setdefault(delivery.guid, []).append(delivery)
        if newest is None or delivery.delivered_at > newest:
            newest = delivery.delivered_at
    skipped: dict[Skip, int] = {}
    eligible: list[Candidate] = []
    give_up: list[Candidate] = []
    waiting: list[Candidate] = []
    failed = 0

    def skip(reason: Skip) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for guid, attempts in groups.items():
        if any(a.ok for a in attempts):
            skip(Skip.DELIVERED)
            continue
        failed += 1
        latest = max(attempts, key=lambda a: (a.delivered_at, a.id))
        if event is not None and latest.event != event:
            skip(Skip.OTHER_EVENT)
            continue
        if knows(guid):
            skip(Skip.ADMITTED)
            continue
        previous = record(guid)
        candidate = Candidate(
            guid=guid,
            delivery_id=latest.id,
            event=latest.event,
            action=latest.action,
            first_at=min(a.delivered_at for a in attempts),
            last_at=latest.delivered_at,
            attempts=previous.attempts if previous else 0,
        )
        if previous is not None and previous.given_up:
            skip(Skip.GIVEN_UP)
        elif previous is not None and _on_its_way(previous, latest, now, window):
            skip(Skip.REQUESTED)
            waiting.append(candidate)
        elif previous is not None and previous.attempts >= max_attempts:
            skip(Skip.GIVEN_UP)
            give_up.append(candidate)
        else:
            eligible.append(candidate)
    eligible.sort(key=lambda c: (c.first_at, c.delivery_id))
    over = eligible[max_requests:]
    if over:
        skipped[Skip.OVER_CAP] = len(over)
    return Plan(
        seen=seen,
        guids=len(groups),
        failed=failed,
        to_request=tuple(eligible[:max_requests]),
        give_up=tuple(give_up),
        waiting=(*waiting, *over),
        skipped=skipped,
        newest=newest,
    )


def failed_guids(deliveries: Iterable[LoggedDelivery]) -> set[str]:
    """The events no attempt delivered: those the plan asks ``knows`` about."""
    seen: set[str] = set()
    delivered: set[str] = set()
    for delivery in deliveries:
        seen.add(delivery.guid)
        if delivery.ok:
            delivered.add(delivery.guid)
    return seen - delivered


def _on_its_way(previous: RequestRecord, latest: LoggedDelivery, now: float, window: float) -> bool:
    """May the redelivery asked for last still come? Within the window, yes; and within the
    grace while GitHub has logged no attempt since the request (it did not try yet)."""
    since = now - previous.last_at
    # GitHub logs whole seconds: an attempt in the second of the request may be its answer
    nothing_since = latest.delivered_at + 1.0 < previous.last_at
    return since < window or (nothing_since and since < REDELIVERY_GRACE)
