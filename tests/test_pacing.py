"""The pacer: one write at a time per principal, the most urgent waiting writer first."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from github_app.github.pace_store import Booking, LocalPaceStore
from github_app.github.pacing import LATE_AFTER, InstallationPacer, serving
from github_app.github.secondary_limits import SecondaryLimits
from github_app.queue.priority import Priority

pytestmark = pytest.mark.anyio


async def test_writes_never_overlap_and_a_waiting_live_write_goes_before_backfill() -> None:
    pacer = InstallationPacer(write_interval=0.0)
    order: list[str] = []
    on_wire = 0
    most = 0
    first_in = anyio.Event()
    release = anyio.Event()

    async def write(name: str, urgency: int) -> None:
        nonlocal on_wire, most
        with serving(urgency):
            async with pacer.write("POST"):
                on_wire += 1
                most = max(most, on_wire)
                order.append(name)
                if name == "first":
                    first_in.set()
                    await release.wait()
                await anyio.lowlevel.checkpoint()
                on_wire -= 1

    async with anyio.create_task_group() as group:
        group.start_soon(write, "first", Priority.LOW)
        await first_in.wait()
        for number in range(3):
            group.start_soon(write, f"backfill-{number}", Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(write, "live", Priority.HIGH)
        await anyio.wait_all_tasks_blocked()
        assert pacer.waiting_writers == 4
        release.set()
    assert most == 1
    assert order == ["first", "live", "backfill-0", "backfill-1", "backfill-2"]
    assert pacer.waiting_writers == 0


async def test_a_cancelled_waiting_writer_leaves_the_line() -> None:
    pacer = InstallationPacer(write_interval=0.0)
    done: list[str] = []
    holding = anyio.Event()
    release = anyio.Event()

    async def hold() -> None:
        async with pacer.write("POST"):
            holding.set()
            await release.wait()
        done.append("hold")

    async with anyio.create_task_group() as group:
        group.start_soon(hold)
        await holding.wait()
        with anyio.move_on_after(0.01):
            await pacer.write_turn()
            done.append("never")
        assert pacer.waiting_writers == 0
        release.set()
    assert await pacer.write_turn() == pytest.approx(0.0, abs=0.05)
    assert done == ["hold"]


async def test_slow_down_lowers_the_pace_and_counts() -> None:
    now = [100.0]
    pacer = InstallationPacer(write_interval=1.0, clock=lambda: now[0])
    await pacer.slow_down()
    assert pacer.interval == 2.0
    assert pacer.slowed == 1
    now[0] += 3601.0
    assert pacer.interval == 1.0


class SteppedTime:
    """A monotonic clock moved only by the sleeps: each sleeper waits for ``release``, then
    the clock is at its instant, plus ``late`` seconds (a busy event loop)."""

    def __init__(
        self, *, late: float = 0.0, hold: bool = False, lates: tuple[float, ...] = ()
    ) -> None:
        self.now = 0.0
        self.late = late
        self.lates = list(lates)  # the first sleeps' own lateness, then ``late``
        self.release = anyio.Event()
        if not hold:
            self.release.set()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + seconds + (self.lates.pop(0) if self.lates else self.late)
        await self.release.wait()
        self.now = max(self.now, target)


class CountingStore(LocalPaceStore):
    """The local budget, counting what it booked."""

    def __init__(self, time: SteppedTime) -> None:
        super().__init__(SecondaryLimits(write_interval=1.0), time.clock)
        self.booked: list[float] = []

    def book_now(self, method: str, *, content: bool = False) -> Booking:
        booking = super().book_now(method, content=content)
        self.booked.append(booking.at)
        return booking


async def test_a_live_write_takes_the_instant_a_waiting_backfill_write_booked() -> None:
    time = SteppedTime(hold=True)
    store = CountingStore(time)
    pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
    sent: list[tuple[str, float]] = []

    async def write(name: str, urgency: int) -> None:
        with serving(urgency):
            async with pacer.write("POST"):
                sent.append((name, time.now))

    await write("first", Priority.LOW)
    async with anyio.create_task_group() as group:
        group.start_soon(write, "backfill", Priority.LOW)
        await anyio.wait_all_tasks_blocked()  # booked 1.0, asleep until then
        group.start_soon(write, "live", Priority.HIGH)
        await anyio.wait_all_tasks_blocked()
        time.release.set()
    assert sent == [("first", 0.0), ("live", 1.0), ("backfill", 2.0)]
    assert store.booked == [0.0, 1.0, 2.0]  # no instant booked for nothing


async def test_a_write_that_wakes_too_late_books_the_next_instant_once() -> None:
    time = SteppedTime(late=0.2)  # every sleep ends 0.2 s after its instant
    store = CountingStore(time)
    pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
    first = await pacer.write_turn()
    second = await pacer.write_turn()
    # 1.0 was missed by more than LATE_AFTER: not taken, 2.0 booked; missed too, taken anyway
    assert store.booked == [0.0, 1.0, 2.0]
    assert (first, second) == (0.0, pytest.approx(2.2))
    assert LATE_AFTER < 0.2


async def test_in_one_process_a_write_waits_an_interval_after_the_last_one_went() -> None:
    time = SteppedTime(lates=[0.03])  # the second write goes 30 ms after its instant
    store = CountingStore(time)
    pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
    sent = []
    for _ in range(3):
        async with pacer.write("POST"):
            sent.append(time.now)
    assert store.booked == [0.0, 1.0, pytest.approx(2.03)]  # a second after the answer at 1.03
    assert sent == [0.0, 1.03, pytest.approx(2.03)]


async def test_the_next_write_is_booked_an_interval_after_the_previous_answer() -> None:
    time = SteppedTime()
    store = CountingStore(time)
    pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
    sent = []
    for _ in range(3):
        async with pacer.write("POST"):
            sent.append(time.now)
            time.now += 0.25  # on the wire until GitHub answers
    # GitHub counts a write when it arrives, anywhere on the way: an interval from the
    # send would let two arrive closer than that; from the answer, never.
    assert sent == [0.0, 1.25, 2.5]
    assert store.booked == [0.0, 1.25, 2.5]
    assert store.write_delay() == pytest.approx(1.0)  # the next: an interval after 2.75


async def test_a_slow_answer_pushes_the_next_write_and_a_waiting_writer_books_after_it() -> None:
    time = SteppedTime()
    store = CountingStore(time)
    pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
    sent: list[tuple[str, float]] = []
    answer = anyio.Event()

    async def write(name: str) -> None:
        async with pacer.write("POST"):
            sent.append((name, time.now))
            if name == "slow":
                await answer.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(write, "slow")
        await anyio.wait_all_tasks_blocked()
        group.start_soon(write, "next")
        await anyio.wait_all_tasks_blocked()
        assert store.booked == [0.0]  # the next waits for the answer before it books
        time.now = 3.5  # GitHub answers the slow write 3.5 s after it went
        answer.set()
    assert sent == [("slow", 0.0), ("next", 4.5)]
    assert store.booked == [0.0, 4.5]


async def test_a_write_cut_off_on_the_wire_counts_as_answered_when_it_was_given_up() -> None:
    time = SteppedTime()
    store = CountingStore(time)
    pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
    with anyio.move_on_after(0) as scope:  # cancelled while on the wire: it may have arrived
        async with pacer.write("POST"):
            time.now = 2.0
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    async with pacer.write("POST"):
        pass
    assert store.booked == [0.0, 3.0]


async def write_unanswered(pacer: InstallationPacer, on_wire: anyio.Event) -> None:
    """A write GitHub does not answer (until cancelled)."""
    async with pacer.write("POST"):
        on_wire.set()
        await anyio.sleep_forever()


async def test_new_work_waits_for_writers_in_line_only_when_their_turns_are_some_time_off() -> None:
    """At a zero interval writers still wait in line (one write on the wire at a time), but
    their turns come as each answer does: no wait (a wait of 0 s would be handed back by the
    queue at once, and again, while the line lasts). A spent allowance is a real wait."""
    waits: list[float | None] = []
    for limits in (
        SecondaryLimits(write_interval=0.0),
        SecondaryLimits(write_interval=0.25),
        SecondaryLimits(write_interval=0.0, points_per_minute=5),  # a write is 5 points
    ):
        time = SteppedTime(hold=True)
        store = LocalPaceStore(limits, time.clock)
        pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
        on_wire = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(write_unanswered, pacer, on_wire)
            await on_wire.wait()
            assert pacer.turn_wait(Priority.NORMAL, 1) is None  # nobody in line yet
            group.start_soon(pacer.write_turn)
            await anyio.wait_all_tasks_blocked()
            assert pacer.writers_ahead_of(Priority.NORMAL) == 1
            assert pacer.turn_wait(Priority.NORMAL, 2) is None  # fewer than the most allowed
            waits.append(pacer.turn_wait(Priority.NORMAL, 1))
            group.cancel_scope.cancel()
    # 0.5: the interval after the last write booked and one per writer on the wire or in
    # line, less one (until about when the last but one goes)
    assert waits == [None, 0.5, 60.0]


async def test_work_held_for_the_writers_turns_lines_up_an_interval_apart_per_urgency() -> None:
    """Held work comes back in line: the k-th held an interval after the one before it, not all
    at the instant the writers ahead have gone. More urgent work lines up only behind work as
    urgent, less urgent work behind it too; a line whose last instant passed starts afresh."""
    time = SteppedTime(hold=True)
    store = LocalPaceStore(SecondaryLimits(write_interval=0.25), time.clock)
    pacer = InstallationPacer(store=store, clock=time.clock, sleep=time.sleep)
    on_wire = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(write_unanswered, pacer, on_wire)
        await on_wire.wait()
        group.start_soon(pacer.write_turn)
        await anyio.wait_all_tasks_blocked()
        own = pacer.turn_wait(Priority.LOW, 1)
        burst = [pacer.hold(Priority.LOW, 1) for _ in range(4)]
        urgent = [pacer.hold(Priority.HIGH, 1) for _ in range(2)]
        after_urgent = pacer.hold(Priority.LOW, 1)
        assert pacer.hold(Priority.LOW, 2) is None  # fewer writers waiting than the most allowed
        time.now = 2.0  # every line's last instant has passed
        afresh = (pacer.turn_wait(Priority.LOW, 1), pacer.hold(Priority.LOW, 1))
        group.cancel_scope.cancel()
    assert own == 0.5  # an interval after the write on the wire, one for the writer in line
    assert burst == [0.5, 0.75, 1.0, 1.25]
    assert urgent == [0.5, 0.75]  # not behind the less urgent ones
    assert after_urgent == 1.5  # behind both lines
    assert afresh == (0.25, 2.25)  # from now: its own wait (the write delay has passed)
