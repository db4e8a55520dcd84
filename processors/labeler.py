"""labeler: adds labels to new and edited issues whose title or body match a rule.

Each rule names a label and either ``keywords`` (whole words, any case) or a
``pattern`` (a regular expression over title and body). All matching labels
are added in one API call; a label the issue already has is never re-added.
Patterns run on RE2, a linear-time engine, so a pathological pattern pushed
to one repository cannot stall the app for everyone else (RE2 has no
backreferences or look-around; such a pattern is a config error).

With ``remove_unmatched: true`` (off by default), an edit that makes a rule
stop matching removes that rule's label again; leave it off when people also
add those labels by hand, since the app cannot tell who added a label.

Without a ``labeler`` section the default rules below apply; they use labels
every new GitHub repository has (bug, documentation, enhancement).
``labeler: {enabled: false}`` turns it off.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol

import anyio.to_thread
import re2
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from github_app.processor import (
    BackfillChange,
    Context,
    Processor,
    ProcessorConfig,
    check_config_budget,
)
from github_app.processor_help import Doc, ProcessorHelp
from processors.issue_api import IssueApi, label_names

MAX_PATTERN_LENGTH = 1000
# One repository's rules are compiled and matched against every issue event: bounded, so a
# config pushed to one repository cannot make its events (or its config read) expensive.
MAX_RULES = 200
MAX_KEYWORDS = 100  # per rule
MAX_KEYWORD_LENGTH = 100
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20  # bound the compiled program's (and its DFA's) memory per pattern
# RE2 compiles without releasing the GIL, for as long as the program it builds is large:
# ~110 ms for one that ends up past 8 MiB, and every such compile stalls the event loop.
# A pattern is first compiled with a small bound, where an oversized program fails within a
# few ms, and only then for real.
_RE2_PROBE = re2.Options()
_RE2_PROBE.log_errors = False
_RE2_PROBE.max_mem = 256 << 10


def _compile(pattern: str) -> Any:
    check_config_budget()  # compiles are the costly part of reading a config
    try:
        re2.compile(pattern, _RE2_PROBE)
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"not a supported regular expression (RE2 syntax): {message}") from None


def _check_keywords(keywords: tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(word.strip() for word in keywords)
    if any(not word for word in cleaned):
        raise ValueError("keywords must not be blank")
    if any(len(word) > MAX_KEYWORD_LENGTH for word in cleaned):
        raise ValueError(f"a keyword is longer than {MAX_KEYWORD_LENGTH} characters")
    return cleaned


def _check_pattern(pattern: str | None) -> str | None:
    if pattern is not None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise ValueError(f"pattern is longer than {MAX_PATTERN_LENGTH} characters")
        _compile(pattern)
    return pattern


@dataclass(frozen=True)
class LabelRule:
    """Add ``label`` when any keyword appears as a whole word, or ``pattern`` matches."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    label: str
    keywords: Annotated[
        tuple[str, ...], Field(max_length=MAX_KEYWORDS), AfterValidator(_check_keywords)
    ] = ()
    pattern: Annotated[str | None, AfterValidator(_check_pattern)] = None

    @model_validator(mode="after")
    def _needs_a_matcher(self) -> LabelRule:
        if not self.keywords and self.pattern is None:
            raise ValueError(f"rule for label {self.label!r} needs keywords or a pattern")
        return self


DEFAULT_RULES = (
    LabelRule("bug", ("bug", "crash", "crashes", "traceback", "exception", "error", "broken")),
    LabelRule("documentation", ("docs", "documentation", "readme", "typo", "spelling")),
    LabelRule("enhancement", ("feature request", "enhancement", "would be nice")),
)


@dataclass(frozen=True)
class LabelerConfig(ProcessorConfig):
    rules: Annotated[
        tuple[LabelRule, ...],
        Field(max_length=MAX_RULES),
        Doc(
            "each rule: a `label` and `keywords` (whole words, any case) or a `pattern` (RE2)",
            shown=", ".join(rule.label for rule in DEFAULT_RULES),
        ),
    ] = DEFAULT_RULES
    remove_unmatched: Annotated[
        bool, Doc("on an edit, remove a rule's label once its rule stops matching")
    ] = False

    @functools.cached_property
    def compiled(self) -> tuple[CompiledRule, ...]:
        return compile_rules(self.rules)

    @model_validator(mode="after")
    def _compiled_now(self) -> LabelerConfig:
        # Validation runs where the app reads configs (a worker thread, within a time
        # budget): compiling here keeps the compile off the event loop.
        _ = self.compiled
        return self


@dataclass(frozen=True)
class CompiledRule:
    label: str
    matcher: Any


@functools.lru_cache(maxsize=1024)
def compile_rules(rules: tuple[LabelRule, ...]) -> tuple[CompiledRule, ...]:
    compiled = []
    for rule in rules:
        parts = []
        if rule.keywords:
            # Whole words: not preceded or followed by a word character. Written without
            # \b so that keywords ending in punctuation (c++, .net) match too; RE2 has no
            # look-behind, so the boundary characters are consumed instead.
            words = "|".join(re2.escape(word) for word in rule.keywords)
            parts.append(rf"(?i)(?:^|[^\w])(?:{words})(?:[^\w]|$)")
        if rule.pattern is not None:
            parts.append(f"(?:{rule.pattern})")
        compiled.append(CompiledRule(rule.label, _compile("|".join(parts))))
    return tuple(compiled)


