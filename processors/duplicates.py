"""duplicates: points out likely duplicates when an issue is opened.

The new issue's title and body are compared with every open issue of the
repository (TF-IDF over words, word pairs and character trigrams; cosine
similarity, see ``processors.similarity``). When the best matches reach
``threshold``, the app comments with links to up to ``max_candidates`` of
them and adds the ``label``.

The open issues are listed through the API once per repository (100 per
request; a repository with 10,000 open issues costs 100 requests, once) and
the index is then kept current from ``issues`` events: opened, edited,
reopened add or replace an issue, closed, deleted and transferred remove it.
It is rebuilt from the API once a day, which also heals events the app
missed while it was down. Tokenising a big repository runs in a worker
process, compaction and lookups in a worker thread, so the event loop that
answers webhooks is never stalled. ``processors.similarity`` (and numpy with
it, about 0.1 s of CPU) is imported on the first event that needs it, in a
worker thread: a start spends nothing on it while no repository enables the
processor, and its import does not stall the loop either.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import anyio
import anyio.to_process
import anyio.to_thread
from cachetools import LRUCache
from pydantic import Field

from github_app.processor import (
    NO_CHANGE,
    BackfillChange,
    Context,
    Processor,
    ProcessorConfig,
)
from github_app.processor_help import Doc, ProcessorHelp
from processors.issue_api import IssueApi, has_label, has_marker, label_names, marker

if TYPE_CHECKING:
    from processors.similarity import Match, Packed, SimilarityIndex

log = logging.getLogger(__name__)

MARKER_KIND = "duplicates"
PAGE_SIZE = 100
MAX_INDEXED = 20_000  # open issues indexed per repository
MAX_REPOSITORIES = 64  # indexes kept, least recently used dropped
REBUILD_AFTER = 24 * 3600.0
PROCESS_FROM = 2_000  # issues; below this, tokenising in a thread is cheaper than a process
T = TypeVar("T")


@dataclass(frozen=True)
class DuplicatesConfig(ProcessorConfig):
    enabled: bool = False  # opt-in: a `duplicates:` section turns it on
    threshold: Annotated[
        float,
        Field(gt=0.0, le=1.0),
        Doc("cosine similarity (above 0, at most 1) a candidate must reach"),
    ] = 0.3
    max_candidates: Annotated[int, Field(ge=1, le=3), Doc("links in the comment, 1 to 3")] = 3
    label: Annotated[
        str,
        Field(min_length=1, max_length=50),
        Doc("added with the comment; an issue that has it is not commented on"),
    ] = "possible-duplicate"


class DuplicatesApi(Protocol):
    async def open_issues_page(self, page: int, per_page: int = 100) -> list[dict[str, Any]]: ...

    async def comment_bodies(self, number: int, since: str | None = None) -> list[str]: ...

    async def comment(self, number: int, body: str) -> None: ...

    async def add_labels(self, number: int, labels: list[str]) -> None: ...


Offload = Callable[..., Awaitable[Any]]
SIMILARITY = "processors.similarity"


async def load_similarity() -> None:
    """Import ``processors.similarity`` (numpy with it) in a worker thread, once.

    After this, ``from processors.similarity import ...`` costs a dictionary lookup.
    """
    if SIMILARITY not in sys.modules:
        await anyio.to_thread.run_sync(importlib.import_module, SIMILARITY)


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(function, *args)


async def in_process(function: Callable[..., T], *args: Any) -> T:
    return await anyio.to_process.run_sync(function, *args)


async def in_process_if_large(function: Callable[..., T], texts: list[Any]) -> T:
    """Tokenise big repositories in anyio's warm worker processes (no GIL shared with the loop)."""
    if len(texts) >= PROCESS_FROM:
        return await in_process(function, texts)
    return await in_thread(function, texts)


@dataclass
class RepoIndex:
    index: SimilarityIndex
    built_at: float


