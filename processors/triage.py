"""triage: marks new, unlabelled issues as waiting for triage, and clears the mark afterwards.

An issue opened without any label gets the ``needs-triage`` label. The label
is removed as soon as a person labels the issue with anything else, assigns
it, or closes it. Labels the app adds itself (for instance the labeler's) do
not count as triage: the app never acts on its own events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import Field

from github_app.processor import (
    NO_CHANGE,
    BackfillChange,
    Context,
    Processor,
    ProcessorConfig,
)
from github_app.processor_help import Doc, ProcessorHelp
from processors.issue_api import IssueApi, has_label, label_names


@dataclass(frozen=True)
class TriageConfig(ProcessorConfig):
    enabled: bool = False  # opt-in: a `triage:` section turns it on
    label: Annotated[
        str, Field(min_length=1, max_length=50), Doc("the label that marks an issue to triage")
    ] = "needs-triage"


class TriageApi(Protocol):
    async def add_labels(self, number: int, labels: list[str]) -> None: ...

    async def remove_label(self, number: int, label: str) -> None: ...


@dataclass(frozen=True)
class TriageFacts:
    """What triage reads from an ``issues`` payload."""

    action: str
    number: int
    labels: tuple[str, ...]
    changed_label: str | None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TriageFacts:
        issue = payload["issue"]
        changed = payload.get("label")
        name = changed.get("name") if isinstance(changed, dict) else None
        return cls(
            str(payload.get("action") or ""),
            int(issue["number"]),
            label_names(issue),
            name if isinstance(name, str) else None,
        )


def decide(config: TriageConfig, facts: TriageFacts) -> str | None:
    """``"add"``, ``"remove"`` or ``None`` (nothing to do), from the payload alone."""
    marked = has_label(facts.labels, config.label)
    if facts.action == "opened":
        return "add" if not facts.labels else None
    if not marked:
        return None
    if facts.action == "labeled":
        changed = facts.changed_label
        return "remove" if changed is not None and changed.lower() != config.label.lower() else None
    if facts.action in ("assigned", "closed"):
        return "remove"
    return None


async def triage(api: TriageApi, config: TriageConfig, facts: TriageFacts) -> str | None:
    action = decide(config, facts)
    if action == "add":
        await api.add_labels(facts.number, [config.label])
    elif action == "remove":
        await api.remove_label(facts.number, config.label)
    return action


async def handle(ctx: Context[TriageConfig]) -> None:
    facts = TriageFacts.from_payload(ctx.payload)
    done = await triage(IssueApi(ctx.github, ctx.owner, ctx.repo), ctx.config, facts)
    if done is not None:
        ctx.log.info("triage: %s %r on #%s", done, ctx.config.label, facts.number)


async def backfill(ctx: Context[TriageConfig]) -> BackfillChange:
    """An open issue without any label is marked for triage, as if it had just been opened."""
    issue = ctx.payload["issue"]
    facts = TriageFacts.from_payload(ctx.payload)
    if issue.get("state", "open") != "open" or facts.labels:
        return NO_CHANGE
    if not ctx.dry_run:
        await IssueApi(ctx.github, ctx.owner, ctx.repo).add_labels(facts.number, [ctx.config.label])
    return BackfillChange(labels_added=(ctx.config.label,), writes=0 if ctx.dry_run else 1)


TRIAGE: Processor[TriageConfig] = Processor(
    name="triage",
    help=ProcessorHelp(
        description=(
            "Adds `needs-triage` to a new issue that has no label; removes it once a person "
            "labels the issue with anything else, assigns it, or closes it."
        ),
        details=(
            "Labels the app adds itself (the labeler's, for instance) do not count as triage. "
            "Costs one write per change, no reads.",
        ),
        config_example="triage:\n  label: needs-triage\n",
        backfill="labels open issues that have no label at all",
    ),
    events=("issues.opened", "issues.labeled", "issues.assigned", "issues.closed"),
    config_type=TriageConfig,
    handle=handle,
    permissions={"issues": "write", "metadata": "read"},
    backfill=backfill,
)
