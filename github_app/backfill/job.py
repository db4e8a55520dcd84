"""One backfill job: what was asked, where it is, how far it got. Pure, clock passed in.

States: ``queued`` -> ``running`` -> ``finished`` | ``failed`` | ``cancelled``
(a queued job may also be cancelled or fail). A job in a final state never
moves again; a job found ``queued`` or ``running`` at start-up is resumed
from its checkpoint.

The checkpoint says what is done, so a restart neither lists nor writes it
again: the repositories before ``repository_index`` are done; in the current
one, ``page_url`` is the first page not yet fully processed (``None``: the
first page) and ``done`` the issues of that page already processed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from github_app.processor import BackfillChange

REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
STATES = ("open", "closed", "all")


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


class BadRequest(ValueError):
    """A job request that cannot be run; the message says what to change."""


@dataclass(frozen=True)
class JobSpec:
    """What a job was asked to do. Exactly one of ``repository`` and ``installation``."""

    repository: str | None = None
    installation: int | None = None
    processors: tuple[str, ...] = ()
    state: str = "open"
    since: str | None = None  # ISO 8601 date or time, GitHub's ``since`` (updated at or after)
    dry_run: bool = False

    @classmethod
    def from_request(cls, data: Any, backfilling: Collection[str]) -> JobSpec:
        """Read and check a request body; ``backfilling`` names the processors that backfill."""
        if not isinstance(data, dict):
            raise BadRequest("expected a JSON object")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}")
        repository, installation = data.get("repository"), data.get("installation")
        if (repository is None) == (installation is None):
            raise BadRequest('give either "repository": "OWNER/REPO" or "installation": ID')
        if repository is not None and (
            not isinstance(repository, str) or not REPOSITORY.fullmatch(repository)
        ):
            raise BadRequest(f"repository must be OWNER/REPO, not {repository!r}")
        if installation is not None and (
            isinstance(installation, bool) or not isinstance(installation, int) or installation < 1
        ):
            raise BadRequest(f"installation must be a positive integer, not {installation!r}")
        processors = data.get("processors")
        if processors is None:
            chosen = tuple(sorted(backfilling))
        else:
            if not isinstance(processors, list) or not all(isinstance(p, str) for p in processors):
                raise BadRequest("processors must be a list of names")
            refused = [p for p in processors if p not in backfilling]
            if refused:
                raise BadRequest(
                    f"processor {refused[0]!r} does not backfill; those that do: "
                    + ", ".join(sorted(backfilling))
                )
            chosen = tuple(dict.fromkeys(processors))
        if not chosen:
            raise BadRequest("no processor to run")
        state = data.get("state", "open")
        if state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}, not {state!r}")
        since = data.get("since")
        if since is not None:
            since = iso_since(since)
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise BadRequest("dry_run must be true or false")
        return cls(repository, installation, chosen, state, since, dry_run)

    @property
    def target(self) -> str:
        return self.repository or f"installation {self.installation}"

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "processors": list(self.processors)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls(**{**data, "processors": tuple(data.get("processors") or ())})


def iso_since(value: object) -> str:
    """GitHub's ``since``: ``YYYY-MM-DD`` or an ISO 8601 time, as ``YYYY-MM-DDTHH:MM:SSZ``."""
    if not isinstance(value, str):
        raise BadRequest("since must be an ISO 8601 date such as 2026-01-31")
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat() + "T00:00:00Z"
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"since must be an ISO 8601 date such as 2026-01-31, not {value!r}"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Checkpoint:
    """How far a job got (see the module docstring)."""

    installation: int | None = None
    repositories: tuple[str, ...] | None = None  # known once the job has looked them up
    repository_index: int = 0
    page_url: str | None = None
    done: frozenset[int] = frozenset()

    def as_json(self) -> dict[str, Any]:
        return {
            "installation": self.installation,
            "repositories": None if self.repositories is None else list(self.repositories),
            "repository_index": self.repository_index,
            "page_url": self.page_url,
            "done": sorted(self.done),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        repositories = data.get("repositories")
        return cls(
            installation=data.get("installation"),
            repositories=None if repositories is None else tuple(repositories),
            repository_index=int(data.get("repository_index", 0)),
            page_url=data.get("page_url"),
            done=frozenset(data.get("done") or ()),
        )


@dataclass
class Progress:
    """Counters of one job."""

    listed: int = 0  # issues listed (pull requests skipped)
    processed: int = 0
    changed: int = 0
    labels_added: int = 0
    comments: int = 0
    writes: int = 0
    errors: int = 0
    reads: int = 0  # list requests sent
    estimated_total: int | None = None  # issues the job expects, when GitHub says

    def add(self, changes: Mapping[str, BackfillChange], ok: bool) -> None:
        self.processed += 1
        if any(change.changed for change in changes.values()):
            self.changed += 1
        self.labels_added += sum(len(change.labels_added) for change in changes.values())
        self.comments += sum(change.comments for change in changes.values())
        self.writes += sum(change.writes for change in changes.values())
        if not ok:
            self.errors += 1


@dataclass(frozen=True)
class JobStats:
    """A job as the admin API, the status document and the command show it."""

    id: str
    spec: JobSpec
    state: JobState
    reason: str | None
    repositories_done: int
    repositories_total: int | None
    listed: int
    processed: int
    changed: int
    labels_added: int
    comments: int
    writes: int
    errors: int
    reads: int
    started_at: float | None
    finished_at: float | None
    rate: float | None  # issues processed per second
    eta: float | None  # seconds to go, when the total is known
    estimated_total: int | None
    examples: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["spec"] = self.spec.as_json()
        document["state"] = str(self.state)
        document["examples"] = list(self.examples)
        return document


MAX_EXAMPLES = 20  # what a dry run says it would change, first few


@dataclass
class Job:
    """A job's mutable record; ``stats`` is its frozen picture."""

    id: str
    spec: JobSpec
    created_at: float
    state: JobState = JobState.QUEUED
    reason: str | None = None
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    progress: Progress = field(default_factory=Progress)
    started_at: float | None = None
    finished_at: float | None = None
    examples: list[str] = field(default_factory=list)
    runs: int = 0  # times it was started: once, plus once per restart that resumed it

    def start(self, now: float) -> None:
        self._move(JobState.RUNNING)
        self.runs += 1
        if self.started_at is None:
            self.started_at = now

    def finish(self, now: float) -> None:
        self._move(JobState.FINISHED)
        self.finished_at = now

    def fail(self, now: float, reason: str) -> None:
        self._move(JobState.FAILED)
        self.reason = reason
        self.finished_at = now

    def cancel(self, now: float) -> bool:
        """Cancel unless already final; ``False`` if it was."""
        if self.state.final:
            return False
        self._move(JobState.CANCELLED)
        self.reason = "cancelled"
        self.finished_at = now
        return True

    def _move(self, to: JobState) -> None:
        if self.state.final:
            raise ValueError(f"job {self.id} is {self.state}, it cannot become {to}")
        self.state = to

    def note(self, number: int, changes: Mapping[str, BackfillChange], ok: bool) -> None:
        self.progress.add(changes, ok)
        if len(self.examples) < MAX_EXAMPLES:
            for name, change in changes.items():
                if change.changed:
                    self.examples.append(f"#{number} {name}: {change}")

    def stats(self, now: float) -> JobStats:
        progress = self.progress
        checkpoint = self.checkpoint
        total_repos = None if checkpoint.repositories is None else len(checkpoint.repositories)
        end = self.finished_at if self.finished_at is not None else now
        elapsed = None if self.started_at is None else end - self.started_at
        rate = progress.processed / elapsed if elapsed and progress.processed else None
        eta: float | None = None
        if self.state.final:
            eta = 0.0 if self.state is JobState.FINISHED else None
        elif rate and progress.estimated_total is not None:
            eta = max(0.0, progress.estimated_total - progress.processed) / rate
        return JobStats(
            id=self.id,
            spec=self.spec,
            state=self.state,
            reason=self.reason,
            repositories_done=checkpoint.repository_index,
            repositories_total=total_repos,
            listed=progress.listed,
            processed=progress.processed,
            changed=progress.changed,
            labels_added=progress.labels_added,
            comments=progress.comments,
            writes=progress.writes,
            errors=progress.errors,
            reads=progress.reads,
            started_at=self.started_at,
            finished_at=self.finished_at,
            rate=rate,
            eta=eta,
            estimated_total=progress.estimated_total,
            examples=tuple(self.examples),
        )

    def as_json(self) -> dict[str, Any]:
        """Everything needed to resume it, for the store."""
        return {
            "id": self.id,
            "spec": self.spec.as_json(),
            "created_at": self.created_at,
            "state": str(self.state),
            "reason": self.reason,
            "checkpoint": self.checkpoint.as_json(),
            "progress": dataclasses.asdict(self.progress),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "examples": self.examples,
            "runs": self.runs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=data["id"],
            spec=JobSpec.from_json(data["spec"]),
            created_at=data["created_at"],
            state=JobState(data["state"]),
            reason=data.get("reason"),
            checkpoint=Checkpoint.from_json(data.get("checkpoint") or {}),
            progress=Progress(**(data.get("progress") or {})),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            examples=list(data.get("examples") or ()),
            runs=int(data.get("runs", 0)),
        )
