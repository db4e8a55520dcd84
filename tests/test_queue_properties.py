"""Property test of MemoryQueue over random operation sequences (hypothesis state machine).

Whatever happens (offers beyond the bounds, retries, deferrals, expiry, an
installation going away, re-drives, purges), every admitted event is at any
time in exactly one place: still queued, in flight, processed, or dead-lettered;
no event is handed out twice at once, nor two events of one issue; the figures
``stats()`` keeps as events come and go (depth and bytes per level, waiting per
installation, the oldest wait) equal a recount of the queued events at every step;
and once the clock runs far enough every queued event comes out.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from github_app.queue.dead_letters import DeadLetterQueue
from github_app.queue.event import QueuedEvent
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority
from tests.helpers_unit import envelope

TTL = {Priority.CRITICAL: 400.0, Priority.HIGH: 200.0, Priority.NORMAL: 200.0, Priority.LOW: 50.0}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.queue = MemoryQueue(
            12,
            10**6,
            clock=self.clock,
            ttl=TTL,
            ageing=30.0,
            dead_letters=DeadLetterQueue(10**6),
        )
        self.place: dict[str, str] = {}  # delivery id -> queued | in_flight | processed | dead
        # delivery id -> (priority, installation, compressed size, clock at its admission)
        self.admitted: dict[str, tuple[Priority, int, int, float]] = {}
        self.in_flight: dict[str, QueuedEvent] = {}
        self.next_id = 0

    # --- bookkeeping ------------------------------------------------------------------------

    def sync_dead_letters(self) -> None:
        """Events the queue dead-lettered by itself (expired, installation gone)."""
        for entry in self.queue.list_dead_letters():
            if self.place[entry.delivery_id] != "dead":
                assert self.place[entry.delivery_id] == "queued", entry
                self.place[entry.delivery_id] = "dead"

    def taken(self, item: QueuedEvent) -> None:
        delivery = item.envelope.delivery_id
        assert self.place[delivery] == "queued", f"{delivery} handed out while {self.place}"
        key = item.envelope.issue_key
        if key is not None:
            running = {i.envelope.issue_key for i in self.in_flight.values()}
            assert key not in running, f"two events of issue {key} at once"
        self.place[delivery] = "in_flight"
        self.in_flight[delivery] = item

    # --- operations -------------------------------------------------------------------------

    @rule(
        installation=st.integers(1, 3),
        issue=st.none() | st.integers(1, 3),
        priority=st.sampled_from(list(Priority)),
    )
    def offer(self, installation: int, issue: int | None, priority: Priority) -> None:
        self.next_id += 1
        delivery = f"d{self.next_id}"
        event = envelope(
            delivery,
            installation_id=installation,
            repository=f"org{installation}/repo",
            issue_number=issue,
        )
        admission = self.queue.offer(event, priority)
        if admission.admitted:
            self.place[delivery] = "queued"
            self.admitted[delivery] = (priority, installation, len(event.payload), self.clock.now)

    @rule()
    def take(self) -> None:
        item = self.queue.take()
        self.sync_dead_letters()
        if item is not None:
            self.taken(item)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), outcome=st.sampled_from(["done", "retry", "defer", "dead"]))
    def settle(self, data: st.DataObject, outcome: str) -> None:
        delivery = data.draw(st.sampled_from(sorted(self.in_flight)))
        item = self.in_flight.pop(delivery)
        delay = data.draw(st.floats(0, 100))
        if outcome == "done":
            self.queue.done(item)
            self.place[delivery] = "processed"
        elif outcome == "retry":
            self.queue.retry(item, self.clock.now + delay, "GitHub answered 502")
            self.place[delivery] = "queued"
        elif outcome == "defer":
            self.queue.defer(item, self.clock.now + delay)
            self.place[delivery] = "queued"
        else:
            self.queue.dead_letter(item, "exhausted", "GitHub answered 502")
            self.place[delivery] = "dead"

    @rule(seconds=st.floats(0, 120))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(installation=st.integers(1, 3))
    def installation_gone(self, installation: int) -> None:
        self.queue.dead_letter_installation(installation, "installation_gone", "404")
        self.sync_dead_letters()

    @rule(data=st.data())
    def redrive_some(self, data: st.DataObject) -> None:
        dead = sorted(d for d, p in self.place.items() if p == "dead")
        if not dead:
            return
        chosen = data.draw(st.lists(st.sampled_from(dead), max_size=3, unique=True))
        before = {e.delivery_id for e in self.queue.list_dead_letters()}
        moved = self.queue.redrive(chosen)
        after = {e.delivery_id for e in self.queue.list_dead_letters()}
        assert before - after <= set(chosen)
        assert len(before - after) == moved
        for delivery in before - after:
            self.place[delivery] = "queued"
            # a re-driven event is a new arrival
            self.admitted[delivery] = (*self.admitted[delivery][:3], self.clock.now)

    @rule(data=st.data())
    def purge_some(self, data: st.DataObject) -> None:
        dead = sorted(d for d, p in self.place.items() if p == "dead")
        if dead:
            delivery = data.draw(st.sampled_from(dead))
            assert self.queue.purge_dead_letters([delivery]) == 1
            self.place[delivery] = "purged"

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def every_admitted_event_is_in_exactly_one_place(self) -> None:
        stats = self.queue.stats()
        queued = sum(1 for p in self.place.values() if p == "queued")
        assert len(self.queue) == stats.depth == queued
        assert stats.in_flight == len(self.in_flight)
        assert sum(stats.depth_by_priority.values()) == queued
        waiting = [d for d, p in self.place.items() if p == "queued"]
        assert sorted(self.queue.waiting_delivery_ids()) == sorted(waiting)
        assert sum(stats.waiting_by_installation.values()) == queued
        dead = {d for d, p in self.place.items() if p == "dead"}
        assert {e.delivery_id for e in self.queue.list_dead_letters()} == dead
        assert stats.depth + stats.in_flight <= 12  # the bound holds, retries included
        assert 0 <= stats.delayed <= stats.depth
        assert (self.queue.next_due_in() is None) == (stats.delayed == 0)
        # and room is given back exactly when an event leaves (no leak, no double count)
        assert self.queue.accepts(Priority.CRITICAL) == (stats.depth + stats.in_flight < 12)

    @invariant()
    def kept_figures_equal_a_recount(self) -> None:
        stats = self.queue.stats()
        queued = [self.admitted[d] for d, p in self.place.items() if p == "queued"]
        assert stats.depth_by_priority == {
            level.name: sum(1 for p, _, _, _ in queued if p is level) for level in Priority
        }
        assert stats.bytes_by_priority == {
            level.name: sum(size for p, _, size, _ in queued if p is level) for level in Priority
        }
        assert stats.bytes == sum(size for _, _, size, _ in queued)
        by_installation: dict[int | None, int] = {}
        for _, installation, _, _ in queued:
            by_installation[installation] = by_installation.get(installation, 0) + 1
        assert stats.waiting_by_installation == by_installation
        oldest = min((at for _, _, _, at in queued), default=None)
        assert stats.oldest_wait == (None if oldest is None else self.clock.now - oldest)

    def teardown(self) -> None:
        """Run the clock on: every queued event comes out, processed or expired, exactly once."""
        for item in list(self.in_flight.values()):
            self.queue.done(item)
            self.place[item.envelope.delivery_id] = "processed"
        self.in_flight.clear()
        for _ in range(1000):
            if len(self.queue) == 0:
                break
            self.clock.now += 60.0
            while (next_item := self.queue.take()) is not None:
                self.sync_dead_letters()
                self.taken(next_item)
                self.queue.done(next_item)
                self.in_flight.clear()
                self.place[next_item.envelope.delivery_id] = "processed"
            self.sync_dead_letters()
        assert len(self.queue) == 0
        assert set(self.place.values()) <= {"processed", "dead", "purged"}
        stats = self.queue.stats()
        assert stats.processed == sum(1 for p in self.place.values() if p == "processed")


QueueMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_queue_state_machine = QueueMachine.TestCase
