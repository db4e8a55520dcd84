"""The dead-letter adapter over the real MemoryQueue: listing without payloads, redrive, purge."""

from __future__ import annotations

import logging

import pytest

from github_app.admin.dead_letter_adapter import DeadLetterAdapter
from github_app.envelope import Envelope
from github_app.logs import NAMED_IDS as AUDIT_IDS
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority


def envelope(delivery_id: str, number: int) -> Envelope:
    return Envelope(
        delivery_id, "issues", "opened", 42, "octo/repo", number, "octocat", "User", 0.0, b"zst", 9
    )


def queue_with_dead_letters(*delivery_ids: str) -> MemoryQueue:
    queue = MemoryQueue(100, 1_000_000, clock=lambda: 100.0)
    for number, delivery_id in enumerate(delivery_ids, start=1):
        assert queue.offer(envelope(delivery_id, number), Priority.HIGH).admitted
    while (item := queue.take()) is not None:
        queue.dead_letter(item, "exhausted", "GitHub answered 502")
    return queue


def test_dead_letters_are_listed_with_why_and_without_the_payload() -> None:
    adapter = DeadLetterAdapter(queue_with_dead_letters("a", "b"), on_redrive=lambda: None)
    listed = adapter.list()
    assert [entry["delivery_id"] for entry in listed] == ["a", "b"]
    assert listed[0]["reason"] == "exhausted"
    assert listed[0]["last_error"] == "GitHub answered 502"
    assert listed[0]["repository"] == "octo/repo"
    assert all("payload" not in entry and "item" not in entry for entry in listed)


def test_redrive_one_puts_it_back_in_the_queue_and_wakes_the_dispatcher() -> None:
    wakeups: list[None] = []
    queue = queue_with_dead_letters("a", "b")
    adapter = DeadLetterAdapter(queue, on_redrive=lambda: wakeups.append(None))
    assert adapter.redrive("a") is True
    assert adapter.redrive("missing") is False
    assert len(wakeups) == 1
    assert [entry["delivery_id"] for entry in adapter.list()] == ["b"]
    item = queue.take()
    assert item is not None
    assert item.envelope.delivery_id == "a"


def test_redrive_all_and_purge_report_counts() -> None:
    wakeups: list[None] = []
    adapter = DeadLetterAdapter(
        queue_with_dead_letters("a", "b", "c"), on_redrive=lambda: wakeups.append(None)
    )
    assert adapter.redrive_all() == 3
    assert adapter.list() == []
    assert adapter.redrive_all() == 0
    assert len(wakeups) == 1
    purge_queue = queue_with_dead_letters("x", "y")
    assert DeadLetterAdapter(purge_queue, on_redrive=lambda: None).purge() == 2
    assert purge_queue.list_dead_letters() == []


def test_redrive_and_purge_leave_an_audit_line_naming_the_deliveries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="github_app.admin.dead_letter_adapter")
    adapter = DeadLetterAdapter(queue_with_dead_letters("a", "b"), on_redrive=lambda: None)
    adapter.redrive("a")
    adapter.redrive_all()
    many = [f"d{n}" for n in range(AUDIT_IDS + 3)]
    DeadLetterAdapter(queue_with_dead_letters(*many), on_redrive=lambda: None).purge()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[:2] == [
        ("INFO", "admin: re-drove dead letter a"),
        ("INFO", "admin: re-drove 1 dead letter(s): b"),
    ]
    level, purged = lines[2]
    assert level == "WARNING"
    assert purged.startswith(f"admin: purged {AUDIT_IDS + 3} dead letter(s): d0, d1,")
    assert purged.endswith(f"d{AUDIT_IDS - 1} and 3 more")
