"""The one memory of which processors already succeeded on a delivery."""

from __future__ import annotations

from github_app.queue.succeeded import SucceededProcessors


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def succeeded(self, delivery_id: str, processors: tuple[str, ...], at: float) -> None:
        self.seen.append((delivery_id, *processors))

    def cleared(self, delivery_id: str) -> None:
        self.seen.append((delivery_id,))


def test_records_processors_once_each_and_tells_the_journal() -> None:
    journal = Recorder()
    record = SucceededProcessors(journal=journal, clock=lambda: 10.0)
    record.add("d-1", "labeler")
    record.add("d-1", "labeler")
    record.add("d-1", "welcome")
    assert record.of("d-1") == ("labeler", "welcome")
    record.clear("d-1")
    assert record.of("d-1") == ()
    assert journal.seen == [("d-1", "labeler"), ("d-1", "labeler", "welcome"), ("d-1",)]


def test_forgets_a_delivery_after_the_redelivery_window() -> None:
    now = [0.0]
    record = SucceededProcessors(window=100.0, clock=lambda: now[0])
    record.add("d-1", "labeler")
    now[0] = 100.0
    assert record.of("d-1") == ("labeler",)
    now[0] = 100.5
    assert record.of("d-1") == ()


def test_keeps_at_most_its_capacity_oldest_dropped_first() -> None:
    record = SucceededProcessors(capacity=2)
    for n in range(3):
        record.add(f"d-{n}", "triage")
    assert (record.of("d-0"), record.of("d-2"), len(record)) == ((), ("triage",), 2)
