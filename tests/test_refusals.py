"""Which lines refused deliveries are logged as: one per kind and interval, not one each."""

from __future__ import annotations

from github_app.intake.refusals import RefusalLog

SPOOL = "the spool cannot store events now: disk I/O error"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_refusal_of_a_kind_is_logged_with_its_delivery_and_the_next_are_counted() -> None:
    clock = Clock()
    refusals = RefusalLog(every=60, clock=clock)
    [first] = refusals.refused("spool_unavailable", SPOOL, "d-1 (issues.opened)")
    assert first.startswith(f"refused delivery d-1 (issues.opened): {SPOOL}")
    assert "logged every 60s" in first
    clock.now += 1
    later = [refusals.refused("spool_unavailable", SPOOL, f"d-{n}") for n in range(2, 50)]
    assert not any(later)
    assert refusals.admitted() == []


def test_a_count_is_logged_once_an_interval_at_the_next_refusal_or_admission() -> None:
    clock = Clock()
    refusals = RefusalLog(every=60, clock=clock)
    refusals.refused("spool_unavailable", SPOOL, "d-1")
    for n in range(2, 5):
        refusals.refused("spool_unavailable", SPOOL, f"d-{n}")
    clock.now += 61
    assert refusals.refused("spool_unavailable", SPOOL, "d-5") == [
        f"refused 3 more delivery(ies) in the last 61s: {SPOOL}"
    ]
    clock.now += 60
    assert refusals.admitted() == [f"refused 1 more delivery(ies) in the last 60s: {SPOOL}"]
    assert refusals.admitted() == []


def test_kinds_are_counted_apart_and_a_kind_quiet_for_an_interval_is_logged_in_full_again() -> None:
    clock = Clock()
    refusals = RefusalLog(every=60, clock=clock)
    assert len(refusals.refused("spool_unavailable", SPOOL, "d-1")) == 1
    [full] = refusals.refused("queue_full", "queue full for LOW events", "d-2")
    assert full.startswith("refused delivery d-2: queue full for LOW events")
    assert refusals.refused("queue_full", "queue full for LOW events", "d-3") == []
    clock.now += 60
    # spool_unavailable had nothing more to say: forgotten; queue_full says its count
    assert refusals.admitted() == [
        "refused 1 more delivery(ies) in the last 60s: queue full for LOW events"
    ]
    [again] = refusals.refused("spool_unavailable", SPOOL, "d-4")
    assert again.startswith(f"refused delivery d-4: {SPOOL}")
