"""A backfill job's pure parts: the request it was given, its states, progress and ETA."""

from __future__ import annotations

import pytest

from github_app.backfill.job import BadRequest, Job, JobSpec, JobState, iso_since
from github_app.processor import BackfillChange

BACKFILLING = ("labeler", "triage", "duplicates")


def test_a_request_is_read_with_its_defaults() -> None:
    spec = JobSpec.from_request({"repository": "octo-org/big"}, BACKFILLING)
    assert spec == JobSpec(
        repository="octo-org/big",
        processors=("duplicates", "labeler", "triage"),
        state="open",
        since=None,
        dry_run=False,
    )
    chosen = JobSpec.from_request(
        {"installation": 42, "processors": ["triage", "triage"], "since": "2026-01-31"},
        BACKFILLING,
    )
    assert chosen.processors == ("triage",)
    assert chosen.since == "2026-01-31T00:00:00Z"
    assert chosen.target == "installation 42"


def test_since_accepts_a_time_with_an_offset_and_gives_utc() -> None:
    assert iso_since("2026-01-31T10:00:00+02:00") == "2026-01-31T08:00:00Z"
    with pytest.raises(BadRequest, match="ISO 8601"):
        iso_since("2026-13-01")


def test_a_request_is_refused_when_processors_is_empty() -> None:
    with pytest.raises(BadRequest, match="no processor"):
        JobSpec.from_request({"repository": "o/r", "processors": []}, BACKFILLING)
    with pytest.raises(BadRequest, match="JSON object"):
        JobSpec.from_request(["o/r"], BACKFILLING)


def test_a_job_moves_queued_running_finished_and_never_out_of_a_final_state() -> None:
    job = Job("j1", JobSpec(repository="o/r", processors=("labeler",)), created_at=0.0)
    assert job.state is JobState.QUEUED
    job.start(10.0)
    job.start(11.0)  # resumed after a restart: still running, started when it first did
    assert job.started_at == 10.0
    job.finish(20.0)
    assert job.state is JobState.FINISHED
    assert job.cancel(21.0) is False
    with pytest.raises(ValueError, match="finished"):
        job.fail(22.0, "late")


def test_cancel_and_fail_keep_their_reason() -> None:
    cancelled = Job("a", JobSpec(repository="o/r"), created_at=0.0)
    assert cancelled.cancel(1.0) is True
    assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled")
    failed = Job("b", JobSpec(repository="o/r"), created_at=0.0)
    failed.start(0.0)
    failed.fail(2.0, "repository o/r not found")
    assert failed.stats(5.0).reason == "repository o/r not found"
    assert failed.stats(5.0).eta is None


def test_progress_counts_changes_and_the_eta_follows_the_rate() -> None:
    job = Job("j", JobSpec(repository="o/r", processors=("labeler",)), created_at=0.0)
    job.start(100.0)
    job.progress.estimated_total = 40
    for number in range(10):
        change = BackfillChange(labels_added=("bug",), writes=1) if number % 5 == 0 else None
        job.note(number, {"labeler": change or BackfillChange()}, ok=number != 3)
    stats = job.stats(110.0)  # 10 issues in 10 s
    assert (stats.processed, stats.changed, stats.labels_added, stats.writes) == (10, 2, 2, 2)
    assert stats.errors == 1
    assert stats.rate == 1.0
    assert stats.eta == 30.0
    assert stats.examples == ("#0 labeler: add label bug", "#5 labeler: add label bug")
