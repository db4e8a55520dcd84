"""Which deliveries go first when the queue is busy.

The rules are data: an ordered table of (event, action, priority), first match
wins, action ``None`` matches any action. Installation changes come first
because every other event of that installation depends on them; a person
waiting on a new issue or comment comes next; edits and label changes after;
anything else last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from github_app.envelope import Envelope


class Priority(IntEnum):
    """Lower value, served first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


@dataclass(frozen=True, slots=True)
class PriorityRule:
    event: str
    action: str | None
    priority: Priority


DEFAULT_RULES: tuple[PriorityRule, ...] = (
    PriorityRule("installation", None, Priority.CRITICAL),
    PriorityRule("installation_repositories", None, Priority.CRITICAL),
    PriorityRule("github_app_authorization", None, Priority.CRITICAL),
    PriorityRule("issues", "opened", Priority.HIGH),
    PriorityRule("issues", "reopened", Priority.HIGH),
    PriorityRule("issue_comment", "created", Priority.HIGH),
    PriorityRule("issues", None, Priority.NORMAL),
    PriorityRule("issue_comment", None, Priority.NORMAL),
    PriorityRule("label", None, Priority.NORMAL),
    PriorityRule("push", None, Priority.NORMAL),
)


class PriorityRules:
    """Classifies envelopes by a rule table; the lookup is one dict probe per delivery."""

    def __init__(
        self, rules: Iterable[PriorityRule] = DEFAULT_RULES, default: Priority = Priority.LOW
    ) -> None:
        ordered = tuple(rules)
        # Precompute the first matching rule for every (event, action) the table names,
        # so "first match wins" holds and classifying stays one or two dict probes.
        self._exact: dict[tuple[str, str | None], Priority] = {}
        for rule in ordered:
            if rule.action is not None:
                key = (rule.event, rule.action)
                first = next(
                    r for r in ordered if r.event == rule.event and r.action in (None, rule.action)
                )
                self._exact.setdefault(key, first.priority)
        self._by_event: dict[str, Priority] = {}
        for rule in ordered:
            if rule.action is None:
                self._by_event.setdefault(rule.event, rule.priority)
        self._default = default

    def classify(self, envelope: Envelope) -> Priority:
        return self.classify_name(envelope.event, envelope.action)

    def classify_name(self, event: str, action: str | None) -> Priority:
        found = self._exact.get((event, action))
        if found is not None:
            return found
        return self._by_event.get(event, self._default)