class DuplicatesState:
    """One similarity index per repository, built on first use; one user at a time per index.

    ``featurize`` runs the tokenising of a whole repository (pure Python, about
    2.5 s per 10,000 issues): in a worker process from 2,000 issues on, since
    in a thread it competes with the loop for the GIL; ``offload`` runs the
    numpy work (compaction, lookups) in a worker thread. benchmarks/processors.py
    measures the loop's lag for each choice.
    """

    def __init__(
        self,
        *,
        featurize: Offload = in_process_if_large,
        offload: Offload = in_thread,
        clock: Callable[[], float] = time.monotonic,
        max_repositories: int = MAX_REPOSITORIES,
    ) -> None:
        self.featurize = featurize
        self.offload = offload
        self.clock = clock
        self.indexes: LRUCache[str, RepoIndex] = LRUCache(maxsize=max_repositories)
        self._locks: dict[str, anyio.Lock] = {}
        self.builds = 0
        self.pages_listed = 0

    def lock(self, repository: str) -> anyio.Lock:
        return self._locks.setdefault(repository, anyio.Lock())

    def current(self, repository: str) -> SimilarityIndex | None:
        found = self.indexes.get(repository)
        if found is None or self.clock() - found.built_at > REBUILD_AFTER:
            return None
        return found.index

    async def ensure(self, repository: str, api: DuplicatesApi) -> SimilarityIndex:
        """The repository's index, listing its open issues first if there is none (call locked)."""
        index = self.current(repository)
        if index is not None:
            return index
        await load_similarity()
        from processors.similarity import SimilarityIndex, features_packed

        started = self.clock()
        numbers: list[int] = []
        texts: list[tuple[str, str | None]] = []
        page = 1
        while len(numbers) < MAX_INDEXED:
            items = await api.open_issues_page(page, PAGE_SIZE)
            self.pages_listed += 1
            for item in items:
                if "pull_request" not in item and isinstance(item.get("number"), int):
                    numbers.append(item["number"])
                    texts.append((str(item.get("title") or ""), item.get("body")))
            if len(items) < PAGE_SIZE:
                break
            page += 1
        packed: Packed = await self.featurize(features_packed, texts)
        index = SimilarityIndex()
        await self.offload(index.add_packed, numbers, packed)
        self.indexes[repository] = RepoIndex(index, self.clock())
        self.builds += 1
        log.info(
            "duplicates: indexed %d open issues of %s in %.2fs",
            len(index),
            repository,
            self.clock() - started,
        )
        return index

    async def absorb(self, repository: str, issue: DuplicatesFacts, *, is_open: bool) -> None:
        """A backfill streams an existing issue: index it if open, drop it if not.

        A repository without an index starts one from the stream instead of listing its
        issues a second time.
        """
        await load_similarity()
        from processors.similarity import SimilarityIndex, features

        async with self.lock(repository):
            index = self.current(repository)
            if index is None:
                index = SimilarityIndex()
                self.indexes[repository] = RepoIndex(index, self.clock())
            if is_open:
                index.add(issue.number, features(issue.title, issue.body))
            else:
                index.remove(issue.number)


@dataclass(frozen=True)
class DuplicatesFacts:
    """What duplicates reads from an ``issues`` payload."""

    action: str
    number: int
    title: str
    body: str | None
    labels: tuple[str, ...]
    author_type: str
    created_at: str | None
    is_pull_request: bool

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DuplicatesFacts:
        issue = payload["issue"]
        return cls(
            str(payload.get("action") or ""),
            int(issue["number"]),
            str(issue.get("title") or ""),
            issue.get("body"),
            label_names(issue),
            str((issue.get("user") or {}).get("type") or "User"),
            issue.get("created_at"),
            "pull_request" in issue,
        )


@dataclass(frozen=True)
class Verdict:
    candidates: list[Match]
    """The matches at or above the threshold, best first."""
    comment: bool
    """Whether to label the issue and comment (unless a redelivery finds the comment there)."""


def decide(config: DuplicatesConfig, facts: DuplicatesFacts, matches: list[Match]) -> Verdict:
    """From the payload and the index's best matches: report only a person's unlabelled issue."""
    found = [m for m in matches if m.score >= config.threshold]
    comment = (
        bool(found) and facts.author_type != "Bot" and not has_label(facts.labels, config.label)
    )
    return Verdict(found, comment)


def render(matches: list[Match]) -> str:
    lines = "\n".join(f"- #{m.number} ({m.score:.0%} similar)" for m in matches)
    return (
        "This issue may duplicate:\n\n"
        f"{lines}\n\n"
        "If it does, please close it and add to the existing one.\n\n"
        f"{marker(MARKER_KIND)}"
    )


