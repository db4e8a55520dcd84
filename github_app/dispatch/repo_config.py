"""Per-repository configuration: ``.github/auto-issue-processor.yml``, read through the API.

Lookup order, as Probot apps do it: the repository's own file, else the same
file in the owner's ``.github`` repository; ``_extends: repo`` or
``_extends: owner/repo`` merges a base file under this one (one level).

A file that is not valid (bad YAML, unknown keys, wrong types) never
half-applies: every processor of that repository runs with its defaults, and
the errors are logged with the repository and kept for the status endpoint.
Parsed configs are cached per repository for a few minutes, and a ``push``
to the default branch that touches the file drops the cached config of every
repository that read it: the repository itself, the repositories that fell
back to the owner's ``.github`` file (a push there drops all of the owner's),
and those whose file ``_extends`` the pushed one. Conditional requests
(ETag, 304) belong to the shared GitHub client, not to this cache. One read
per repository at a time: an event that waits for the read another event
started notes that wait as the app's own (``note_wait``), like a wait for its
installation's token mint, which that read may be waiting for.

Anyone who can push to one repository writes its config, so reading one must
never cost the other tenants anything: YAML aliases and anchors are refused
(a few KiB of them expand into millions of values), the document's nodes and
nesting are capped, so are the errors reported for it, and the whole of
reading, validating and compiling runs in a worker thread, one config at a
time, within a time budget. The event loop keeps answering webhooks and
``/healthz`` meanwhile; a config past the budget is an error like any other.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpx
import yaml
from cachetools import TTLCache
from githubkit import GitHub
from githubkit.exception import RequestError, RequestFailed
from pydantic import TypeAdapter, ValidationError

from github_app.control.feedback import note_wait
from github_app.github.gateway import as_github_error
from github_app.processor import Processor, ProcessorConfig, config_budget

log = logging.getLogger(__name__)

CONFIG_PATH = ".github/auto-issue-processor.yml"
MAX_CONFIG_BYTES = 256 * 1024
RAW_MEDIA_TYPE = "application/vnd.github.raw+json"
OWNER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
REPO_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
MAX_YAML_NODES = 50_000  # scalars, lists and mappings; a 256 KiB file of one-letter items has more
MAX_YAML_DEPTH = 32
MAX_REPORTED_ERRORS = 20  # per file: enough to fix it, not enough to flood the log and /admin
MAX_ERROR_CHARS = 300
CONFIG_TIME_BUDGET = 2.0  # seconds to read, validate and compile one repository's config
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class ConfigTooCostly(Exception):
    """Reading a config went past its time budget (raised in the worker thread)."""


@dataclass
class Budget:
    """The time one config may cost, checked between steps of bounded size.

    Only time spent working counts: the store pauses the budget while the
    config waits for the one reader thread (behind other tenants' configs in a
    burst) or for GitHub (an ``_extends`` base), so a small config is never
    refused because the app or GitHub was busy.
    """

    seconds: float = CONFIG_TIME_BUDGET
    clock: Callable[[], float] = time.monotonic
    spent: float = field(init=False, default=0.0)
    _since: float | None = field(init=False, default=None)  # working since; None: paused

    def __post_init__(self) -> None:
        self._since = self.clock()

    def pause(self) -> None:
        if self._since is not None:
            self.spent += self.clock() - self._since
            self._since = None

    def resume(self) -> None:
        if self._since is None:
            self._since = self.clock()

    def check(self) -> None:
        working = 0.0 if self._since is None else self.clock() - self._since
        if self.spent + working > self.seconds:
            raise ConfigTooCostly(
                f"reading the file took longer than {self.seconds:g} s: make it smaller"
            )


@dataclass(frozen=True)
class RepoConfig:
    """Validated config objects by processor name; empty means defaults everywhere."""

    sections: Mapping[str, ProcessorConfig] = field(default_factory=dict)
    source: str = "defaults"
    errors: tuple[str, ...] = ()

    def for_processor(self, processor: Processor[Any]) -> Any:
        found = self.sections.get(processor.name)
        return found if found is not None else processor.config_type()


class ConfigParser:
    """Validates a config document against the registered processors' config types."""

    def __init__(self, processors: Iterable[Processor[Any]]) -> None:
        self._adapters = {p.name: TypeAdapter(p.config_type) for p in processors}

    def load_yaml(
        self, raw: str | bytes, budget: Budget | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        """The top-level mapping of a YAML document, or the errors that prevent reading it.

        Blocking (up to the budget): the app calls it in a worker thread.
        """
        if len(raw) > MAX_CONFIG_BYTES:
            return {}, [f"file is larger than {MAX_CONFIG_BYTES // 1024} KiB"]
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            return {}, ["file is not UTF-8 text"]
        try:
            problem = _refused_structure(text, budget or Budget())
            if problem is not None:
                return {}, [problem]
            document = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            return {}, [f"invalid YAML{where}: {problem}"]
        if document is None:
            return {}, []
        if not isinstance(document, dict):
            return {}, ["the file must be a mapping of processor names to sections"]
        return document, []

    def validate(
        self, document: Mapping[str, Any], budget: Budget | None = None
    ) -> tuple[dict[str, ProcessorConfig], list[str]]:
        """Each section through its processor's config type (which may compile it, e.g. RE2).

        Blocking (up to the budget): the app calls it in a worker thread. At most
        ``MAX_REPORTED_ERRORS`` errors are returned, the last one counting the rest.
        """
        budget = budget or Budget()
        with config_budget(budget.check):
            sections, errors = self._validate(document, budget)
        return sections, capped(errors)

    def _validate(
        self, document: Mapping[str, Any], budget: Budget
    ) -> tuple[dict[str, ProcessorConfig], list[str]]:
        sections: dict[str, ProcessorConfig] = {}
        errors: list[str] = []
        for name, section in document.items():
            budget.check()
            if name == "_extends":
                try:
                    extends_target(section, "owner")
                except ValueError as exc:
                    errors.append(f"_extends: {exc}")
                continue
            adapter = self._adapters.get(str(name))
            if adapter is None:
                known = ", ".join(sorted(self._adapters)) or "none"
                errors.append(f"{name}: unknown processor (known: {known})")
                continue
            if section is None or section is True:
                section = {}  # `triage:` or `triage: true`: on, with defaults
            elif section is False:
                section = {"enabled": False}
            if isinstance(section, dict) and "enabled" not in section:
                # A section that is present turns its processor on, even one that is
                # off by default (opt-in processors: triage, welcome, commands, duplicates).
                section = {"enabled": True, **section}
            try:
                sections[str(name)] = adapter.validate_python(section)
            except ValidationError as exc:
                for problem in exc.errors():
                    location = ".".join(str(part) for part in (name, *problem["loc"]))
                    errors.append(f"{location}: {problem['msg']}")
        return sections, errors

    def parse(self, text: str | bytes, source: str, budget: Budget | None = None) -> RepoConfig:
        """Parse one file on its own (no ``_extends``): used by ``check-config`` and tests."""
        try:
            document, errors = self.load_yaml(text, budget)
            if errors:
                return RepoConfig(source=source, errors=tuple(errors))
            sections, errors = self.validate(document, budget)
        except ConfigTooCostly as exc:
            errors = [str(exc)]
        if errors:
            return RepoConfig(source=source, errors=tuple(errors))
        return RepoConfig(sections, source)


def capped(errors: list[str]) -> list[str]:
    """At most ``MAX_REPORTED_ERRORS`` errors of at most ``MAX_ERROR_CHARS`` characters each."""
    shown = [
        e if len(e) <= MAX_ERROR_CHARS else e[: MAX_ERROR_CHARS - 3] + "..."
        for e in errors[:MAX_REPORTED_ERRORS]
    ]
    if len(errors) > MAX_REPORTED_ERRORS:
        shown[-1] = f"... and {len(errors) - MAX_REPORTED_ERRORS + 1} more errors"
    return shown


def _refused_structure(text: str, budget: Budget) -> str | None:
    """Why the document's shape is refused (aliases, anchors, too many nodes, too deep), or None.

    Read from the parser's events, before anything is built: an alias costs
    nothing to write and can stand for a list of thousands, over and over.
    """
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_YamlLoader):
        where = f"line {event.start_mark.line + 1}" if event.start_mark else "somewhere"
        if isinstance(event, yaml.AliasEvent):
            return f"YAML aliases (*{event.anchor}) are not supported ({where}): write it out"
        if isinstance(event, yaml.NodeEvent):
            if event.anchor is not None:
                return f"YAML anchors (&{event.anchor}) are not supported ({where})"
            nodes += 1
            if nodes > MAX_YAML_NODES:
                return f"the file has more than {MAX_YAML_NODES} values"
            if nodes % 1000 == 0:
                budget.check()
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return f"the file nests more than {MAX_YAML_DEPTH} levels deep ({where})"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


