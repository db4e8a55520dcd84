"""The dead-letter adapter against a queue with the DLQ methods issue 4 plans, and without them."""

from __future__ import annotations

from dataclasses import dataclass, field

from github_app.dead_letter_adapter import DeadLetterAdapter
from github_app.envelope import Envelope
from github_app.priority import Priority
from github_app.queue import MemoryQueue, QueuedEvent


def queued(delivery_id: str) -> QueuedEvent:
    envelope = Envelope(
        delivery_id, "issues", "opened", 42, "octo/repo", 1, "octocat", "User", 0.0, b"zstd", 9
    )
    return QueuedEvent(envelope, Priority.HIGH, 1, 0.0, attempts=3)


@dataclass
class DeadLetter:
    item: QueuedEvent
    reason: str
    error: str


@dataclass
class QueueWithDLQ:
    """Only the four planned method names: the contract the adapter is written to."""

    entries: list[DeadLetter] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)

    def dead_letters(self) -> list[DeadLetter]:
        return list(self.entries)

    def redrive(self, delivery_id: str) -> bool:
        for entry in self.entries:
            if entry.item.envelope.delivery_id == delivery_id:
                self.entries.remove(entry)
                self.redriven.append(delivery_id)
                return True
        return False

    def redrive_all(self) -> int:
        count = len(self.entries)
        self.redriven += [e.item.envelope.delivery_id for e in self.entries]
        self.entries.clear()
        return count

    def purge_dead_letters(self) -> int:
        count = len(self.entries)
        self.entries.clear()
        return count


def test_dead_letters_are_listed_without_payload_and_redriven_with_a_wakeup() -> None:
    wakeups: list[None] = []
    queue = QueueWithDLQ([DeadLetter(queued(d), "exhausted", "GitHub answered 502") for d in "abc"])
    adapter = DeadLetterAdapter(queue, on_redrive=lambda: wakeups.append(None))
    assert adapter.supported
    listed = adapter.list()
    assert listed[0] == {
        "delivery_id": "a",
        "event": "issues",
        "action": "opened",
        "installation_id": 42,
        "repository": "octo/repo",
        "priority": "HIGH",
        "reason": "exhausted",
        "error": "GitHub answered 502",
        "attempts": 3,
        "enqueued_at": 0.0,
    }
    assert adapter.redrive("b") is True
    assert adapter.redrive("nope") is False
    assert len(wakeups) == 1
    assert adapter.redrive_all() == 2
    assert queue.redriven == ["b", "a", "c"]
    assert len(wakeups) == 2
    queue.entries.append(DeadLetter(queued("d"), "installation_gone", ""))
    assert adapter.purge() == 1
    assert adapter.list() == []


def test_a_queue_without_a_dead_letter_queue_looks_empty() -> None:
    adapter = DeadLetterAdapter(MemoryQueue(10, 10_000), on_redrive=lambda: None)
    assert not adapter.supported
    assert adapter.list() == []
    assert adapter.redrive("a") is False
    assert adapter.redrive_all() == 0
    assert adapter.purge() == 0