def labels_to_add(
    rules: Sequence[CompiledRule], title: str, body: str | None, existing: Collection[str]
) -> list[str]:
    """Labels whose rule matches and that the issue does not have (GitHub ignores case)."""
    text = f"{title}\n{body or ''}"
    have = {name.lower() for name in existing}
    wanted: list[str] = []
    for rule in rules:
        key = rule.label.lower()
        if key not in have and rule.matcher.search(text):
            have.add(key)
            wanted.append(rule.label)
    return wanted


def labels_to_remove(
    rules: Sequence[CompiledRule], title: str, body: str | None, existing: Collection[str]
) -> list[str]:
    """Labels of the issue that belong to a rule and that no rule for them matches any more."""
    text = f"{title}\n{body or ''}"
    matched = {rule.label.lower() for rule in rules if rule.matcher.search(text)}
    ruled = {rule.label.lower() for rule in rules}
    return [name for name in existing if name.lower() in ruled and name.lower() not in matched]


class LabelerApi(Protocol):
    async def add_labels(self, number: int, labels: list[str]) -> None: ...

    async def remove_label(self, number: int, label: str) -> None: ...


@dataclass(frozen=True)
class LabelerFacts:
    """What the labeler reads from an ``issues`` payload."""

    action: str
    number: int
    title: str
    body: str | None
    labels: tuple[str, ...]

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> LabelerFacts:
        issue = payload["issue"]
        return cls(
            str(payload.get("action") or ""),
            int(issue["number"]),
            str(issue.get("title") or ""),
            issue.get("body"),
            label_names(issue),
        )


@dataclass(frozen=True)
class LabelChange:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ", ".join([*self.add, *(f"-{label}" for label in self.remove)])


def decide(config: LabelerConfig, facts: LabelerFacts) -> LabelChange:
    """Labels to add, and on an edit with ``remove_unmatched`` to remove, from the payload alone."""
    rules = config.compiled
    add = labels_to_add(rules, facts.title, facts.body, facts.labels)
    remove: list[str] = []
    if facts.action == "edited" and config.remove_unmatched:
        remove = labels_to_remove(rules, facts.title, facts.body, facts.labels)
    return LabelChange(tuple(add), tuple(remove))


async def label_issue(api: LabelerApi, config: LabelerConfig, facts: LabelerFacts) -> LabelChange:
    """All labels to add in one call, then one call per label to remove.

    Matching runs in a worker thread (RE2 releases the GIL while it searches):
    200 rules over a 65 KiB issue body can take a good part of a second.
    """
    change = await anyio.to_thread.run_sync(decide, config, facts)
    if change.add:
        await api.add_labels(facts.number, list(change.add))
    for label in change.remove:
        await api.remove_label(facts.number, label)
    return change


async def handle(ctx: Context[LabelerConfig]) -> None:
    facts = LabelerFacts.from_payload(ctx.payload)
    change = await label_issue(IssueApi(ctx.github, ctx.owner, ctx.repo), ctx.config, facts)
    if change.add or change.remove:
        ctx.log.info("labeler: changed %s on #%s", change, facts.number)
    else:
        ctx.log.debug("labeler: no new label for #%s", facts.number)


async def backfill(ctx: Context[LabelerConfig]) -> BackfillChange:
    """An existing issue gets the labels whose rule matches and that it lacks (one call)."""
    facts = LabelerFacts.from_payload(ctx.payload)  # action "backfill": nothing is removed
    add = (await anyio.to_thread.run_sync(decide, ctx.config, facts)).add
    if add and not ctx.dry_run:
        await IssueApi(ctx.github, ctx.owner, ctx.repo).add_labels(facts.number, list(add))
    return BackfillChange(labels_added=add, writes=0 if ctx.dry_run or not add else 1)


def _default_rules() -> str:
    return "; ".join(f"`{rule.label}`: {', '.join(rule.keywords)}" for rule in DEFAULT_RULES)


LABELER: Processor[LabelerConfig] = Processor(
    name="labeler",
    help=ProcessorHelp(
        description=(
            "Adds the labels whose rule matches the title or body of a new or edited issue, "
            "in one API call, never re-adding a label the issue has."
        ),
        details=(
            "A rule has `keywords` (whole words, any case) or a `pattern` (RE2 syntax: linear "
            "time, so a pattern such as `(a+)+$` cannot stall the app; no backreferences or "
            "look-around).",
            "Without a `labeler` section it uses these default rules, whose labels every new "
            f"GitHub repository has: {_default_rules()}.",
            "With `remove_unmatched: true` an edit that makes a rule stop matching removes "
            "that rule's label; leave it off where people add those labels by hand, since the "
            "app cannot tell who added a label.",
        ),
        backfill="applies its rules to existing issues, adding the matching labels they lack",
        config_example=(
            "labeler:\n"
            "  remove_unmatched: true\n"
            "  rules:\n"
            "    - label: bug\n"
            "      keywords: [crash, traceback]\n"
            "    - label: documentation\n"
            "      pattern: '(?i)\\bdocs?\\b'\n"
        ),
    ),
    events=("issues.opened", "issues.edited"),
    config_type=LabelerConfig,
    handle=handle,
    permissions={"issues": "write", "contents": "read", "metadata": "read"},
    backfill=backfill,
)
