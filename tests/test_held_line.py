"""The line held events come back in: spaced per urgency, one instant kept per urgency."""

from __future__ import annotations

from github_app.github.held_line import HeldLine

LIVE, BACKFILL = 1, 3


def test_each_held_event_comes_back_an_interval_after_the_one_before_or_at_its_own_wait() -> None:
    line = HeldLine()
    placed = [line.place(BACKFILL, 10.0, interval=1.0, now=0.0) for _ in range(3)]
    later = line.place(BACKFILL, 20.0, interval=1.0, now=0.0)  # its own wait is later still
    assert placed == [10.0, 11.0, 12.0]
    assert later == 20.0
    assert line.place(BACKFILL, 10.0, interval=1.0, now=0.0) == 21.0


def test_a_live_event_is_not_lined_up_behind_backfill_but_backfill_is_behind_live() -> None:
    line = HeldLine()
    for _ in range(5):
        line.place(BACKFILL, 10.0, interval=1.0, now=0.0)
    assert line.place(LIVE, 10.0, interval=1.0, now=0.0) == 10.0
    assert line.place(LIVE, 10.0, interval=1.0, now=0.0) == 11.0
    line.place(LIVE, 30.0, interval=1.0, now=0.0)
    assert line.place(BACKFILL, 10.0, interval=1.0, now=0.0) == 31.0


def test_a_line_whose_last_instant_passed_starts_afresh_and_is_forgotten() -> None:
    line = HeldLine()
    line.place(LIVE, 5.0, interval=2.0, now=0.0)
    line.place(BACKFILL, 8.0, interval=2.0, now=0.0)
    assert len(line) == 2
    assert line.place(LIVE, 6.0, interval=2.0, now=5.0) == 6.0  # not 5.0 + 2.0
    assert len(line) == 2  # the passed live instant was replaced, the backfill one still waits
    line.place(LIVE, 9.5, interval=2.0, now=9.0)
    assert len(line) == 1  # only the live line is waiting now: nothing kept for what passed