async def check_new_issue(
    api: DuplicatesApi,
    config: DuplicatesConfig,
    state: DuplicatesState,
    repository: str,
    issue: DuplicatesFacts,
) -> list[Match]:
    """Look up the new issue, add it to the index, and report candidates above the threshold."""
    await load_similarity()
    from processors.similarity import features

    vector = features(issue.title, issue.body)
    async with state.lock(repository):
        index = await state.ensure(repository, api)
        matches: list[Match] = await state.offload(
            index.lookup, vector, config.max_candidates, issue.number
        )
        index.add(issue.number, vector)
    verdict = decide(config, issue, matches)
    if not verdict.comment:
        return verdict.candidates
    if has_marker(await api.comment_bodies(issue.number, since=issue.created_at), MARKER_KIND):
        return verdict.candidates  # a redelivery: the label went on before the comment
    await api.add_labels(issue.number, [config.label])
    await api.comment(issue.number, render(verdict.candidates))
    return verdict.candidates


async def follow_change(state: DuplicatesState, repository: str, issue: DuplicatesFacts) -> None:
    """Keep a built index current; a repository without one is left alone (no API call)."""
    index = state.current(repository)
    if index is None:
        return
    from processors.similarity import features  # imported already: the index was built with it

    async with state.lock(repository):
        if issue.action in ("edited", "reopened"):
            index.add(issue.number, features(issue.title, issue.body))
        else:
            index.remove(issue.number)


async def handle(ctx: Context[DuplicatesConfig]) -> None:
    issue = DuplicatesFacts.from_payload(ctx.payload)
    if issue.is_pull_request:
        return
    state = ctx.state if isinstance(ctx.state, DuplicatesState) else DuplicatesState()
    repository = f"{ctx.owner}/{ctx.repo}"
    if issue.action != "opened":
        await follow_change(state, repository, issue)
        return
    api = IssueApi(ctx.github, ctx.owner, ctx.repo)
    found = await check_new_issue(api, ctx.config, state, repository, issue)
    if found:
        ctx.log.info(
            "duplicates: #%s resembles %s",
            issue.number,
            ", ".join(f"#{m.number} ({m.score:.2f})" for m in found),
        )


async def backfill(ctx: Context[DuplicatesConfig]) -> BackfillChange:
    """Existing issues feed the index; nothing is posted on old issues."""
    issue = DuplicatesFacts.from_payload(ctx.payload)
    state = ctx.state if isinstance(ctx.state, DuplicatesState) else DuplicatesState()
    is_open = ctx.payload["issue"].get("state", "open") == "open"
    await state.absorb(f"{ctx.owner}/{ctx.repo}", issue, is_open=is_open)
    return NO_CHANGE


DUPLICATES: Processor[DuplicatesConfig] = Processor(
    name="duplicates",
    help=ProcessorHelp(
        description=(
            "On a new issue, comments with links to likely duplicates among the open issues "
            "and adds a label."
        ),
        details=(
            "Compares the title and body with the repository's open issues (TF-IDF over words, "
            "word pairs and character trigrams; cosine similarity). The open issues are listed "
            "once per repository (100 per request); the index is then kept current from "
            "issues events, and rebuilt daily.",
            "Tokenising a large repository runs in a worker process, compaction and lookups in "
            "a worker thread, so the event loop keeps answering webhooks. At 10,000 open issues "
            "the index holds about 32 MB and a lookup takes 1.6 ms (median) "
            "(the processors benchmark).",
        ),
        backfill="builds its index from the issues the job streams and posts nothing on them",
        config_example=(
            "duplicates:\n  threshold: 0.3\n  max_candidates: 3\n  label: possible-duplicate\n"
        ),
    ),
    events=(
        "issues.opened",
        "issues.edited",
        "issues.reopened",
        "issues.closed",
        "issues.deleted",
        "issues.transferred",
    ),
    config_type=DuplicatesConfig,
    handle=handle,
    permissions={"issues": "write", "metadata": "read"},
    state_factory=DuplicatesState,
    backfill=backfill,
)
