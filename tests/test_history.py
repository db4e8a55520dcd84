"""The dashboard's history ring: bounded, numbered, read from a number on (clock injected)."""

from __future__ import annotations

import pytest

from github_app.admin.history import History


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def filled(count: int, *, capacity: int = 5, step: float = 2.0) -> tuple[History, Clock]:
    clock = Clock()
    history = History(("depth", "rate"), capacity, clock=clock)
    for index in range(count):
        history.record({"depth": index, "rate": index / 4})
        clock.now += step
    return history, clock


def test_window_holds_every_sample_with_its_wall_time_until_the_ring_is_full() -> None:
    history, clock = filled(3)
    window = history.window()
    assert window["at"] == [1_000_000.0, 1_000_002.0, 1_000_004.0]
    assert window["series"] == {"depth": [0, 1, 2], "rate": [0, 0.25, 0.5]}
    assert (window["first"], window["next"], window["continues"]) == (0, 3, False)
    assert window["now"] == clock.now
    assert len(history) == 3


def test_a_full_ring_overwrites_its_oldest_samples_and_keeps_its_size() -> None:
    history, _ = filled(12, capacity=5)
    window = history.window()
    assert window["series"]["depth"] == [7, 8, 9, 10, 11]
    assert (window["first"], window["next"]) == (7, 12)
    assert len(history) == 5
    assert window["at"] == sorted(window["at"])


def test_reading_from_a_number_returns_only_what_the_reader_has_not_seen() -> None:
    history, _ = filled(4)
    seen = history.window()["next"]
    history.record({"depth": 40})
    window = history.window(start=seen)
    assert window["continues"] is True
    assert window["series"]["depth"] == [40]
    assert window["series"]["rate"] == [None]  # not given: missing, not zero
    assert history.window(start=history.next_seq)["series"]["depth"] == []


def test_a_number_the_ring_moved_past_or_never_reached_gets_everything_again() -> None:
    history, _ = filled(12, capacity=5)
    for stale in (0, 6, 13, 10_000):  # overwritten, or from before a restart of the server
        window = history.window(start=stale)
        assert window["continues"] is False
        assert window["series"]["depth"] == [7, 8, 9, 10, 11]


def test_window_leaves_out_samples_older_than_its_span() -> None:
    history, clock = filled(5, capacity=10, step=2.0)  # at 0, 2, 4, 6, 8 s; now is 10 s
    window = history.window(span=5.0)
    assert window["series"]["depth"] == [3, 4]
    assert window["first"] == 3
    assert clock.now - window["at"][0] <= 5.0


def test_marks_go_out_with_the_sample_after_them_once_to_a_reader_going_on() -> None:
    history, clock = filled(2)
    marked_at = clock.now
    history.mark("grow 4 \u2192 8", "throughput rose 30%")
    before = history.window()
    assert before["marks"] == []  # not followed by a sample yet
    history.record({"depth": 1})
    clock.now += 2
    history.mark("shrink 8 \u2192 4", "latency 2.10x baseline")
    first = history.window(start=before["next"])
    assert first["marks"] == [
        {"seq": 2, "at": marked_at, "label": "grow 4 \u2192 8", "reason": "throughput rose 30%"}
    ]
    history.record({"depth": 2})
    later = history.window(start=first["next"])
    assert [m["label"] for m in later["marks"]] == ["shrink 8 \u2192 4"]
    everything = history.window()
    assert [m["label"] for m in everything["marks"]] == ["grow 4 \u2192 8", "shrink 8 \u2192 4"]


def test_marks_are_bounded_like_the_samples() -> None:
    history, _ = filled(1, capacity=3)
    for index in range(10):
        history.mark(f"m{index}", "r")
    history.record({"depth": 1})
    assert [m["label"] for m in history.window()["marks"]] == ["m7", "m8", "m9"]


def test_recording_an_unknown_series_is_refused_and_records_nothing() -> None:
    history, _ = filled(2)
    with pytest.raises(ValueError, match="unknown series: deph"):
        history.record({"deph": 1})
    assert history.next_seq == 2


def test_a_history_needs_room_and_distinct_series() -> None:
    with pytest.raises(ValueError, match="at least two"):
        History(("a",), 1)
    with pytest.raises(ValueError, match="each once"):
        History(("a", "a"), 10)
    with pytest.raises(ValueError, match="each once"):
        History((), 10)
