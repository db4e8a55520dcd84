"""Unit tests for github_app.queue.priority: the default table and custom rule tables."""

from __future__ import annotations

import pytest

from github_app.queue.priority import DEFAULT_RULES, Priority, PriorityRule, PriorityRules
from tests.helpers_unit import envelope


@pytest.mark.parametrize(
    ("event", "action", "expected"),
    [
        ("installation", "created", Priority.CRITICAL),
        ("installation", "deleted", Priority.CRITICAL),
        ("installation", "suspend", Priority.CRITICAL),
        ("installation_repositories", "added", Priority.CRITICAL),
        ("issues", "opened", Priority.HIGH),
        ("issues", "reopened", Priority.HIGH),
        ("issue_comment", "created", Priority.HIGH),
        ("issues", "edited", Priority.NORMAL),
        ("issues", "labeled", Priority.NORMAL),
        ("issue_comment", "edited", Priority.NORMAL),
        ("star", "created", Priority.LOW),
        ("ping", None, Priority.LOW),
    ],
)
def test_default_rules_classify_github_events(
    event: str, action: str | None, expected: Priority
) -> None:
    assert PriorityRules().classify_name(event, action) is expected


def test_classify_reads_event_and_action_from_the_envelope() -> None:
    rules = PriorityRules()
    assert rules.classify(envelope(event="installation", action="created")) is Priority.CRITICAL
    assert rules.classify(envelope(event="issues", action="opened")) is Priority.HIGH
    assert rules.classify(envelope(event="star", action="created")) is Priority.LOW


def test_priorities_order_critical_first_and_low_last() -> None:
    assert list(Priority) == [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW]
    assert Priority.CRITICAL < Priority.HIGH < Priority.NORMAL < Priority.LOW


def test_unknown_event_gets_the_default_priority() -> None:
    assert PriorityRules().classify_name("deployment_status", "created") is Priority.LOW
    custom = PriorityRules(DEFAULT_RULES, default=Priority.NORMAL)
    assert custom.classify_name("deployment_status", "created") is Priority.NORMAL
    assert custom.classify_name("issues", "opened") is Priority.HIGH


def test_custom_table_first_matching_exact_rule_wins() -> None:
    rules = PriorityRules(
        [
            PriorityRule("issues", "opened", Priority.LOW),
            PriorityRule("issues", "opened", Priority.CRITICAL),
        ]
    )
    assert rules.classify_name("issues", "opened") is Priority.LOW


def test_custom_table_first_matching_any_action_rule_wins() -> None:
    rules = PriorityRules(
        [
            PriorityRule("push", None, Priority.HIGH),
            PriorityRule("push", None, Priority.LOW),
        ]
    )
    assert rules.classify_name("push", None) is Priority.HIGH
    assert rules.classify_name("push", "anything") is Priority.HIGH


def test_custom_table_exact_rule_before_any_action_rule_wins_for_its_action_only() -> None:
    rules = PriorityRules(
        [
            PriorityRule("issues", "closed", Priority.CRITICAL),
            PriorityRule("issues", None, Priority.LOW),
        ]
    )
    assert rules.classify_name("issues", "closed") is Priority.CRITICAL
    assert rules.classify_name("issues", "opened") is Priority.LOW


def test_custom_table_replaces_the_defaults_entirely() -> None:
    rules = PriorityRules([PriorityRule("star", None, Priority.CRITICAL)])
    assert rules.classify_name("star", "created") is Priority.CRITICAL
    assert rules.classify_name("installation", "created") is Priority.LOW


def test_custom_table_any_action_rule_listed_first_wins_over_a_later_exact_rule() -> None:
    rules = PriorityRules(
        [
            PriorityRule("issues", None, Priority.LOW),
            PriorityRule("issues", "opened", Priority.HIGH),
        ]
    )
    assert rules.classify_name("issues", "opened") is Priority.LOW