class RepoConfigStore:
    """Fetches, validates and caches configs; one fetch per repository at a time."""

    def __init__(
        self,
        processors: Iterable[Processor[Any]],
        *,
        ttl: float = 300.0,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        budget: float = CONFIG_TIME_BUDGET,
        budget_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._parser = ConfigParser(processors)
        self._cache: TTLCache[str, RepoConfig] = TTLCache(maxsize=capacity, ttl=ttl, timer=clock)
        self._clock = clock
        self._budget = budget
        self._budget_clock = budget_clock  # read in the worker thread
        self._readers: anyio.CapacityLimiter | None = None  # one config read at a time
        self._locks: dict[str, anyio.Lock] = {}
        self._sources: dict[str, frozenset[str]] = {}  # repository -> repositories it read
        self.errors: dict[str, tuple[str, ...]] = {}
        self.invalidations = 0

    def invalidate(self, repository: str) -> None:
        self._cache.pop(repository, None)
        self._sources.pop(repository, None)

    def observe(self, event: str, payload: Mapping[str, Any]) -> list[str]:
        """Called for every verified delivery: a push that may change a config invalidates it."""
        if event != "push":
            return []
        pushed = pushed_config(payload)
        if pushed is None:
            return []
        owner, _, name = pushed.partition("/")
        stale = {
            repository
            for repository, sources in self._sources.items()
            if pushed in sources or (name == ".github" and repository.startswith(owner + "/"))
        }
        stale.add(pushed)
        dropped = sorted(r for r in stale if r in self._cache)
        for repository in stale:
            self.invalidate(repository)
        self.invalidations += 1
        log.info("push to %s changed %s: dropped the config of %s", pushed, CONFIG_PATH, dropped)
        return dropped

    async def get(self, github: GitHub[Any], repository: str) -> RepoConfig:
        cached = self._cache.get(repository)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(repository, anyio.Lock())
        asked = self._clock()
        async with lock:
            note_wait(self._clock() - asked)  # for another event's read, if one was on
            cached = self._cache.get(repository)
            if cached is None:
                sources: list[str] = []
                cached = await self._load(github, repository, sources)
                self._cache[repository] = cached
                self._sources[repository] = frozenset(sources)
        if not lock.locked():
            self._locks.pop(repository, None)
        return cached

    async def _load(self, github: GitHub[Any], repository: str, sources: list[str]) -> RepoConfig:
        owner, _, name = repository.partition("/")
        sources.append(repository)
        text, source = await _fetch(github, owner, name), repository
        if text is None and name != ".github":
            sources.append(f"{owner}/.github")
            text, source = await _fetch(github, owner, ".github"), f"{owner}/.github"
        if text is None:
            self.errors.pop(repository, None)
            return RepoConfig()
        config = await self._resolve(github, owner, text, source, sources)
        if config.errors:
            self.errors[repository] = config.errors
            for problem in config.errors:
                log.error("config of %s (%s): %s", repository, source, problem)
            log.error("config of %s is invalid: its processors run with defaults", repository)
            return RepoConfig(source="defaults", errors=config.errors)
        self.errors.pop(repository, None)
        return config

    async def _off_loop(self, work: Callable[[Any, Budget], Any], arg: Any, budget: Budget) -> Any:
        """``work(arg, budget)`` in a worker thread; one at a time, so one tenant takes one
        thread. The budget runs only while the thread works on it, not while it waits."""
        if self._readers is None:
            self._readers = anyio.CapacityLimiter(1)

        def working() -> Any:
            budget.resume()
            try:
                return work(arg, budget)
            finally:
                budget.pause()

        return await anyio.to_thread.run_sync(working, limiter=self._readers)

    async def _resolve(
        self, github: GitHub[Any], owner: str, text: bytes, source: str, sources: list[str]
    ) -> RepoConfig:
        budget = Budget(self._budget, self._budget_clock)
        budget.pause()  # it runs in the reader thread only
        try:
            return await self._resolve_within(github, owner, text, source, sources, budget)
        except ConfigTooCostly as exc:
            return RepoConfig(source=source, errors=(str(exc),))

    async def _resolve_within(
        self,
        github: GitHub[Any],
        owner: str,
        text: bytes,
        source: str,
        sources: list[str],
        budget: Budget,
    ) -> RepoConfig:
        document, errors = await self._off_loop(self._parser.load_yaml, text, budget)
        if errors:
            return RepoConfig(source=source, errors=tuple(errors))
        base_name = document.get("_extends")
        if base_name is not None:
            try:
                base_owner, base_repo = extends_target(base_name, owner)
            except ValueError as exc:
                return RepoConfig(source=source, errors=(f"_extends: {exc}",))
            sources.append(f"{base_owner}/{base_repo}")
            base_text = await _fetch(github, base_owner, base_repo)
            if base_text is None:
                return RepoConfig(
                    source=source,
                    errors=(f"_extends: {base_owner}/{base_repo} has no {CONFIG_PATH}",),
                )
            base, errors = await self._off_loop(self._parser.load_yaml, base_text, budget)
            if errors:
                return RepoConfig(
                    source=source, errors=tuple(f"_extends {base_name}: {e}" for e in errors)
                )
            base.pop("_extends", None)
            document = _merge(base, document)
        sections, errors = await self._off_loop(self._parser.validate, document, budget)
        if errors:
            return RepoConfig(source=source, errors=tuple(errors))
        return RepoConfig(sections, source)


def extends_target(value: object, owner: str) -> tuple[str, str]:
    """``(owner, repo)`` that ``_extends: repo`` or ``_extends: owner/repo`` names.

    Only GitHub's own name shapes pass: the value becomes part of an API path
    requested with the installation's token, so ``../`` or ``?`` must not
    reach any other endpoint.
    """
    if not isinstance(value, str):
        raise ValueError("must be 'repo' or 'owner/repo'")
    base_owner, slash, base_repo = value.strip().partition("/")
    if not slash:
        base_owner, base_repo = owner, base_owner
    if (
        not OWNER_NAME.fullmatch(base_owner)
        or not REPO_NAME.fullmatch(base_repo)
        or base_repo in (".", "..")
    ):
        raise ValueError("must be 'repo' or 'owner/repo' (GitHub names: letters, digits, '-._')")
    return base_owner, base_repo


def pushed_config(payload: Mapping[str, Any]) -> str | None:
    """The repository whose config a push may have changed, or ``None``.

    Only the default branch counts (configs are read from it). The payload
    lists at most 20 commits, and a forced push can change files no listed
    commit names, so those cases count as touching the file.
    """
    repository = payload.get("repository")
    if not isinstance(repository, dict) or not isinstance(repository.get("full_name"), str):
        return None
    default = repository.get("default_branch") or repository.get("master_branch")
    if default and payload.get("ref") != f"refs/heads/{default}":
        return None
    commits = payload.get("commits")
    if payload.get("forced") or not isinstance(commits, list) or len(commits) >= 20:
        return str(repository["full_name"])
    head = payload.get("head_commit")
    for commit in [*commits, head] if isinstance(head, dict) else commits:
        if not isinstance(commit, dict):
            continue
        for key in ("added", "modified", "removed"):
            files = commit.get(key)
            if isinstance(files, list) and CONFIG_PATH in files:
                return str(repository["full_name"])
    return None


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Sections of ``override`` replace keys of the same section in ``base``."""
    merged = dict(base)
    for name, section in override.items():
        if isinstance(section, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **section}
        else:
            merged[name] = section
    return merged


async def _fetch(github: GitHub[Any], owner: str, repo: str) -> bytes | None:
    """The file's bytes, or ``None`` when the repository has no such file.

    Read as a stream and cut one byte past ``MAX_CONFIG_BYTES``: a file of
    100 MB in one repository costs the app 256 KiB, and the parser says it is
    too large.
    """
    try:
        response = await github.arequest(
            "GET",
            f"/repos/{owner}/{repo}/contents/{CONFIG_PATH}",
            headers={"Accept": RAW_MEDIA_TYPE},
            stream=True,
        )
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return None
        raise as_github_error(exc) from None
    except RequestError as exc:
        raise as_github_error(exc) from None
    raw = response.raw_response
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in raw.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                break
    except httpx.HTTPError as exc:
        raise as_github_error(RequestError(exc)) from None
    finally:
        await raw.aclose()
    return b"".join(chunks)[: MAX_CONFIG_BYTES + 1]
